"""The run store on SQLite: every run and cycle recorded by the graph, read back, exported, served read-only."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import logging

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from typer.testing import CliRunner

from dream_graph import build_graph, store
from dream_graph.cli import app
from dream_graph.errors import ConfigError
from dream_graph.settings import get_settings
from dream_graph.store import RunStore, get_store, record_error_count, run_from_state, store_url

CLEAN = "Here it is.\n\n```python\ndef add(a: int, b: int) -> int:\n    return a + b\n```\n\n```yaml\npipeline:\n  name: adder\n```\n"
SYNTAX_ERROR = "```python\ndef add(a, b)\n    return a + b\n```\n"
CHECKS = {"evaluators": ["syntax", "security"]}


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
    assert record_error_count() == before + 1
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
    assert first["evaluations"] == {"security": False, "syntax": False}
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
