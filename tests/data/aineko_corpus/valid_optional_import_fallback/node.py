try:
    import orjson_not_installed_here as fastjson
except ImportError:  # optional speed-up
    fastjson = None

from aineko import AbstractNode


class Echo(AbstractNode):
    """Answers every request."""

    def _execute(self, params=None):
        msg = self.inputs["requests"].next()
        self.outputs["replies"].write({**msg["message"], "ok": fastjson is None or True})
