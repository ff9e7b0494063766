"""Shared fixtures: every test starts from a clean environment and a fresh settings/docs cache."""

from __future__ import annotations

import os

import pytest

from dream_graph.docs import docs_holder
from dream_graph.settings import get_settings

_OUR_VARS = (
    "DREAM_GRAPH_",
    "OPENAI_",
    "COHERE_",
    "GITHUB_",
    "SLACK_",
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    """No test sees the developer's keys or settings, and no test reads a stray .env file."""
    for name in list(os.environ):
        if name.startswith(_OUR_VARS):
            monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    get_settings.cache_clear()
    docs_holder.reset()
    yield
    get_settings.cache_clear()
    docs_holder.reset()
