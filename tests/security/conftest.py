"""Attack tests run the real attack through the real sandbox; each leaves no sandbox process behind."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from dream_graph import sandbox
from dream_graph.graph import build_graph
from dream_graph.settings import get_settings


def child_pids() -> set[int]:
    """Processes whose parent is this test process (bwrap, or the plain process in `process` mode)."""
    me, found = os.getpid(), set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == me:
                found.add(int(entry.name))
    return found


def processes_with_arg(marker: str) -> list[int]:
    """Host pids whose command line contains `marker` (how a test finds what a job started inside its sandbox)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


@pytest.fixture
def cold_sandboxes(monkeypatch):
    """Cold sandboxes unless a test asks for warm ones; afterwards every sandbox of the test is gone."""
    monkeypatch.setenv("DREAM_GRAPH_SANDBOX_WARM", "0")
    sandbox.reset()
    before = child_pids()
    yield
    sandbox.reset()
    leftover = child_pids() - before
    assert not leftover, f"sandbox processes left behind: {sorted(leftover)}"


@pytest.fixture
def bwrap_backend() -> str:
    """The bubblewrap backend's label; skip only where no bubblewrap works at all (CI installs it)."""
    status = sandbox.backend_status()
    if not status["available"]:
        pytest.skip(f"no working bubblewrap here: {status['detail']}")
    return status["backend"]


def one_pipeline() -> dict[str, Any]:
    """Just `dream` (and its chat routes): an app with every pipeline takes seconds to build."""
    return {"dream": build_graph()}


def setenv(monkeypatch: pytest.MonkeyPatch, **values: str) -> None:
    """Set variables for this test and make the settings read them again."""
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
