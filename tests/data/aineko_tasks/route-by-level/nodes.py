"""Reference solution."""
from typing import Optional

from aineko import AbstractNode


class LevelRouter(AbstractNode):
    def _execute(self, params: dict) -> Optional[bool]:
        message = self.inputs["logs"].read(how="next")
        if message is None:
            return None
        record = message["message"]
        target = "errors" if record.get("level") in ("error", "critical") else "other_logs"
        self.outputs[target].write(record)
        return None
