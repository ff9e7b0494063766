"""Reference solution."""
from typing import Optional

from aineko import AbstractNode


class Deduplicator(AbstractNode):
    def _pre_loop_hook(self, params: Optional[dict] = None) -> None:
        self.seen = set()

    def _execute(self, params: dict) -> Optional[bool]:
        message = self.inputs["events"].read(how="next")
        if message is None:
            return None
        value = message["message"]
        if value not in self.seen:
            self.seen.add(value)
            self.outputs["unique"].write(value)
        return None
