"""Reference solution."""
from typing import Optional

from aineko import AbstractNode


class NameExtractor(AbstractNode):
    def _execute(self, params: dict) -> Optional[bool]:
        message = self.inputs["users"].read(how="next")
        if message is None:
            return None
        value = message["message"]
        if isinstance(value, dict) and "name" in value:
            self.outputs["names"].write(value["name"])
        return None
