from aineko import AbstractNode


class Scaler(AbstractNode):
    """Multiplies each number by `factor`."""

    def _execute(self, params=None):
        msg = self.inputs["numbers"].next()
        self.outputs["scaled"].write(msg["message"] * params.get("factor", 1))
