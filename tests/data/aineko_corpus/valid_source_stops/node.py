from aineko import AbstractNode


class Countdown(AbstractNode):
    """Writes n, n-1, ..., 1 and stops."""

    def _pre_loop_hook(self, params=None):
        self.remaining = params.get("start", 3)

    def _execute(self, params=None):
        self.outputs["ticks"].write(self.remaining)
        self.remaining -= 1
        return self.remaining > 0
