"""Shared fixtures: every test starts from a clean environment and a fresh settings/docs cache."""

from __future__ import annotations

import os

import pytest

from dream_graph.docs import docs_holder
from dream_graph.settings import get_settings
from tests.fakes.fixtures import cohere_server_session, fake_cohere, fake_openai, openai_server_session  # noqa: F401

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
    monkeypatch.setenv("DREAM_GRAPH_DB", str(tmp_path / "runs.sqlite"))  # never the user's data dir
    monkeypatch.setenv("DREAM_GRAPH_CACHE_DIR", str(tmp_path / "cache"))  # never the user's docs cache
    get_settings.cache_clear()
    docs_holder.reset()
    yield
    get_settings.cache_clear()
    docs_holder.reset()
