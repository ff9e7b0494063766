"""The run store on SQLite: every run and cycle recorded by the graph, read back, exported, served read-only."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import logging
import os
import socket
import subprocess
import sys
import uuid
from datetime import UTC, datetime

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from pydantic import Field
from typer.testing import CliRunner

from dream_graph import build_graph, store
from dream_graph.cli import app
from dream_graph.errors import ConfigError
from dream_graph.settings import get_settings
from dream_graph.store import RunStore, get_store, record_error_count, run_from_state, store_url

CLEAN = "Here it is.\n\n```python\ndef add(a: int, b: int) -> int:\n    return a + b\n```\n\n```yaml\npipeline:\n  name: adder\n```\n"
SYNTAX_ERROR = "```python\ndef add(a, b)\n    return a + b\n```\n"
CHECKS = {"evaluators": ["syntax", "security"]}


@pytest.fixture(autouse=True)
def no_store_backoff(monkeypatch):
    """Each test starts as if no write had failed before it (the in-flight back-off is per process)."""
    monkeypatch.setattr(store, "_last_failure", float("-inf"))


def fake(*replies: str) -> GenericFakeChatModel:
    return GenericFakeChatModel(messages=iter([AIMessage(r) for r in replies]))


def run_graph(*replies: str, prompt: str = "write an adder", **context):
    return build_graph(chat_model=fake(*replies)).invoke({"prompt": prompt}, context={**CHECKS, **context})


def test_a_run_with_a_repair_is_recorded_cycle_by_cycle():
    state = run_graph(SYNTAX_ERROR, CLEAN)
    assert (state["status"], state["cycles"]) == ("passed", 2)
    assert state["record_error"] is None
    run = get_store().get_run(state["run_id"])

    assert run["request"] == "write an adder"
    assert (run["status"], run["stop_reason"], run["cycles"]) == ("passed", "passed", 2)
    assert run["model"].startswith("generic-fake-chat-model")
    assert run["options"]["evaluators"] == ["syntax", "security"]
    assert run["started_at"] <= run["finished_at"] and run["duration_ms"] >= 0
    assert [m["role"] for m in run["messages"]] == ["system", "human", "ai", "human", "ai"]

    first, second = run["cycle_details"]
    assert (first["cycle"], first["passed"], first["message_index"]) == (1, False, 2)
    assert first["reply"] == SYNTAX_ERROR and first["code"].startswith("def add(a, b)")
    syntax = next(e for e in first["evaluations"] if e["evaluator"] == "syntax")
    assert syntax["passed"] is False and syntax["findings"][0]["rule"] == "E999"
    assert syntax["duration_ms"] is not None
    assert (second["cycle"], second["passed"], second["message_index"]) == (2, True, 4)
    assert second["reply"] == CLEAN and second["code"] == state["code"]
    assert second["config_yaml"].startswith("pipeline:")
    assert {e["evaluator"] for e in second["evaluations"]} == {"syntax", "security"}
    assert all(not e["findings"] for e in second["evaluations"])


def test_get_run_accepts_a_unique_prefix_and_lists_newest_first():
    a = run_graph(CLEAN, prompt="first")["run_id"]
    b = run_graph(CLEAN, prompt="second")["run_id"]
    s = get_store()
    assert s.get_run(a[:8])["id"] == a
    assert s.get_run("zzzz") is None
    assert [r["request"] for r in s.list_runs()] == ["second", "first"]
    assert [r["id"] for r in s.list_runs(limit=1)] == [b]
    assert s.count_runs() == 2


def test_async_runs_are_recorded_too():
    state = asyncio.run(build_graph(chat_model=fake(CLEAN)).ainvoke({"prompt": "async adder"}, context=CHECKS))
    assert get_store().get_run(state["run_id"])["request"] == "async adder"


def test_provider_error_is_recorded_with_its_error():
    class Boom(GenericFakeChatModel):
        def _generate(self, *a, **k):
            raise ConnectionError("provider unreachable")

    state = build_graph(chat_model=Boom(messages=iter([]))).invoke({"prompt": "x"}, context=CHECKS)
    run = get_store().get_run(state["run_id"])
    assert (run["status"], run["stop_reason"]) == ("error", "provider_error")
    assert "provider unreachable" in run["error"]
    (cycle,) = run["cycle_details"]
    assert cycle["reply"] is None and cycle["passed"] is None and cycle["evaluations"] == []


def test_llm_calls_give_latency_and_tokens_and_their_absence_is_tolerated():
    messages = [SystemMessage("s"), HumanMessage("q"), AIMessage(SYNTAX_ERROR), HumanMessage("fix"), AIMessage(CLEAN)]
    base = {"prompt": "q", "messages": messages, "cycles": 2, "status": "passed", "stop_reason": "passed", "model": "m"}
    calls = [
        {
            "cycle": 1,
            "model": "openai:a",
            "latency_ms": 100.0,
            "input_tokens": 10,
            "output_tokens": 5,
            "ok": False,
            "error": "429",
        },
        {
            "cycle": 1,
            "model": "openai:a",
            "latency_ms": 50.0,
            "input_tokens": 10,
            "output_tokens": 5,
            "ok": True,
            "error": None,
        },
        {
            "cycle": 2,
            "model": "cohere:b",
            "latency_ms": 70.0,
            "input_tokens": 20,
            "output_tokens": 7,
            "ok": True,
            "error": None,
        },
    ]
    run = run_from_state({**base, "llm_calls": calls})
    one, two = run.cycle_rows
    assert (one.latency_ms, one.input_tokens, one.output_tokens, one.llm_error, one.model) == (
        150.0,
        20,
        10,
        "429",
        "openai:a",
    )
    assert (two.latency_ms, two.model, two.llm_ok) == (70.0, "cohere:b", True)
    assert (run.input_tokens, run.output_tokens) == (40, 17)

    messages[2] = AIMessage(SYNTAX_ERROR, usage_metadata={"input_tokens": 3, "output_tokens": 4, "total_tokens": 7})
    plain = run_from_state({**base, "messages": messages})
    assert plain.cycle_rows[0].latency_ms is None
    assert (plain.cycle_rows[0].input_tokens, plain.cycle_rows[0].output_tokens) == (3, 4)
    assert plain.input_tokens == 3


def test_recording_the_same_run_twice_keeps_one_row():
    state = run_graph(CLEAN)
    s = get_store()
    s.record_state(state)  # the same run recorded again, as after a resume that re-ran `record`
    assert s.count_runs() == 1
    assert len(s.get_run(state["run_id"])["cycle_details"]) == 1


def test_a_broken_store_is_logged_and_counted_and_the_run_still_passes(monkeypatch, tmp_path, caplog):
    (tmp_path / "a_file").write_text("not a folder")
    monkeypatch.setenv("DREAM_GRAPH_DB", str(tmp_path / "a_file" / "runs.sqlite"))
    get_settings.cache_clear()
    before = record_error_count()
    with caplog.at_level(logging.WARNING, logger="dream_graph.store"):
        state = run_graph(CLEAN)
    assert state["status"] == "passed" and state["code"].startswith("def add")
    assert state["record_error"] and "run_id" in state
    assert record_error_count() == before + 2, "a one-cycle run writes twice: when it starts and when it ends"
    assert "could not record run" in caplog.text


def test_db_off_records_nothing(monkeypatch, tmp_path):
    monkeypatch.setenv("DREAM_GRAPH_DB", "off")
    get_settings.cache_clear()
    state = run_graph(CLEAN)
    assert state["status"] == "passed" and state.get("record_error") is None
    assert not list(tmp_path.glob("*.sqlite"))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("off", None),
        ("", None),
        ("postgresql://u:p@db:5432/runs", "postgresql+psycopg://u:p@db:5432/runs"),
        ("postgres://u@db/runs", "postgresql+psycopg://u@db/runs"),
        ("sqlite:////tmp/x.sqlite", "sqlite:////tmp/x.sqlite"),
    ],
)
def test_store_url_from_the_setting(monkeypatch, value, expected):
    monkeypatch.setenv("DREAM_GRAPH_DB", value)
    get_settings.cache_clear()
    assert store_url() == expected


def test_store_url_defaults_and_paths(monkeypatch, tmp_path):
    monkeypatch.setenv("DREAM_GRAPH_DB", "runs/my.sqlite")
    get_settings.cache_clear()
    assert store_url() == f"sqlite:///{tmp_path / 'runs' / 'my.sqlite'}"
    monkeypatch.delenv("DREAM_GRAPH_DB")
    get_settings.cache_clear()
    assert store_url().startswith("sqlite:///") and store_url().endswith("dream_graph/runs.sqlite")
    monkeypatch.setenv("DREAM_GRAPH_DB", "not a url://x")
    get_settings.cache_clear()
    with pytest.raises(ConfigError, match="DREAM_GRAPH_DB"):
        store_url()


# --------------------------------------------------------------------------- export and CLI

runner = CliRunner()


def test_export_jsonl_has_one_line_per_cycle_with_prompt_and_reply():
    a = run_graph(SYNTAX_ERROR, CLEAN, prompt="adder")
    run_graph(CLEAN, prompt="another")
    result = runner.invoke(app, ["runs", "export", "--format", "jsonl"])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(r["request"], r["cycle"]) for r in lines] == [("adder", 1), ("adder", 2), ("another", 1)]
    first, second = lines[0], lines[1]
    assert first["run_id"] == a["run_id"] and first["passed"] is False and first["final_cycle"] is False
    assert [m["role"] for m in first["messages"]] == ["system", "human"]
    assert [m["role"] for m in second["messages"]] == ["system", "human", "ai", "human"]
    assert second["messages"][-1]["content"] == a["messages"][3].content  # the fix request
    assert first["reply"] == SYNTAX_ERROR and second["reply"] == CLEAN
    assert {f["rule"] for f in first["findings"]} >= {"E999"}
    assert first["evaluations"] == {"syntax": False}, "security needs a parse: not run on a reply that has none"
    assert second["evaluations"] == {"security": True, "syntax": True}
    assert second["final_cycle"] is True and second["run_status"] == "passed"


def test_export_csv_to_a_file(tmp_path):
    run_graph(SYNTAX_ERROR, CLEAN)
    out = tmp_path / "cycles.csv"
    result = runner.invoke(app, ["runs", "export", "-f", "csv", "-o", str(out)])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert [r["cycle"] for r in rows] == ["1", "2"]
    assert rows[0]["passed"] == "False" and rows[1]["passed"] == "True"
    assert json.loads(rows[1]["messages"])[-1]["role"] == "human"
    assert "E999" in {f["rule"] for f in json.loads(rows[0]["findings"])}
    assert rows[1]["code"].startswith("def add(a: int")


def test_cli_list_show_and_errors(monkeypatch):
    state = run_graph(CLEAN, prompt="listed request")
    listed = runner.invoke(app, ["runs", "list", "--json"])
    assert json.loads(listed.stdout)[0]["id"] == state["run_id"]
    shown = runner.invoke(app, ["runs", "show", state["run_id"][:6]])
    assert shown.exit_code == 0 and "listed request" in shown.stdout and "def add" in shown.stdout
    missing = runner.invoke(app, ["runs", "show", "nope"])
    assert missing.exit_code == 2 and "no run 'nope'" in missing.stderr
    monkeypatch.setenv("DREAM_GRAPH_DB", "off")
    get_settings.cache_clear()
    off = runner.invoke(app, ["runs", "list"])
    assert off.exit_code == 2 and "recording is off" in off.stderr


# --------------------------------------------------------------------------- /runs API


def api() -> TestClient:
    from dream_graph.service.runs_api import router

    web = FastAPI()
    web.include_router(router)
    return TestClient(web)


def test_runs_api_lists_shows_and_reports():
    state = run_graph(SYNTAX_ERROR, CLEAN)
    client = api()
    listed = client.get("/runs").json()
    assert listed["total"] == 1 and listed["runs"][0]["id"] == state["run_id"]
    assert client.get("/runs", params={"status": "failed"}).json()["runs"] == []
    one = client.get(f"/runs/{state['run_id']}").json()
    assert len(one["cycle_details"]) == 2
    report = client.get("/runs/report").json()
    assert report["runs"] == 1 and report["cycles_to_pass"] == {"2": 1}
    assert client.get("/runs/nope").status_code == 404


def test_runs_api_needs_the_key_when_one_is_set(monkeypatch):
    monkeypatch.setenv("DREAM_GRAPH_API_KEY", "s3cret")
    get_settings.cache_clear()
    client = api()
    assert client.get("/runs").status_code == 401
    assert client.get("/runs/report", headers={"X-API-Key": "wrong"}).status_code == 401
    assert client.get("/runs", headers={"X-API-Key": "s3cret"}).status_code == 200


def test_runs_api_says_when_recording_is_off(monkeypatch):
    monkeypatch.setenv("DREAM_GRAPH_DB", "off")
    get_settings.cache_clear()
    response = api().get("/runs")
    assert response.status_code == 503 and "recording is off" in response.json()["detail"]


def test_store_module_keeps_one_engine_per_url(tmp_path):
    a = get_store(f"sqlite:///{tmp_path / 'a.sqlite'}")
    assert get_store(f"sqlite:///{tmp_path / 'a.sqlite'}") is a
    b = get_store(f"sqlite:///{tmp_path / 'b.sqlite'}")
    assert b is not a and isinstance(b, RunStore)
    assert store.get_store(None) is not None


def test_every_cycle_keeps_its_reply_and_prompt_after_the_conversation_is_trimmed():
    bad = [f"```python\ndef f{i}(:\n    pass\n```\n" for i in range(3)]
    state = run_graph(*bad, CLEAN, max_cycles=4)
    assert (state["status"], state["cycles"]) == ("passed", 4)
    ai_in_state = [m for m in state["messages"] if m.type == "ai"]
    assert len(ai_in_state) < 4, "the repair loop trims old replies, which is what this test is about"
    run = get_store().get_run(state["run_id"])
    replies = [c["reply"] for c in run["cycle_details"]]
    assert replies == [*bad, CLEAN]
    third = next(x for x in get_store().iter_cycles() if x["run_id"] == state["run_id"] and x["cycle"] == 3)
    assert [m["role"] for m in third["messages"]][:2] == ["system", "human"]
    assert third["messages"][-1]["role"] == "human" and "E999" in third["messages"][-1]["content"]
    assert "def f1(" in third["messages"][-2]["content"]  # the previous reply the fix refers to


# --------------------------------------------------------------------------- written as it goes: start, cycles, end


class Peeking(GenericFakeChatModel):
    """Replies in turn; before each reply it reads what the store holds for the run so far (a crash would leave that)."""

    seen: list = Field(default_factory=list)

    def _generate(self, messages, *args, **kwargs):
        self.seen.append([get_store().get_run(r["id"]) for r in get_store().list_runs()])
        return super()._generate(messages, *args, **kwargs)


def peeking(*replies) -> Peeking:
    return Peeking(messages=iter([AIMessage(r) for r in replies]))


def test_a_run_is_in_the_store_from_its_start_and_after_every_cycle():
    model = peeking(SYNTAX_ERROR, CLEAN)
    state = build_graph(chat_model=model).invoke({"prompt": "write an adder"}, context=CHECKS)
    assert (state["status"], state["cycles"], state["record_error"]) == ("passed", 2, None)

    (at_start,), (after_one,) = model.seen
    assert (at_start["id"], at_start["status"], at_start["cycles"]) == (state["run_id"], "running", 0)
    assert at_start["request"] == "write an adder" and at_start["model"].startswith("generic-fake-chat-model")
    assert at_start["target"] and at_start["target"].startswith("aineko==")
    assert at_start["finished_at"] is None and at_start["duration_ms"] is None and at_start["stop_reason"] is None
    assert at_start["owner"] == store.process_owner() and at_start["updated_at"]
    assert at_start["cycle_details"] == []

    assert (after_one["status"], after_one["cycles"], after_one["finished_at"]) == ("running", 1, None)
    (one,) = after_one["cycle_details"]
    assert (one["cycle"], one["reply"], one["passed"], one["message_index"]) == (1, SYNTAX_ERROR, False, 2)
    assert {e["evaluator"] for e in one["evaluations"]} == {"syntax"}  # security skips a reply that does not parse
    assert one["llm_ok"] is True and len(one["llm_calls"]) == 1

    final = get_store().get_run(state["run_id"])
    assert (final["status"], final["cycles"]) == ("passed", 2) and final["finished_at"] >= after_one["updated_at"]
    assert [c["reply"] for c in final["cycle_details"]] == [SYNTAX_ERROR, CLEAN]
    assert get_store().count_runs() == 1, "the in-flight rows were replaced, not added"


def test_a_reply_on_cycle_1_then_a_provider_error_on_cycle_2_keeps_each_cycle_its_own_reply():
    class FailsSecond(Peeking):
        def _generate(self, messages, *args, **kwargs):
            if sum(1 for m in messages if m.type == "ai") >= 1 or len(messages) > 2:
                self.seen.append([get_store().get_run(r["id"]) for r in get_store().list_runs()])
                raise ConnectionError("provider went away on cycle 2")
            return super()._generate(messages, *args, **kwargs)

    model = FailsSecond(messages=iter([AIMessage(SYNTAX_ERROR)]))
    state = build_graph(chat_model=model).invoke({"prompt": "write an adder"}, context=CHECKS)
    assert (state["status"], state["stop_reason"], state["cycles"]) == ("error", "provider_error", 2)
    in_flight = model.seen[-1][0]
    assert [c["reply"] for c in in_flight["cycle_details"]] == [SYNTAX_ERROR], "cycle 1 was written before cycle 2"

    run = get_store().get_run(state["run_id"])
    one, two = run["cycle_details"]
    assert (one["reply"], one["message_index"], one["passed"], one["llm_ok"]) == (SYNTAX_ERROR, 2, False, True)
    assert (two["reply"], two["message_index"], two["passed"], two["llm_ok"]) == (None, None, None, False)
    assert "provider went away" in two["llm_error"] and two["evaluations"] == []
    exported = [r for r in get_store().iter_cycles() if r["run_id"] == state["run_id"]]
    assert exported[0]["reply"] == SYNTAX_ERROR and [m["role"] for m in exported[0]["messages"]] == ["system", "human"]
    assert exported[1]["reply"] is None and exported[1]["messages"][-2]["content"] == SYNTAX_ERROR

    # The same state without per-call records (an older checkpoint): the replies are aligned from the end.
    plain = run_from_state({**state, "llm_calls": []})
    assert [(c.cycle, c.message_index, c.reply) for c in plain.cycle_rows] == [(1, 2, SYNTAX_ERROR), (2, None, None)]


# --------------------------------------------------------------------------- interrupted runs


def _running_row(owner, prompt="left running", thread=None):
    """A run as its start write leaves it, under `owner`."""
    row = run_from_state({"prompt": prompt, "run_id": uuid.uuid4().hex, "cycles": 0}, final=False)
    row.owner, row.thread_id = owner, thread
    return get_store().record(row)


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_only_runs_of_a_gone_process_of_this_host_are_marked_interrupted():
    host, boot = socket.gethostname(), store._boot_id()
    me = store.process_owner()
    start = me.rsplit(":", 1)[1]
    assert start != "-", "this host has /proc: the owner carries the process start time"
    live = _running_row(me)
    other_host = _running_row(f"another-host:{boot}:{os.getpid()}:{start}")
    dead = _running_row(f"{host}:{boot}:{_dead_pid()}:{start}", thread="t-dead")
    reused_pid = _running_row(f"{host}:{boot}:{os.getpid()}:{int(start) - 1}")
    old_boot = _running_row(f"{host}:an-earlier-boot:{os.getpid()}:{start}")
    no_owner = _running_row(None)
    finished = run_graph(CLEAN)["run_id"]

    marked = get_store().mark_interrupted()
    assert set(marked) == {dead, reused_pid, old_boot, no_owner}
    assert get_store().mark_interrupted() == [], "marking is done once"
    status = {r["id"]: r["status"] for r in get_store().list_runs()}
    assert status == {
        live: "running",
        other_host: "running",
        dead: "interrupted",
        reused_pid: "interrupted",
        old_boot: "interrupted",
        no_owner: "interrupted",
        finished: "passed",
    }
    dead_run = get_store().get_run(dead)
    assert dead_run["stop_reason"] == "interrupted" and dead_run["finished_at"] is None
    assert "--resume --thread t-dead" in dead_run["error"] and str(dead_run["owner"]) in dead_run["error"]
    assert "--resume" not in get_store().get_run(reused_pid)["error"], "no thread: nothing to resume"


def test_the_start_up_hook_and_the_runs_commands_mark_dead_processes_runs(caplog):
    gone = _running_row(f"{socket.gethostname()}:{store._boot_id()}:{_dead_pid()}:1", prompt="killed mid-run")
    with caplog.at_level(logging.WARNING, logger="dream_graph.store"):
        assert store.recover_interrupted_runs() == [gone]
    assert "marked interrupted" in caplog.text and gone in caplog.text
    later = _running_row(f"{socket.gethostname()}:{store._boot_id()}:{_dead_pid()}:1", prompt="killed too")
    listed = runner.invoke(app, ["runs", "list", "--json"])
    assert listed.exit_code == 0 and [r["status"] for r in json.loads(listed.stdout)] == ["interrupted"] * 2
    assert get_store().get_run(later)["status"] == "interrupted"
    shown = runner.invoke(app, ["runs", "show", later[:8]])
    assert shown.exit_code == 0 and "interrupted" in shown.stdout and "stopped before the run ended" in shown.stdout
    client = api()
    assert {r["id"] for r in client.get("/runs", params={"status": "interrupted"}).json()["runs"]} == {gone, later}
    report = client.get("/runs/report").json()
    assert report["by_status"] == {"interrupted": 2} and report["pass_rates"] == [], "no outcome, no pass rate"


def test_a_broken_store_at_start_up_is_logged_not_raised(monkeypatch, tmp_path, caplog):
    monkeypatch.setenv("DREAM_GRAPH_DB", "postgresql://nobody@127.0.0.1:1/none?connect_timeout=1")
    get_settings.cache_clear()
    with caplog.at_level(logging.WARNING, logger="dream_graph.store"):
        assert store.recover_interrupted_runs() == []
    assert "could not look for interrupted runs: OperationalError" in caplog.text
    assert "SELECT" not in caplog.text


def test_at_shutdown_a_process_marks_its_own_unfinished_runs_only():
    mine = store.record_safely({"prompt": "cancelled", "run_id": uuid.uuid4().hex, "cycles": 0}, final=False)["run_id"]
    someone_elses = _running_row("another-host:b:1:1")
    done = run_graph(CLEAN)["run_id"]
    assert store.interrupt_own_runs() == [mine]
    assert store.interrupt_own_runs() == []
    status = {r["id"]: r["status"] for r in get_store().list_runs()}
    assert status == {mine: "interrupted", someone_elses: "running", done: "passed"}


# --------------------------------------------------------------------------- a store made by an older version


def _old_runs_table(metadata):
    """`runs` as the previous release created it: no target/owner/updated_at, and finished_at NOT NULL."""
    from sqlalchemy import Table

    new = {"target", "owner", "updated_at"}
    columns = []
    for column in store.Run.__table__.columns:
        if column.name in new:
            continue
        copy = column._copy()
        if column.name == "finished_at":
            copy.nullable = False
        columns.append(copy)
    return Table("runs", metadata, *columns)


def make_old_store(url):
    from sqlalchemy import MetaData, create_engine, insert

    engine = create_engine(url)
    metadata = MetaData()
    table = _old_runs_table(metadata)
    metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(
            insert(table).values(
                id="old1",
                request="from before",
                status="passed",
                cycles=1,
                messages=[],
                options={},
                doc_sections=[],
                finished_at=datetime.now(UTC),
            )
        )
    engine.dispose()


def check_upgraded(url):
    from sqlalchemy import inspect as sa_inspect

    opened = RunStore.from_url(url)
    columns = {c["name"]: c for c in sa_inspect(opened.engine).get_columns("runs")}
    assert {"target", "owner", "updated_at"} <= set(columns) and columns["finished_at"]["nullable"]
    indexes = {i["name"] for i in sa_inspect(opened.engine).get_indexes("runs")}
    assert {"ix_runs_status", "ix_runs_finished_at", "ix_runs_thread_id"} <= indexes
    old = opened.get_run("old1")
    assert (old["request"], old["status"], old["owner"]) == ("from before", "passed", None)
    row = run_from_state({"prompt": "new", "run_id": "new1", "cycles": 0}, final=False)
    opened.record(row)
    assert opened.get_run("new1")["status"] == "running"
    assert opened.upgrade_schema() == [], "a second open changes nothing"
    return opened


def test_an_older_sqlite_store_gets_the_new_columns_and_keeps_its_runs(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.sqlite'}"
    make_old_store(url)
    check_upgraded(url).engine.dispose()


# --------------------------------------------------------------------------- text the databases refuse


NASTY = "adder\x00 with a lone \ud800, a pair \ud83d\ude00 and a tail\udfff"
NASTY_STORED = "adder\ufffd with a lone \ufffd, a pair \U0001f600 and a tail\ufffd"


def check_nasty_text_round_trips(s: RunStore) -> None:
    """Shared with the PostgreSQL tests: NUL and lone surrogates are stored as U+FFFD, identically everywhere."""
    reply = f"```python\ndef f(:\n    pass\n```\n{NASTY}"
    state = {
        "prompt": NASTY,
        "run_id": uuid.uuid4().hex,
        "cycles": 1,
        "status": "failed",
        "stop_reason": "max_cycles",
        "model": "m",
        "error": NASTY,
        "messages": [SystemMessage("s"), HumanMessage(NASTY), AIMessage(reply)],
        "evaluations": [
            {
                "cycle": 1,
                "evaluator": "syntax",
                "passed": False,
                "findings": [{"rule": "E999", "line": 1, "severity": "error", "message": NASTY}],
            }
        ],
        "llm_calls": [
            {
                "cycle": 1,
                "model": "m",
                "ok": True,
                "error": None,
                "reply": reply,
                "sent_after_prompt": [],
                "note": NASTY,
            }
        ],
    }
    s.record(run_from_state(state))
    run = s.get_run(state["run_id"])
    assert (run["request"], run["error"], run["messages"][1]["content"]) == (NASTY_STORED, NASTY_STORED, NASTY_STORED)
    (cycle,) = run["cycle_details"]
    assert cycle["reply"].endswith(NASTY_STORED) and cycle["evaluations"][0]["findings"][0]["message"] == NASTY_STORED
    assert cycle["llm_calls"][0]["note"] == NASTY_STORED
    assert s.get_run("\x00bad\ud800") is None and s.list_runs(pipeline="\x00") == [], "lookups are cleaned too"


def test_nul_and_lone_surrogates_are_stored_as_replacement_characters_on_sqlite():
    check_nasty_text_round_trips(get_store())
    assert store.clean_text("plain") == "plain" and store.clean_text("") == ""
    assert store.clean_text("\x00") == "\ufffd" and store.clean_text("\ud83d\ude00") == "\U0001f600"


def test_a_model_reply_with_nul_and_a_lone_surrogate_is_recorded():
    bad_reply = CLEAN + "\x00 trailing \ud800"
    state = run_graph(bad_reply)
    assert state["record_error"] is None
    run = get_store().get_run(state["run_id"])
    assert run["cycle_details"][0]["reply"] == CLEAN + "\ufffd trailing \ufffd"


def test_record_error_names_the_database_error_without_sql_or_values(caplog):
    from sqlalchemy import text

    with get_store().engine.begin() as conn:
        conn.execute(
            text("CREATE TRIGGER refuse BEFORE INSERT ON runs BEGIN SELECT RAISE(ABORT, 'refused by trigger'); END")
        )
    with caplog.at_level(logging.WARNING, logger="dream_graph.store"):
        state = run_graph(CLEAN, prompt="secret-prompt-text")
    assert state["status"] == "passed"
    assert state["record_error"] == "IntegrityError: refused by trigger"
    assert "secret-prompt-text" not in caplog.text, "the engine hides parameters in logs too"
    assert store.safe_error(ValueError("")) == "ValueError"


def test_a_database_that_is_down_costs_in_flight_writes_once_then_they_wait(monkeypatch, tmp_path):
    (tmp_path / "a_file").write_text("not a folder")
    monkeypatch.setenv("DREAM_GRAPH_DB", str(tmp_path / "a_file" / "runs.sqlite"))
    get_settings.cache_clear()
    before = record_error_count()
    state = run_graph(SYNTAX_ERROR, CLEAN)
    assert (state["status"], state["cycles"]) == ("passed", 2)
    # start: tried and failed; after cycle 1: skipped (back-off); the end: tried again and failed.
    assert record_error_count() == before + 2
    assert state["record_error"].startswith("FileExistsError: ")  # the folder for the file is a file
    monkeypatch.setenv("DREAM_GRAPH_DB", str(tmp_path / "fine.sqlite"))
    get_settings.cache_clear()
    skipped = store.record_safely({"prompt": "p", "run_id": "r1", "cycles": 0}, final=False)
    assert "failed moments ago" in skipped["record_error"], "still inside the back-off"
    assert store.record_safely({"prompt": "p", "run_id": "r1", "cycles": 0, "status": "passed"})["record_error"] is None
    assert store.record_safely({"prompt": "p", "run_id": "r2", "cycles": 0}, final=False)["record_error"] is None, (
        "a write that worked ends the back-off"
    )


# --------------------------------------------------------------------------- a graph call that ends early


def test_a_run_that_raises_is_marked_interrupted_at_once_with_the_reason():
    graph = build_graph(chat_model=fake(CLEAN))
    with pytest.raises(ConfigError, match="unknown evaluator"):  # raised after the run's start was written
        graph.invoke({"prompt": "raises"}, context={"evaluators": ["no-such-check"]})
    (run,) = get_store().list_runs()
    detail = get_store().get_run(run["id"])
    assert (run["status"], run["owner"]) == ("interrupted", store.process_owner()), "this process is alive"
    assert detail["error"].startswith("the run stopped early, before its end was written: ConfigError: unknown")
    assert store.interrupt_own_runs() == [], "already closed: nothing left for shutdown"


def test_a_consumer_that_stops_reading_interrupts_the_run_but_a_finished_one_stays():
    graph = build_graph(chat_model=fake(SYNTAX_ERROR, CLEAN))
    for chunk in graph.stream({"prompt": "abandoned"}, context=CHECKS, stream_mode="updates"):
        if "generate" in chunk:
            break
    done = run_graph(CLEAN, prompt="finished")["run_id"]
    status = {r["request"]: r["status"] for r in get_store().list_runs()}
    assert status == {"abandoned": "interrupted", "finished": "passed"}
    (abandoned,) = get_store().list_runs(status="interrupted")
    assert get_store().get_run(abandoned["id"])["error"].endswith(": GeneratorExit")
    assert get_store().get_run(done)["error"] is None


async def test_a_cancelled_async_run_is_marked_interrupted_off_the_event_loop():
    class Slow(GenericFakeChatModel):
        async def _agenerate(self, *args, **kwargs):
            await asyncio.sleep(30)

    graph = build_graph(chat_model=Slow(messages=iter([])))
    task = asyncio.create_task(graph.ainvoke({"prompt": "cancelled"}, context=CHECKS))
    for _ in range(500):
        runs = await asyncio.to_thread(get_store().list_runs)
        if runs:
            break
        await asyncio.sleep(0.01)
    assert [r["status"] for r in runs] == ["running"]
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    for _ in range(500):  # marked from a worker thread, not awaited by the cancelled task
        run = await asyncio.to_thread(get_store().get_run, runs[0]["id"])
        if run["status"] != "running":
            break
        await asyncio.sleep(0.01)
    assert run["status"] == "interrupted" and "CancelledError" in run["error"]


def test_a_cycles_llm_figures_come_from_its_calls_else_from_the_replys_usage():
    from langchain_core.messages import AIMessage

    from dream_graph.store import _cycle_llm

    reply = AIMessage("r", usage_metadata={"input_tokens": 70, "output_tokens": 9, "total_tokens": 79})
    assert _cycle_llm([], None) == {"latency_ms": None, "input_tokens": None, "output_tokens": None,
                                    "llm_ok": None, "llm_error": None, "model": None}
    assert _cycle_llm([], reply) == {"latency_ms": None, "input_tokens": 70, "output_tokens": 9,
                                     "llm_ok": True, "llm_error": None, "model": None}
    failover = [{"model": "openai:a", "ok": False, "error": "HTTP 500", "latency_ms": 10},
                {"model": "cohere:b", "ok": True, "error": None, "latency_ms": 5.5}]
    assert _cycle_llm(failover, reply) == {"latency_ms": 15.5, "input_tokens": 70, "output_tokens": 9,
                                           "llm_ok": True, "llm_error": "HTTP 500", "model": "cohere:b"}
    all_failed = [{"model": "openai:a", "ok": False, "error": "timeout"}, {"model": "cohere:b", "ok": False}]
    assert _cycle_llm(all_failed, None)["model"] == "cohere:b" and _cycle_llm(all_failed, None)["llm_ok"] is False
    assert _cycle_llm(all_failed, None)["latency_ms"] is None, "no latency recorded is unknown, not 0 ms"
    counted = [{"model": "openai:a", "ok": True, "input_tokens": 3, "output_tokens": 4}]
    assert (_cycle_llm(counted, reply)["input_tokens"], _cycle_llm(counted, reply)["output_tokens"]) == (3, 4)


def test_a_runs_summary_carries_its_tokens_experiment_and_task():
    from dream_graph.store import run_summary

    state = {"prompt": "p", "run_id": "r1", "cycles": 1, "status": "passed", "tokens_used": 321,
             "llm_calls": [{"cycle": 1, "model": "m", "ok": True, "input_tokens": 11, "output_tokens": 22}]}
    row = run_from_state(state, {"configurable": {"experiment": "exp-1", "task": "count-words"}})
    summary = run_summary(row)
    assert {k: summary[k] for k in ("input_tokens", "output_tokens", "tokens_used", "experiment", "task")} == {
        "input_tokens": 11, "output_tokens": 22, "tokens_used": 321, "experiment": "exp-1", "task": "count-words"}


def test_replies_map_to_cycles_from_the_end_for_message_objects_and_plain_dicts():
    from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

    from dream_graph.store import _reply_cycles

    objects = [SystemMessage("s"), HumanMessage("ask"), AIMessage("r1"), HumanMessage("fix"), AIMessage("r2")]
    dicts = [{"role": "system"}, {"role": "human"}, {"role": "ai"}, {"role": "human"}, {"role": "ai"}]
    for messages in (objects, dicts):
        assert _reply_cycles({"cycles": 2}, messages) == {1: 2, 2: 4}
        assert _reply_cycles({"cycles": 3, "status": "error"}, messages) == {1: 2, 2: 4}, "cycle 3 got no reply"
        assert _reply_cycles({"cycles": 1}, messages) == {1: 4}, "a trimmed history: the newest reply is cycle 1's"
        assert _reply_cycles({}, messages) == {}, "no cycle ran, nothing to map"
    assert _reply_cycles({"cycles": 2}, [{"role": "human"}, {"role": "assistant"}]) == {}
