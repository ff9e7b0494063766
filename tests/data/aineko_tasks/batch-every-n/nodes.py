"""Reference solution."""
from typing import Optional

from aineko import AbstractNode


class Batcher(AbstractNode):
    def _pre_loop_hook(self, params: Optional[dict] = None) -> None:
        self.batch = []

    def _execute(self, params: dict) -> Optional[bool]:
        message = self.inputs["records"].read(how="next")
        if message is None:
            return None
        self.batch.append(message["message"])
        if len(self.batch) >= params.get("batch_size", 2):
            self.outputs["batches"].write(self.batch)
            self.batch = []
        return None

    def _post_loop_hook(self, params: Optional[dict] = None) -> None:
        if self.batch:
            self.outputs["batches"].write(self.batch)
            self.batch = []
