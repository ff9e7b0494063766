from aineko import AbstractNode


class Echo(AbstractNode):
    """Answers every request."""

    def _execute(self, params=None):
        msg = self.inputs["requests"].next()
        self.outputs["replies"].write({**msg["message"], "ok": True})
