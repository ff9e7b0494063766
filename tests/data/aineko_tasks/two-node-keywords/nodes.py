"""Reference solution."""
from typing import Optional

from aineko import AbstractNode

STOP_WORDS = {"the", "a", "an"}


class Cleaner(AbstractNode):
    def _execute(self, params: dict) -> Optional[bool]:
        message = self.inputs["raw"].read(how="next")
        if message is None:
            return None
        self.outputs["clean"].write(str(message["message"]).strip().lower())
        return None


class KeywordFilter(AbstractNode):
    def _execute(self, params: dict) -> Optional[bool]:
        message = self.inputs["clean"].read(how="next")
        if message is None:
            return None
        if message["message"] not in STOP_WORDS:
            self.outputs["keywords"].write(message["message"])
        return None
