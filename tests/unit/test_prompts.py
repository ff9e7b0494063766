"""Requests are refused before any work when no store or model could take them (CLI and library, not only HTTP)."""

from __future__ import annotations

import pytest

from dream_graph.errors import PromptError
from dream_graph.prompts import validate_request


@pytest.mark.parametrize(
    ("prompt", "says"),
    [
        ("a\x00b", "NUL character"),
        ("\x00", "NUL character"),
        ("count \ud800 words", "lone UTF-16 surrogate"),
        ("tail\udfff", "lone UTF-16 surrogate"),
        ("", "prompt is empty"),
        (" \n\t", "prompt is empty"),
    ],
)
def test_unstorable_or_empty_requests_are_a_prompt_error(prompt, says):
    with pytest.raises(PromptError, match=says):
        validate_request(prompt)


def test_valid_unicode_passes_unchanged_but_stripped():
    assert validate_request("  count \U0001f600 emoji and ünïcode \n") == "count \U0001f600 emoji and ünïcode"


def test_the_length_limit_is_inclusive(monkeypatch):
    from dream_graph.settings import get_settings

    monkeypatch.setenv("DREAM_GRAPH_MAX_PROMPT_CHARS", "5")
    get_settings.cache_clear()
    assert validate_request("abcde") == "abcde"
    with pytest.raises(PromptError, match="prompt is 6 characters; the limit is 5"):
        validate_request("abcdef")
