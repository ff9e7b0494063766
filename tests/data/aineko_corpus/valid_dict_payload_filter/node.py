from typing import Optional

from aineko import AbstractNode


class SeverityFilter(AbstractNode):
    """Keeps events at or above a minimum severity."""

    LEVELS = {"debug": 0, "info": 1, "warning": 2, "error": 3}

    def _pre_loop_hook(self, params: Optional[dict] = None) -> None:
        self.minimum = self.LEVELS[params.get("minimum", "warning")]

    def _execute(self, params: Optional[dict] = None) -> Optional[bool]:
        msg = self.inputs["events"].next()
        event = msg["message"]
        if self.LEVELS.get(event.get("level"), 0) >= self.minimum:
            self.outputs["alerts"].write(event)
        return None
