from typing import Optional

from aineko import AbstractNode


class EvenFilter(AbstractNode):
    def _execute(self, params: dict) -> Optional[bool]:
        message = self.inputs["numbers"].read(how="next")
        if message is None:
            return None
        value = message["message"]
        if value % 2 == 0:
            self.outputs["evens"].write(value)
        return None
