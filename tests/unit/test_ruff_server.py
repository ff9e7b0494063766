"""The long-lived `ruff server` behind the lint evaluator: same answers as the CLI, and a CLI fallback when it fails."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from pathlib import Path

import pytest

from benchmarks.common import generated_module
from dream_graph.evaluators import lint as lint_mod
from dream_graph.evaluators import ruff_server
from dream_graph.evaluators.lint import lint, safe_fixes
from dream_graph.evaluators.ruff_server import RuffServerError, apply_edits, live_server, shutdown_server
from dream_graph.settings import get_settings
from tests.fakes import BANDIT_REPLY

SAMPLES = [
    generated_module(200)[0],
    BANDIT_REPLY.split("```python\n", 1)[1].split("```", 1)[0],
    "import os\nimport sys\nx = f'a'\nif x is 'a':\n    print('é😀', x)\nraise NotImplemented\n",
    "import subprocess\nsubprocess.call('ls', shell=True)\nassert 1\npassword = 'hunter2'\n",
    "def f():\n    return undefined_name + '😀😀'\nimport json  # noqa: F401\nimport re\n",
]
UNDEFINED = "def f():\n    return undefined_name\n"


@pytest.fixture(autouse=True)
def fresh_server():
    shutdown_server()
    yield
    shutdown_server()


def use_server(monkeypatch, on: bool) -> None:
    monkeypatch.setenv("DREAM_GRAPH_RUFF_SERVER", "true" if on else "false")
    get_settings.cache_clear()


async def answers(samples: list[str]) -> list[tuple]:
    return [(await lint(code, "all"), await safe_fixes(code)) for code in samples]


async def test_server_and_cli_give_the_same_findings_and_fixes(monkeypatch):
    use_server(monkeypatch, True)
    through_server = await answers(SAMPLES)
    assert live_server() is not None
    use_server(monkeypatch, False)
    shutdown_server()
    through_cli = await answers(SAMPLES)
    assert live_server() is None
    assert through_server == through_cli
    findings, (fixed, rules) = through_server[2]
    assert rules == ["F401", "F541", "F632", "F901"]  # the samples do exercise the fixes
    assert "'é😀'" in fixed and "import os" not in fixed
    assert {f["rule"] for f in through_server[3][0]} >= {"S602", "S105"}


async def test_concurrent_checks_on_one_server_each_get_their_own_answer(monkeypatch):
    use_server(monkeypatch, True)
    codes = [f"def f{i}():\n    return missing_{i}\n" for i in range(30)]
    results = await asyncio.gather(*(lint(code) for code in codes))
    assert [r[0]["message"] for r in results] == [f"Undefined name `missing_{i}` [error]" for i in range(30)]
    assert [r[0]["line"] for r in results] == [2] * 30


async def test_a_killed_server_is_replaced_and_no_check_is_lost(monkeypatch):
    use_server(monkeypatch, True)
    assert (await lint(UNDEFINED))[0]["rule"] == "F821"
    first = live_server()
    os.kill(first._proc.pid, signal.SIGKILL)
    first._proc.wait()
    # other sources each time: a source checked before is answered from memory, without the server
    assert (await lint(UNDEFINED + "# 2\n"))[0]["rule"] == "F821"  # the CLI or a new server answers
    assert (await lint(UNDEFINED + "# 3\n"))[0]["rule"] == "F821"
    second = live_server()
    assert second is not None and second is not first and first.dead


def stopped(pid: int, within_s: float = 10.0) -> bool:
    """Wait until every thread of `pid` is stopped: SIGSTOP wakes one thread, which then stops the others, so on a
    busy machine another thread can still read and answer a request for a while after kill() returns."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        states = []
        for tid in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError):
                stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
                states.append(stat.rsplit(")", 1)[1].split()[0])
        if states and all(state == "T" for state in states):
            return True
        time.sleep(0.01)
    return False


async def test_a_hung_server_times_out_to_the_cli_and_is_replaced(monkeypatch):
    use_server(monkeypatch, True)
    await lint(UNDEFINED)
    hung = live_server()
    monkeypatch.setattr(ruff_server, "REQUEST_TIMEOUT_S", 0.5)
    os.kill(hung._proc.pid, signal.SIGSTOP)
    try:
        assert stopped(hung._proc.pid), "the server did not stop"
        found = await asyncio.wait_for(lint(UNDEFINED + "# 2\n"), 20)
        assert found[0]["rule"] == "F821"  # answered by the CLI
        assert hung.dead and "did not answer" in hung.dead, (hung, live_server(), list(hung._recent))
    finally:
        os.kill(hung._proc.pid, signal.SIGCONT)
    assert (await lint(UNDEFINED + "# 3\n"))[0]["rule"] == "F821"
    assert live_server() not in (None, hung)


async def test_a_source_checked_again_is_answered_from_memory_and_a_fix_still_asks(monkeypatch):
    use_server(monkeypatch, True)
    await lint("x = 1\n")
    server = live_server()
    sent = []
    real = server.request
    monkeypatch.setattr(server, "request", lambda method, params: sent.append(method) or real(method, params))
    assert (await safe_fixes(UNDEFINED)) == (UNDEFINED, [])  # the auto-fix step: one diagnostic request
    assert (await lint(UNDEFINED))[0]["rule"] == "F821"  # the check of the same source: none
    assert sent == ["textDocument/diagnostic"]
    unused = "import os\n"
    await lint(unused, "all")
    assert (await safe_fixes(unused)) == ("", ["F401"]), "known diagnostics with a fix still ask for the fix"
    assert sent.count("textDocument/codeAction") == 1
    monkeypatch.setattr(ruff_server, "RECENT_CHECKS", 2)
    for i in range(3):
        await lint(f"y = {i}\n")
    assert len(server._recent) == 2 and "y = 0\n" not in server._recent, "the oldest source is forgotten"


async def test_a_server_that_cannot_start_falls_back_to_the_cli_and_is_not_retried_at_once(monkeypatch):
    use_server(monkeypatch, True)
    starts = []

    class Broken:
        def __init__(self, *args):
            starts.append(args)
            raise OSError("no such binary")

    monkeypatch.setattr(ruff_server, "RuffServer", Broken)
    assert (await lint(UNDEFINED))[0]["rule"] == "F821"
    assert (await safe_fixes("import os\n")) == ("", ["F401"])
    assert len(starts) == 1  # the failure is remembered for RETRY_AFTER_FAILURE_S
    with pytest.raises(RuffServerError, match="failed to start recently"):
        ruff_server.get_server("ruff", (), ())


async def test_a_cancelled_check_does_not_break_the_next(monkeypatch):
    use_server(monkeypatch, True)
    await lint(UNDEFINED)
    task = asyncio.create_task(lint(generated_module(1000)[0]))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert (await lint(UNDEFINED))[0]["rule"] == "F821"


async def test_shutdown_stops_the_child(monkeypatch):
    use_server(monkeypatch, True)
    await lint(UNDEFINED)
    proc = live_server()._proc
    shutdown_server()
    assert proc.poll() is not None and live_server() is None


def test_the_service_stops_its_ruff_server_with_it(monkeypatch):
    from fastapi.testclient import TestClient

    from dream_graph.service.app import create_app

    use_server(monkeypatch, True)
    with TestClient(create_app(graphs={})) as client:
        assert client.get("/healthz").status_code == 200
        server = ruff_server.get_server(lint_mod.ruff_binary(), lint_mod.LINT_RULES, lint_mod.AUTOFIX_RULES)
    assert server._proc.poll() is not None and live_server() is None


@pytest.mark.parametrize(
    ("encoding", "character"),
    [("utf-16", 14), ("utf-32", 13)],  # the `f` of f'z': the emoji is two UTF-16 code units, one code point
)
def test_edits_are_applied_at_the_agreed_position_encoding(encoding, character):
    text = "import os\nx = '😀'; y = f'z'\n"
    span = {"start": {"line": 1, "character": character}, "end": {"line": 1, "character": character + 1}}
    edit = {"range": span, "newText": ""}
    removal = {"range": {"start": {"line": 0, "character": 0}, "end": {"line": 1, "character": 0}}, "newText": ""}
    assert apply_edits(text, [edit, removal], encoding) == "x = '😀'; y = 'z'\n"
