"""Reference solution."""
from typing import Optional

from aineko import AbstractNode


class Doubler(AbstractNode):
    def _execute(self, params: dict) -> Optional[bool]:
        message = self.inputs["numbers"].read(how="next")
        if message is None:
            return None
        value = message["message"]
        self.outputs["doubled"].write(value * 2)
        return None
