from aineko import AbstractNode


class _Doubler(AbstractNode):
    """Doubles numbers."""

    def _execute(self, params=None):
        msg = self.inputs["numbers"].next()
        self.outputs["doubled"].write(msg["message"] * 2)


Doubler = _Doubler
