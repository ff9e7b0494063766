"""The replay model: answers from a file of recorded replies, so experiments and the repair loop run with no key.

A replay file is JSON Lines, one object per request: `{"prompt": "<the request>", "replies": ["<cycle 1>", ...]}`.
Cycle N gets reply N (the last one again past the end). Like the offline model it is not AI, and says so.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

from langchain_core.messages import BaseMessage, HumanMessage

from dream_graph.errors import ConfigError
from dream_graph.offline import ScriptedChatModel, request_text

REPLAY_MODEL_ID = "replay"
REPLAY_LABEL = "replay model (recorded replies, not AI)"
_ATTEMPT = re.compile(r"\(attempt (\d+) of \d+\)")


def default_replay_file() -> Path:
    """The replies shipped for the target's task suite (a flawed reply, then a fixed one, per task)."""
    from dream_graph.targets import get_target

    return Path(str(get_target().resource("data", "replay.jsonl")))


def _key(prompt: str) -> str:
    return " ".join(prompt.split())


@lru_cache(maxsize=8)
def load_replies(path: str) -> dict[str, tuple[str, ...]]:
    """Request text (whitespace folded) -> its recorded replies; a bad file is a ConfigError naming the line."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"replay file {path} cannot be read: {exc}") from None
    replies: dict[str, tuple[str, ...]] = {}
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            prompt, recorded = entry["prompt"], entry["replies"]
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"replay file {path} line {number}: expected {{\"prompt\", \"replies\"}}: {exc}") from None
        if not isinstance(prompt, str) or not isinstance(recorded, list) or not recorded:
            raise ConfigError(f"replay file {path} line {number}: `prompt` must be text and `replies` a non-empty list")
        replies[_key(prompt)] = tuple(str(r) for r in recorded)
    return replies


def _lookup(replies: dict[str, tuple[str, ...]], request: str) -> tuple[str, ...] | None:
    """The replies recorded for this request: the prompt may be followed by more (the request's examples)."""
    if request in replies:
        return replies[request]
    matches = [key for key in replies if request.startswith(key + " ")]
    return replies[max(matches, key=len)] if matches else None


def _cycle_index(messages: list[BaseMessage]) -> int:
    """0 for the first request; N after the fix request of attempt N (the repair loop may trim older replies)."""
    for message in reversed(messages):
        if isinstance(message, HumanMessage):
            found = _ATTEMPT.search(str(message.content))
            return int(found.group(1)) if found else 0
    return 0


class ReplayChatModel(ScriptedChatModel):
    """Replies recorded for known requests; an unknown request is a clear error, never an invented answer."""

    model_name: str = REPLAY_MODEL_ID
    path: str = ""

    @property
    def _llm_type(self) -> str:
        return REPLAY_MODEL_ID

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_name": self.model_name, "path": self.path}

    def reply_text(self, messages: list[BaseMessage]) -> str:
        """The recorded reply for this request and cycle."""
        path = self.path or str(default_replay_file())
        request = request_text(messages)
        recorded = _lookup(load_replies(path), _key(request))
        if recorded is None:
            raise ConfigError(
                f"the replay model has no recorded reply for the request {request[:80]!r} in {path}; "
                "use a request from the task suite, add it to the replay file, or choose another model"
            )
        return recorded[min(_cycle_index(messages), len(recorded) - 1)]
