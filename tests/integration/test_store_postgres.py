"""The same store and checkpointer on the local PostgreSQL, each test in its own schema (skipped when unreachable)."""

from __future__ import annotations

import os
import uuid
from urllib.parse import quote

import pytest
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage

from dream_graph import build_graph
from dream_graph.checkpoint import open_checkpointer, thread_config, thread_history
from dream_graph.report import build_report
from dream_graph.settings import get_settings
from dream_graph.store import get_store

pytestmark = pytest.mark.postgres

BASE_URL = os.environ.get("DREAM_GRAPH_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
CLEAN = "```python\ndef add(a: int, b: int) -> int:\n    return a + b\n```\n"
SYNTAX_ERROR = "```python\ndef add(a, b)\n    return a + b\n```\n"


def _reachable() -> str | None:
    import psycopg

    try:
        with psycopg.connect(BASE_URL, connect_timeout=2):
            return None
    except Exception as exc:  # any failure means: no database to test against
        return f"PostgreSQL at {BASE_URL} unreachable: {exc}"


_why_not = _reachable()


@pytest.fixture(autouse=True)
def no_store_backoff(monkeypatch):
    """Each test starts as if no write had failed before it (the in-flight back-off is per process)."""
    from dream_graph import store

    monkeypatch.setattr(store, "_last_failure", float("-inf"))


@pytest.fixture
def pg_url(monkeypatch):
    """A fresh schema; DREAM_GRAPH_DB points at it (a plain postgresql:// URL, as users write it)."""
    if _why_not:
        pytest.skip(_why_not)
    import psycopg

    schema = f"dg_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(BASE_URL, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    url = f"{BASE_URL}?options={quote(f'-csearch_path={schema}')}"
    monkeypatch.setenv("DREAM_GRAPH_DB", url)
    get_settings.cache_clear()
    yield url
    store = get_store()
    if store is not None:
        store.engine.dispose()
    with psycopg.connect(BASE_URL, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


def run(*replies: str, **context):
    model = GenericFakeChatModel(messages=iter([AIMessage(r) for r in replies]))
    return build_graph(chat_model=model).invoke(
        {"prompt": "write an adder"}, context={"evaluators": ["syntax", "security"], **context}
    )


def test_round_trip_on_postgres(pg_url):
    state = run(SYNTAX_ERROR, CLEAN)
    assert state["record_error"] is None
    store = get_store()
    assert store.engine.dialect.name == "postgresql" and store.engine.driver == "psycopg"
    saved = store.get_run(state["run_id"])
    assert (saved["status"], saved["cycles"], saved["request"]) == ("passed", 2, "write an adder")
    assert [c["passed"] for c in saved["cycle_details"]] == [False, True]
    syntax = next(e for e in saved["cycle_details"][0]["evaluations"] if e["evaluator"] == "syntax")
    assert syntax["findings"][0]["rule"] == "E999"
    assert saved["started_at"].endswith("+00:00")
    assert store.get_run(state["run_id"][:6])["id"] == state["run_id"]
    records = list(store.iter_cycles())
    assert [(r["cycle"], r["passed"]) for r in records] == [(1, False), (2, True)]
    assert [m["role"] for m in records[1]["messages"]] == ["system", "human", "ai", "human"]
    report = build_report(store)
    assert report.runs == 1 and report.cycles_to_pass == {2: 1}
    assert {f.rule for f in report.top_findings} >= {"E999"}


def test_checkpoints_on_postgres(pg_url):
    with open_checkpointer() as saver:
        graph = build_graph(chat_model=GenericFakeChatModel(messages=iter([AIMessage(CLEAN)])), checkpointer=saver)
        state = graph.invoke(
            {"prompt": "write an adder"}, thread_config("pg-thread"), context={"evaluators": ["syntax"]}
        )
        history = thread_history(graph, "pg-thread")
    assert state["status"] == "passed"
    assert history[-1].values["run_id"] == state["run_id"] and history[-1].next == ()
    assert get_store().list_runs(thread_id="pg-thread")[0]["id"] == state["run_id"]


def test_an_older_postgres_store_is_upgraded_in_place(pg_url):
    from dream_graph.store import store_url
    from tests.unit.test_store import check_upgraded, make_old_store

    make_old_store(store_url())
    check_upgraded(store_url()).engine.dispose()


def test_nul_and_lone_surrogates_are_stored_the_same_as_on_sqlite(pg_url):
    from tests.unit.test_store import check_nasty_text_round_trips

    check_nasty_text_round_trips(get_store())


def test_record_error_on_postgres_has_no_sql_and_no_values(pg_url, caplog):
    import logging

    from dream_graph.store import record_safely

    state = {"prompt": "secret-prompt-text", "run_id": "x" * 40, "cycles": 0, "status": "passed"}
    with caplog.at_level(logging.WARNING, logger="dream_graph.store"):
        result = record_safely(state)
    assert result["record_error"] == "StringDataRightTruncation: value too long for type character varying(32)"
    assert "secret-prompt-text" not in caplog.text


def test_runs_of_a_dead_process_are_marked_interrupted_on_postgres(pg_url):
    import socket
    import subprocess
    import sys

    from dream_graph.store import _boot_id, process_owner, record_safely, recover_interrupted_runs

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    state = {"prompt": "p", "cycles": 0, "status": "running"}
    mine = record_safely({**state, "run_id": "a" * 32}, final=False)["run_id"]
    dead = record_safely({**state, "run_id": "b" * 32}, final=False)["run_id"]
    from sqlalchemy import update

    from dream_graph.store import Run

    with get_store().engine.begin() as conn:
        gone = f"{socket.gethostname()}:{_boot_id()}:{child.pid}:1"
        conn.execute(update(Run).where(Run.id == dead).values(owner=gone))
    assert recover_interrupted_runs() == [dead]
    runs = {r["id"]: (r["status"], r["owner"]) for r in get_store().list_runs()}
    assert runs == {mine: ("running", process_owner()), dead: ("interrupted", runs[dead][1])}
