"""Reference solution."""
from typing import Optional

from aineko import AbstractNode


class CelsiusToFahrenheit(AbstractNode):
    def _execute(self, params: dict) -> Optional[bool]:
        message = self.inputs["celsius"].read(how="next")
        if message is None:
            return None
        value = message["message"]
        self.outputs["fahrenheit"].write(value * 9 / 5 + 32)
        return None
