"""Reference solution."""
from typing import Optional

from aineko import AbstractNode


class ZScoreAnomaly(AbstractNode):
    def _pre_loop_hook(self, params: Optional[dict] = None) -> None:
        self.previous = []

    def _execute(self, params: dict) -> Optional[bool]:
        message = self.inputs["readings"].read(how="next")
        if message is None:
            return None
        value = message["message"]
        previous = self.previous
        if len(previous) >= 3:
            mean = sum(previous) / len(previous)
            std = (sum((x - mean) ** 2 for x in previous) / len(previous)) ** 0.5
            if std > 0 and abs(value - mean) > 2 * std:
                self.outputs["anomalies"].write(value)
        previous.append(value)
        return None
