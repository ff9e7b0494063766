from aineko import AbstractNode


class Echo(AbstractNode):
    """Answers every request with the configured flag."""

    def _pre_loop_hook(self, params=None):
        params = {"ok": True, **(params or {})}
        self.flag = params["ok"]

    def _execute(self, params=None):
        msg = self.inputs["requests"].next()
        self.outputs["replies"].write({**msg["message"], "ok": self.flag})
