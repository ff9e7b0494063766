"""Reference solution."""
from typing import Optional

from aineko import AbstractNode


class TumblingWindowSum(AbstractNode):
    def _pre_loop_hook(self, params: Optional[dict] = None) -> None:
        self.window = []

    def _execute(self, params: dict) -> Optional[bool]:
        message = self.inputs["numbers"].read(how="next")
        if message is None:
            return None
        value = message["message"]
        self.window.append(value)
        if len(self.window) == params.get("window_size", 3):
            self.outputs["window_sums"].write(sum(self.window))
            self.window = []
        return None
