"""Reference solution."""
from typing import Optional

from aineko import AbstractNode


class RunningSum(AbstractNode):
    def _pre_loop_hook(self, params: Optional[dict] = None) -> None:
        self.total = 0

    def _execute(self, params: dict) -> Optional[bool]:
        message = self.inputs["numbers"].read(how="next")
        if message is None:
            return None
        value = message["message"]
        self.total += value
        self.outputs["totals"].write(self.total)
        return None
