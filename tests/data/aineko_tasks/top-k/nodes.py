"""Reference solution."""
from typing import Optional

from aineko import AbstractNode


class TopWords(AbstractNode):
    def _pre_loop_hook(self, params: Optional[dict] = None) -> None:
        self.counts = {}
        self.order = {}

    def _execute(self, params: dict) -> Optional[bool]:
        message = self.inputs["words"].read(how="next")
        if message is None:
            return None
        value = message["message"]
        self.counts[value] = self.counts.get(value, 0) + 1
        self.order.setdefault((value, self.counts[value]), len(self.order))
        ranked = sorted(self.counts, key=lambda w: (-self.counts[w], self.order[(w, self.counts[w])]))
        self.outputs["top_words"].write(ranked[:2])
        return None
