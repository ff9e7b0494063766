"""Reference solution."""
from typing import Optional

from aineko import AbstractNode


class MovingAverage(AbstractNode):
    def _pre_loop_hook(self, params: Optional[dict] = None) -> None:
        self.window = []

    def _execute(self, params: dict) -> Optional[bool]:
        message = self.inputs["prices"].read(how="next")
        if message is None:
            return None
        value = message["message"]
        self.window.append(value)
        if len(self.window) > 3:
            self.window.pop(0)
        if len(self.window) == 3:
            self.outputs["averages"].write(sum(self.window) / 3)
        return None
