from aineko import AbstractNode


class Heartbeat(AbstractNode):
    """Logs once and stops: no datasets of its own."""

    def _execute(self, params=None):
        self.log("alive", level="debug")
        return False
