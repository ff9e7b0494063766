"""Errors users can act on: each message says what is wrong and how to fix it."""

from __future__ import annotations


class DreamGraphError(Exception):
    """Base class for dream_graph's own errors."""


class ConfigError(DreamGraphError, ValueError):
    """A setting or option cannot work (missing key, unknown model, bad file); CLI exit 2, HTTP 400. A ValueError
    too, so servers that only pass on the messages of built-in error types (the LangGraph API server) show it."""


class PromptError(DreamGraphError, ValueError):
    """The request itself is unusable (empty, too long); HTTP 422."""
