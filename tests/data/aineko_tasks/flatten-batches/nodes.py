"""Reference solution."""
from typing import Optional

from aineko import AbstractNode


class BatchFlattener(AbstractNode):
    def _execute(self, params: dict) -> Optional[bool]:
        message = self.inputs["batches"].read(how="next")
        if message is None:
            return None
        value = message["message"]
        for item in value:
            self.outputs["items"].write(item)
        return None
