"""Prompt templates live as markdown files beside this module so they can be edited without touching code."""

from __future__ import annotations

import re
from functools import lru_cache
from importlib.resources import files

from dream_graph.errors import PromptError
from dream_graph.settings import get_settings

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


@lru_cache(maxsize=None)
def load_template(name: str) -> str:
    """Read `prompts/<name>.md` from the installed package."""
    return files(__package__).joinpath(f"{name}.md").read_text(encoding="utf-8").strip()


def render(name: str, **values: object) -> str:
    """Fill a template's `{placeholders}`; unknown braces in values are left alone."""
    return load_template(name).format(**values)


def validate_request(prompt: str) -> str:
    """Refuse an empty or oversized request before any work is spent on it."""
    prompt = (prompt or "").strip()
    if "\x00" in prompt:
        raise PromptError("prompt contains a NUL character (\\x00): remove it; no store or model accepts it")
    if _LONE_SURROGATE.search(prompt):
        raise PromptError("prompt contains a lone UTF-16 surrogate (e.g. \\ud800), which is not text: send valid Unicode")
    if not prompt:
        raise PromptError("prompt is empty: describe the code you want, e.g. 'a node that counts words'")
    limit = get_settings().max_prompt_chars
    if len(prompt) > limit:
        raise PromptError(f"prompt is {len(prompt)} characters; the limit is {limit} (DREAM_GRAPH_MAX_PROMPT_CHARS)")
    return prompt
