"""Reference solution."""
from typing import Optional

from aineko import AbstractNode


class Sessionizer(AbstractNode):
    def _pre_loop_hook(self, params: Optional[dict] = None) -> None:
        self.last_seen = {}
        self.counts = {}

    def _execute(self, params: dict) -> Optional[bool]:
        message = self.inputs["events"].read(how="next")
        if message is None:
            return None
        value = message["message"]
        user, t = value["user"], value["t"]
        last = self.last_seen.get(user)
        if last is not None and t - last > 30:
            self.outputs["sessions"].write({"user": user, "events": self.counts[user]})
            self.counts[user] = 0
        self.counts[user] = self.counts.get(user, 0) + 1
        self.last_seen[user] = t
        return None
