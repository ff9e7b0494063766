"""Pull the code and the pipeline config out of a model's reply."""

from __future__ import annotations

import re

_FENCE = re.compile(r"^[ \t]*```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)^[ \t]*```", re.DOTALL | re.MULTILINE)


def code_blocks(text: str) -> list[tuple[str, str]]:
    """Every fenced block as (language, body), in order."""
    return [(m.group(1).lower(), m.group(2)) for m in _FENCE.finditer(text or "")]


def first_block(text: str, *languages: str) -> str | None:
    """The first block in one of `languages`, like the original formatter, or None."""
    for lang, body in code_blocks(text):
        if lang in languages:
            return body
    return None


def extract_python(text: str) -> str | None:
    """The first ```python (or ```py) block."""
    return first_block(text, "python", "py", "python3")


def extract_yaml(text: str) -> str | None:
    """The first ```yaml (or ```yml) block."""
    return first_block(text, "yaml", "yml")
