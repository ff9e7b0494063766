"""Reference solution."""
from typing import Optional

from aineko import AbstractNode


class ClickCounter(AbstractNode):
    def _pre_loop_hook(self, params: Optional[dict] = None) -> None:
        self.counts = {}

    def _execute(self, params: dict) -> Optional[bool]:
        message = self.inputs["clicks"].read(how="next")
        if message is None:
            return None
        value = message["message"]
        user = value["user"]
        self.counts[user] = self.counts.get(user, 0) + 1
        self.outputs["click_counts"].write({"user": user, "count": self.counts[user]})
        return None
