"""A sequencer and a summer, the shape of Aineko's project template."""

from typing import Optional

from aineko.core.node import AbstractNode


class Sequencer(AbstractNode):
    """Writes an increasing sequence."""

    def _pre_loop_hook(self, params: Optional[dict] = None) -> None:
        self.current = params.get("start", 0)

    def _execute(self, params: Optional[dict] = None) -> Optional[bool]:
        self.current += params.get("step", 1)
        self.outputs["sequence"].write(self.current)
        return None


class Summer(AbstractNode):
    """Adds a constant to each number it reads."""

    def _pre_loop_hook(self, params: Optional[dict] = None) -> None:
        self.total = params.get("start", 0)

    def _execute(self, params: Optional[dict] = None) -> Optional[bool]:
        msg = self.inputs["sequence"].read(how="next")
        if msg is None:
            return None
        self.log(f"got {msg['message']}")
        self.total = int(msg["message"]) + int(params["increment"])
        self.outputs["sums"].write(self.total)
        return None
