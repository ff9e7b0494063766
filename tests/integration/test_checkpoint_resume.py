"""A run killed mid-loop (SIGKILL) resumes in a new process from its last checkpoint, and its history reads back."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dream_graph.checkpoint import can_resume, open_checkpointer, saver_target, thread_config, thread_history
from dream_graph.errors import ConfigError
from dream_graph.graph import build_graph
from dream_graph.store import get_store, recover_interrupted_runs

pytestmark = pytest.mark.slow

WORKER = r'''
import json, os, sys, time
from pathlib import Path

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage
from langchain_core.outputs import ChatGeneration, ChatResult

from dream_graph.checkpoint import open_checkpointer, thread_config
from dream_graph.graph import build_graph

calls, mode, thread = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
BROKEN = "```python\ndef node(:\n    pass\n```\n"
GOOD = "```python\ndef node(x: int) -> int:\n    return x\n```\n"


class Scripted(BaseChatModel):
    """Cycle 1: a syntax error. Cycle 2: hangs in the first process (to be killed), answers well after a resume."""

    @property
    def _llm_type(self) -> str:
        return "scripted"

    def _generate(self, messages, stop=None, run_manager=None, **kwargs):
        cycle = sum(1 for m in messages if m.type == "ai") + 1
        with calls.open("a") as f:
            f.write(json.dumps({"pid": os.getpid(), "mode": mode, "cycle": cycle, "messages": len(messages)}) + "\n")
        if cycle >= 2 and mode == "first":
            time.sleep(600)
        return ChatResult(generations=[ChatGeneration(message=AIMessage(BROKEN if cycle == 1 else GOOD))])


context = {"evaluators": ["syntax", "security"], "max_cycles": 3}
with open_checkpointer() as saver:
    graph = build_graph(chat_model=Scripted(), checkpointer=saver)
    state = graph.invoke({"prompt": "a node"} if mode == "first" else None, thread_config(thread), context=context)
    print(json.dumps({k: state.get(k) for k in ("status", "cycles", "run_id", "record_error")}))
'''


def calls_made(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_killed_run_resumes_from_its_last_checkpoint(tmp_path):
    worker = tmp_path / "worker.py"
    worker.write_text(WORKER)
    calls = tmp_path / "calls.jsonl"
    thread = "resume-me"

    first = subprocess.Popen(
        [sys.executable, str(worker), str(calls), "first", thread], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 60
    while not any(c["cycle"] == 2 for c in calls_made(calls)):
        assert first.poll() is None, first.stderr.read().decode()
        assert time.monotonic() < deadline, "the first process never reached cycle 2"
        time.sleep(0.05)
    with open_checkpointer() as saver:  # checkpoints are written in the background: wait for decide's to land
        graph = build_graph(checkpointer=saver)
        while graph.get_state(thread_config(thread)).next != ("generate",):
            assert time.monotonic() < deadline, "the checkpoint after cycle 1 never appeared"
            time.sleep(0.05)
    os.kill(first.pid, signal.SIGKILL)
    first.wait(timeout=10)
    assert first.returncode == -signal.SIGKILL

    with open_checkpointer() as saver:
        graph = build_graph(checkpointer=saver)
        snapshot = graph.get_state(thread_config(thread))
        assert snapshot.next == ("generate",), "the last completed step was decide, asking for a fix"
        assert snapshot.values["cycles"] == 1 and snapshot.values["status"] == "running"
        assert can_resume(graph, thread)
    (left,) = get_store().list_runs()
    assert (left["status"], left["thread_id"], left["cycles"]) == ("running", thread, 1), "written after cycle 1"
    assert left["owner"].split(":")[2] == str(first.pid) and left["finished_at"] is None
    assert recover_interrupted_runs() == [left["id"]], "its process is dead: the start-up hook marks it"
    interrupted = get_store().get_run(left["id"])
    assert interrupted["status"] == "interrupted" and f"--resume --thread {thread}" in interrupted["error"]
    assert [c["passed"] for c in interrupted["cycle_details"]] == [False], "the checked cycle 1 is kept"

    second = subprocess.run(
        [sys.executable, str(worker), str(calls), "resume", thread], capture_output=True, text=True, timeout=120
    )
    assert second.returncode == 0, second.stderr
    result = json.loads(second.stdout.strip().splitlines()[-1])
    assert (result["status"], result["cycles"], result["record_error"]) == ("passed", 2, None)

    made = calls_made(calls)
    assert [(c["mode"], c["cycle"]) for c in made] == [("first", 1), ("first", 2), ("resume", 2)]
    assert made[2]["messages"] == 4, "the resumed call sees the checkpointed conversation: system, request, reply, fix"

    with open_checkpointer() as saver:
        graph = build_graph(checkpointer=saver)
        history = thread_history(graph, thread)
        assert not can_resume(graph, thread)
    steps = [s.metadata["step"] for s in history]
    assert steps == sorted(steps) and len(steps) == len(set(steps))
    assert history[-1].values["status"] == "passed" and history[-1].next == ()
    assert [s.values.get("cycles") for s in history if s.next == ("generate",)][-2:] == [0, 1]

    run = get_store().get_run(result["run_id"])
    assert run["id"] == left["id"] and get_store().count_runs() == 1, "the resume finishes the same row"
    assert run["thread_id"] == thread and run["status"] == "passed"
    assert [c["passed"] for c in run["cycle_details"]] == [False, True]


def test_history_of_a_thread_in_process(tmp_path):
    with open_checkpointer() as saver:
        graph = build_graph(checkpointer=saver)
        graph.invoke({"prompt": "a node that counts words"}, thread_config("t1"), context={"max_cycles": 1})
        nodes = [s.next for s in thread_history(graph, "t1")]
    assert nodes[1:4] == [("retrieve_docs",), ("build_prompt",), ("generate",)]
    assert nodes[-2:] == [("record",), ()]


def test_saver_targets_and_errors(monkeypatch):
    assert saver_target("sqlite:////tmp/x/cp.sqlite") == ("sqlite", "/tmp/x/cp.sqlite")
    assert saver_target("postgresql+psycopg://u:p@h:5432/db") == ("postgres", "postgresql://u:p@h:5432/db")
    with pytest.raises(ConfigError, match="no LangGraph checkpointer"):
        saver_target("mysql://u@h/db")
    monkeypatch.setenv("DREAM_GRAPH_DB", "off")
    from dream_graph.settings import get_settings

    get_settings.cache_clear()
    with pytest.raises(ConfigError, match="checkpointing needs a database"):
        saver_target()
    with pytest.raises(ConfigError, match="thread id"):
        thread_config(" ")


def test_cli_thread_and_resume_flags():
    from typer.testing import CliRunner

    from dream_graph.cli import app

    runner = CliRunner()
    first = runner.invoke(
        app, ["generate", "a node that counts words", "--thread", "cli-thread", "--pipeline", "offline", "--json"]
    )
    assert first.exit_code == 0, first.output
    state = json.loads(first.stdout)
    (run,) = get_store().list_runs(thread_id="cli-thread")
    assert (run["id"], run["pipeline"]) == (state["run_id"], "offline")
    again = runner.invoke(app, ["generate", "--resume", "--thread", "cli-thread", "--json"])
    assert again.exit_code == 0 and json.loads(again.stdout)["run_id"] == state["run_id"]
    assert get_store().count_runs() == 1, "resuming a finished thread runs nothing again"
    missing = runner.invoke(app, ["generate", "--resume"])
    assert missing.exit_code == 2 and "--resume needs --thread" in missing.stderr
