"""Finding 6 (runs in flight lost in a crash) and the store half of finding 9 (NUL / lone surrogates), against a real
`dream-graph serve`: kill -9 in the middle of a burst, start again, and every run that started is in the store as
finished or interrupted; text the databases refuse is never a 500 and never SQL in `record_error`."""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from dream_graph.settings import Settings
from dream_graph.store import RunStore, get_store, recover_interrupted_runs, store_url
from tests.fakes.base import CLEAN_REPLY
from tests.fakes.openai_server import FakeOpenAI
from tests.integration.serving import Server, clean_environment, free_port, running

PG_BASE = os.environ.get("DREAM_GRAPH_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
BURST, RUNNING, QUEUED = 12, 4, 8
LATENCY = 1.0
PROMPT = re.compile(r"burst request (\d+)\b")


def _pg_reason() -> str | None:
    """Why PostgreSQL cannot be used here, or None."""
    try:
        import psycopg

        with psycopg.connect(PG_BASE, connect_timeout=2):
            return None
    except Exception as exc:  # any failure means: no database to test against
        return f"PostgreSQL at {PG_BASE} unreachable: {exc}"


@pytest.fixture(params=["sqlite", "postgres"])
def db(request, tmp_path):
    """DREAM_GRAPH_DB for the server: a SQLite file, or a fresh PostgreSQL schema (skipped when PostgreSQL is absent)."""
    if request.param == "sqlite":
        yield str(tmp_path / "runs.sqlite")
        return
    reason = _pg_reason()
    if reason:
        pytest.skip(reason)
    import psycopg

    schema = f"dg_crash_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_BASE, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield f"{PG_BASE}?options={quote(f'-csearch_path={schema}')}"
    finally:
        with psycopg.connect(PG_BASE, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


def _store(db: str) -> RunStore:
    return RunStore.from_url(store_url(Settings(DREAM_GRAPH_DB=db)))


def _server_env(fake: FakeOpenAI, db: str) -> dict[str, str]:
    return {
        "DREAM_GRAPH_DB": db,
        "OPENAI_API_KEY": "sk-fake-openai",
        "OPENAI_BASE_URL": fake.base_url,
        "DREAM_GRAPH_MODEL": "openai:gpt-4o-mini",
        "DREAM_GRAPH_MAX_RETRIES": "0",
        "DREAM_GRAPH_MAX_CONCURRENT_RUNS": str(RUNNING),
        "DREAM_GRAPH_MAX_QUEUED_RUNS": str(QUEUED),
        "DREAM_GRAPH_RUFF_SERVER": "false",
    }


@contextmanager
def serve(tmp: Path, env: dict[str, str]) -> Iterator[Server]:
    """`dream-graph serve` on a free port with `env` (its DREAM_GRAPH_DB included) over a clean environment."""
    port = free_port()
    main = "from dream_graph.cli import main; main()"
    command = [sys.executable, "-c", main, "serve", "--host", "127.0.0.1", "--port", str(port)]
    with running(
        command, {**clean_environment(tmp), **env}, tmp, port, ready_path="/healthz", log_dir=tmp, timeout=120
    ) as server:
        yield server


def _post(url: str, i: int) -> tuple[int, dict | str]:
    """One request of the burst: (status, body), or (0, the error) when the connection dies with the server."""
    body = {
        "prompt": f"burst request {i}: a node that counts words",
        "options": {"evaluators": ["syntax"], "max_cycles": 1},
    }
    try:
        response = httpx.post(f"{url}/generate", json=body, timeout=60)
    except httpx.HTTPError as exc:
        return 0, type(exc).__name__
    return response.status_code, response.json()


def _numbers_the_model_saw(fake: FakeOpenAI) -> set[int]:
    """Which burst requests reached the model: the fake provider's own log, independent of the store."""
    seen = set()
    for body in fake.bodies:
        match = PROMPT.search(json.dumps(body.get("messages")))
        if match:
            seen.add(int(match.group(1)))
    return seen


@pytest.mark.slow
def test_kill_9_mid_burst_leaves_every_started_run_finished_or_interrupted(db, tmp_path):
    with FakeOpenAI(latency=LATENCY) as fake:
        fake.default = type(fake.default).ok(CLEAN_REPLY)
        env = _server_env(fake, db)
        with serve(tmp_path, env) as server, ThreadPoolExecutor(BURST) as pool:
            futures = [pool.submit(_post, server.url, i) for i in range(BURST)]
            deadline = time.monotonic() + 60
            # Kill once some runs have answered and the next wave is with the model: both kinds are in the burst.
            while not (sum(f.done() for f in futures) >= 2 and len(_numbers_the_model_saw(fake)) >= RUNNING + 2):
                assert time.monotonic() < deadline, f"the burst never got going:\n{server.log[-3000:]}"
                time.sleep(0.02)
            os.kill(server.pid, signal.SIGKILL)
            results = [f.result() for f in futures]
        killed_pid = server.pid
        seen_by_model = _numbers_the_model_saw(fake)

        answered = {i: body for i, (status, body) in enumerate(results) if status == 200}
        assert all(status in (200, 0) for status, _ in results), f"nothing refused or failed: {results}"
        assert 2 <= len(answered) < len(seen_by_model), "the kill came in the middle of the burst"

        if db.startswith("postgresql"):  # the start-up function itself (a second server start costs seconds)
            url = store_url(Settings(DREAM_GRAPH_DB=db))
            marked = recover_interrupted_runs(url)
            get_store(url).engine.dispose()
            restart_log = f"{len(marked)} run(s) left running by a stopped process marked interrupted"
        else:
            with serve(tmp_path, env) as again:  # the service's start-up hook runs before /healthz answers
                restart_log = again.log
    store = _store(db)
    try:
        runs = store.list_runs(limit=100)
    finally:
        store.engine.dispose()

    by_number = {int(PROMPT.search(r["request"]).group(1)): r for r in runs}
    assert len(by_number) == len(runs), "one row per run"
    assert not [r for r in runs if r["status"] == "running"], "nothing is left looking in progress"
    missing = seen_by_model - set(by_number)
    assert not missing, f"runs that reached the model but are not in the store: {sorted(missing)}"
    for i, body in answered.items():
        row = by_number[i]
        assert (row["id"], row["status"], row["cycles"]) == (body["run_id"], body["status"], 1)
        assert row["finished_at"] is not None
    interrupted = {i: r for i, r in by_number.items() if r["status"] == "interrupted"}
    assert interrupted and not set(interrupted) & set(answered), "the kill caught runs in flight"
    for i in set(by_number) - set(answered) - set(interrupted):  # ended and written, killed before it answered
        assert by_number[i]["status"] in ("passed", "failed", "error") and by_number[i]["finished_at"] is not None
    for row in interrupted.values():
        assert row["owner"].split(":")[2] == str(killed_pid) and row["finished_at"] is None
    assert f"{len(interrupted)} run(s) left running by a stopped process marked interrupted" in restart_log


@pytest.mark.parametrize("bad", ["a node\x00 that counts words", "a node that counts \ud800 words"])
def test_nul_and_lone_surrogate_prompts_are_refused_before_any_run_and_nothing_is_stored(bad, tmp_path, monkeypatch):
    """The API refuses them (422) before a run starts; the store would clean them anyway
    (tests/unit/test_store.py and tests/integration/test_store_postgres.py check that on both databases)."""
    from fastapi.testclient import TestClient
    from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
    from langchain_core.messages import AIMessage

    from dream_graph.graph import build_graph
    from dream_graph.service.app import create_app
    from dream_graph.store import get_store

    graph = build_graph(chat_model=GenericFakeChatModel(messages=iter([AIMessage(CLEAN_REPLY)])))
    client = TestClient(create_app({"dream": graph}), raise_server_exceptions=False)
    raw = json.dumps({"prompt": bad, "options": {"evaluators": ["syntax"]}})  # \u escapes: valid JSON text
    response = client.post("/generate", content=raw, headers={"Content-Type": "application/json"})
    assert response.status_code == 422, response.text
    assert "INSERT" not in response.text and "[SQL" not in response.text
    assert get_store().count_runs() == 0
