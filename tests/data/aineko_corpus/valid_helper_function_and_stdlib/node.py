import json
from dataclasses import dataclass

from aineko import AbstractNode


@dataclass
class Reply:
    """A reply payload."""

    id: int
    ok: bool = True


def to_reply(payload: dict) -> dict:
    """Build the reply for one request."""
    return json.loads(json.dumps(Reply(id=payload["id"]).__dict__))


class Echo(AbstractNode):
    """Answers every request."""

    def _execute(self, params=None):
        msg = self.inputs["requests"].next()
        self.outputs["replies"].write(to_reply(msg["message"]))
