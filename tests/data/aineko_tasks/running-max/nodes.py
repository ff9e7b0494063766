"""Reference solution."""
from typing import Optional

from aineko import AbstractNode


class RunningMax(AbstractNode):
    def _pre_loop_hook(self, params: Optional[dict] = None) -> None:
        self.best = None

    def _execute(self, params: dict) -> Optional[bool]:
        message = self.inputs["numbers"].read(how="next")
        if message is None:
            return None
        value = message["message"]
        self.best = value if self.best is None else max(self.best, value)
        self.outputs["maxima"].write(self.best)
        return None
