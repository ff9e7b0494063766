"""Reference solution."""
from typing import Optional

from aineko import AbstractNode


class ThresholdAlert(AbstractNode):
    def _execute(self, params: dict) -> Optional[bool]:
        message = self.inputs["temperatures"].read(how="next")
        if message is None:
            return None
        value = message["message"]
        if value > params.get("threshold", 30):
            self.outputs["alerts"].write({"alert": True, "value": value})
        return None
