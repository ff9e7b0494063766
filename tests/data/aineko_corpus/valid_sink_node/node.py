from aineko import AbstractNode


class Printer(AbstractNode):
    """Logs every message it reads; writes nothing."""

    def _execute(self, params=None):
        msg = self.inputs["lines"].next()
        self.log(str(msg["message"]))
