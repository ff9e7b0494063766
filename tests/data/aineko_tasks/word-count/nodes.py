"""Reference solution."""
from typing import Optional

from aineko import AbstractNode


class WordCounter(AbstractNode):
    def _execute(self, params: dict) -> Optional[bool]:
        message = self.inputs["sentences"].read(how="next")
        if message is None:
            return None
        value = message["message"]
        self.outputs["counts"].write(len(str(value).split()))
        return None
