"""Reference solution."""
from typing import Optional

from aineko import AbstractNode


class ItemSource(AbstractNode):
    def _pre_loop_hook(self, params: Optional[dict] = None) -> None:
        self.pending = list((params or {}).get("items", ["a", "b"]))

    def _execute(self, params: dict) -> Optional[bool]:
        if not self.pending:
            return False
        self.outputs["items_out"].write(self.pending.pop(0))
        return None if self.pending else False
