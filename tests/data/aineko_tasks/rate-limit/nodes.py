"""Reference solution."""
from typing import Optional

from aineko import AbstractNode


class RateLimiter(AbstractNode):
    def _pre_loop_hook(self, params: Optional[dict] = None) -> None:
        self.history = {}

    def _execute(self, params: dict) -> Optional[bool]:
        message = self.inputs["requests"].read(how="next")
        if message is None:
            return None
        request = message["message"]
        recent = [t for t in self.history.get(request["client"], []) if request["t"] - t < 10]
        if len(recent) < 2:
            recent.append(request["t"])
            self.outputs["allowed"].write(request)
        else:
            self.outputs["throttled"].write(request)
        self.history[request["client"]] = recent
        return None
