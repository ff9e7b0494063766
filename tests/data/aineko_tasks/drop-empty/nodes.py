"""Reference solution."""
from typing import Optional

from aineko import AbstractNode


class DropEmpty(AbstractNode):
    def _execute(self, params: dict) -> Optional[bool]:
        message = self.inputs["lines"].read(how="next")
        if message is None:
            return None
        value = message["message"]
        if isinstance(value, str) and value.strip():
            self.outputs["nonempty"].write(value)
        return None
