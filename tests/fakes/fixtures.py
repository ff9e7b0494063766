"""Pytest fixtures for the fake LLM servers: one server per provider per session, reset and wired in per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from dream_graph.settings import get_settings
from tests.fakes.cohere_server import FakeCohere
from tests.fakes.openai_server import FakeOpenAI

FAKE_OPENAI_KEY = "sk-fake-openai"
FAKE_COHERE_KEY = "fake-cohere-key"


@pytest.fixture(scope="session")
def openai_server_session() -> Iterator[FakeOpenAI]:
    """Started once: starting uvicorn per test would cost more than most tests."""
    with FakeOpenAI() as server:
        yield server


@pytest.fixture(scope="session")
def cohere_server_session() -> Iterator[FakeCohere]:
    """Started once, like the OpenAI one."""
    with FakeCohere() as server:
        yield server


@pytest.fixture
def fake_openai(openai_server_session: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeOpenAI]:
    """A clean fake OpenAI server, with OPENAI_BASE_URL and OPENAI_API_KEY pointing at it."""
    server = openai_server_session
    server.reset()
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", FAKE_OPENAI_KEY)
    get_settings.cache_clear()
    yield server
    server.reset()


@pytest.fixture
def fake_cohere(cohere_server_session: FakeCohere, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeCohere]:
    """A clean fake Cohere server, with COHERE_BASE_URL and COHERE_API_KEY pointing at it."""
    server = cohere_server_session
    server.reset()
    monkeypatch.setenv("COHERE_BASE_URL", server.base_url)
    monkeypatch.setenv("COHERE_API_KEY", FAKE_COHERE_KEY)
    get_settings.cache_clear()
    yield server
    server.reset()
