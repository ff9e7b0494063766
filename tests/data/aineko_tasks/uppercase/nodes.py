"""Reference solution."""
from typing import Optional

from aineko import AbstractNode


class Shouter(AbstractNode):
    def _execute(self, params: dict) -> Optional[bool]:
        message = self.inputs["words"].read(how="next")
        if message is None:
            return None
        value = message["message"]
        self.outputs["shout"].write(str(value).upper())
        return None
