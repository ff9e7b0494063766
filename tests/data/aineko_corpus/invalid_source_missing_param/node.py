from aineko import AbstractNode


class Ticker(AbstractNode):
    """Writes the configured tick."""

    def _execute(self, params=None):
        self.outputs["ticks"].write(params["tick"])
