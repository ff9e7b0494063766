"""Reference solution."""
from typing import Optional

from aineko import AbstractNode


class TickSource(AbstractNode):
    def _pre_loop_hook(self, params: Optional[dict] = None) -> None:
        self.n = 0

    def _execute(self, params: dict) -> Optional[bool]:
        self.n += 1
        self.outputs["ticks"].write(self.n)
        if self.n >= 5:
            return False
        return None
