from aineko import AbstractNode

class Doubler(AbstractNode):
    """Doubles numbers."""

    def _execute(self, params=None):
        """Double each number read from `numbers`."""
        msg = self.inputs["numbers"].next()
        self.outputs["doubled"].write(msg["message"] * 2)
