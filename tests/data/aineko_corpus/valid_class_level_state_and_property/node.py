from aineko import AbstractNode


class Echo(AbstractNode):
    """Answers every request and counts them."""

    handled: int = 0

    @property
    def reply_flag(self) -> bool:
        return True

    def _execute(self, params=None):
        msg = self.inputs["requests"].next()
        self.handled += 1
        self.outputs["replies"].write({**msg["message"], "ok": self.reply_flag})
