"""The opt-in `sandbox` evaluator: hostile generated code runs in a limited child; the parent is unharmed."""

from __future__ import annotations

import os
import resource
import signal
import socket

import pytest

from dream_graph.context import Context
from dream_graph.evaluators import EvalInput, get_registry, is_blocking
from dream_graph.evaluators import sandbox
from dream_graph.evaluators.sandbox import NO_NAMESPACE, Isolation, Limits, SandboxEvaluator, run_sandboxed, to_findings

pytestmark = pytest.mark.slow

FAST = Limits(timeout_s=2.0, cpu_s=1, memory_mb=256)
SECRET = "s3cret-value-the-child-must-not-see"

NODE = '''from typing import Optional

from aineko import AbstractNode
from aineko.datasets.kafka import KafkaDataset


class Counter(AbstractNode):
    def _execute(self, params: Optional[dict] = None) -> Optional[bool]:
        return None


Counter()
'''
HOSTILE = {
    "infinite loop": "while True:\n    pass\n",
    "sleep forever": "import time\n\ntime.sleep(600)\n",
    "fork bomb": "import os\n\nfor _ in range(16):\n    os.fork()\n",
    "subprocess": "import subprocess\n\nsubprocess.run(['true'])\n",
    "raw fork_exec": "import _posixsubprocess\n\n_posixsubprocess.fork_exec()\n",
    "huge allocation": "data = bytearray(64 * 1024 ** 3)\n",
    "socket": "import socket\n\nsocket.socket(socket.AF_INET, socket.SOCK_STREAM)\n",
    "parent environment": '''import os

seen = dict(os.environ)
for path in (f"/proc/{os.getppid()}/environ", "/proc/1/environ"):
    try:
        seen[path] = open(path, "rb").read().decode("latin-1")
    except OSError as exc:
        seen[path] = repr(exc)
raise RuntimeError("child saw: " + repr(seen))
''',
    "stderr flood": "import sys\n\nwhile True:\n    sys.stderr.write('x' * 4096)\n",
}
EXPECTED = {
    "infinite loop": ("sandbox-cpu", "sandbox-killed", "sandbox-timeout"),
    "sleep forever": ("sandbox-timeout",),
    "fork bomb": ("sandbox-import-error",),
    "subprocess": ("sandbox-import-error",),
    "raw fork_exec": ("sandbox-import-error",),
    "huge allocation": ("sandbox-import-error",),
    "socket": ("sandbox-import-error",),
    "parent environment": ("sandbox-import-error",),
    "stderr flood": ("sandbox-cpu", "sandbox-killed", "sandbox-timeout"),
}
MESSAGE = {
    "fork bomb": "os.fork is not allowed",
    "subprocess": "subprocess.Popen is not allowed",
    "raw fork_exec": "starting processes is not allowed",
    "huge allocation": "MemoryError",
    "socket": "socket.__new__ is not allowed",
    "parent environment": "child saw",
}


@pytest.fixture(params=["platform", "no-namespace"])
def isolation_mode(request, monkeypatch):
    """Every case runs with the platform's isolation and with the fallback (no namespace: sockets blocked only)."""
    if request.param == "no-namespace":
        fallback = Isolation((), NO_NAMESPACE, -1)
        monkeypatch.setattr(sandbox, "isolation", lambda: fallback)
    return request.param


async def test_a_node_with_the_aineko_import_passes(isolation_mode):
    findings = to_findings(await run_sandboxed(NODE, FAST), FAST)
    assert not any(is_blocking(f) for f in findings)
    if isolation_mode == "no-namespace":
        (note,) = findings
        assert note["rule"] == "sandbox-isolation" and "socket creation is blocked" in note["message"]


@pytest.mark.parametrize("case", sorted(HOSTILE))
async def test_hostile_code_is_a_finding_and_the_parent_is_unharmed(case, isolation_mode, monkeypatch):
    monkeypatch.setenv("DREAM_SANDBOX_SECRET", SECRET)
    limits_before = {r: resource.getrlimit(r) for r in (resource.RLIMIT_AS, resource.RLIMIT_CPU, resource.RLIMIT_NPROC)}

    result = await run_sandboxed(HOSTILE[case], FAST)
    (found,) = to_findings(result, FAST)

    assert found["rule"] in EXPECTED[case] and is_blocking(found)
    assert case not in MESSAGE or MESSAGE[case] in found["message"]
    assert SECRET not in found["message"] and SECRET not in result.stderr
    assert len(found["message"]) < 4000
    # the parent: same limits, same environment, still allowed to open sockets and fork
    assert {r: resource.getrlimit(r) for r in limits_before} == limits_before
    assert os.environ["DREAM_SANDBOX_SECRET"] == SECRET
    socket.socket().close()


async def test_parent_environment_is_invisible(monkeypatch):
    monkeypatch.setenv("DREAM_SANDBOX_SECRET", SECRET)
    result = await run_sandboxed(HOSTILE["parent environment"], FAST)
    (found,) = to_findings(result, FAST)
    assert "child saw" in found["message"] and "DREAM_SANDBOX_SECRET" not in found["message"]
    assert "reading /proc is not allowed" in found["message"]


async def test_timeout_kills_the_process_group():
    result = await run_sandboxed(HOSTILE["sleep forever"], Limits(timeout_s=0.5, cpu_s=5, memory_mb=256))
    assert result.timed_out and result.returncode == -signal.SIGKILL


async def test_an_exception_names_its_line_and_hides_the_temp_dir():
    code = "import json\n\nraise ValueError('boom at import')\n"
    (found,) = to_findings(await run_sandboxed(code, FAST), FAST)
    assert found["rule"] == "sandbox-import-error" and found["line"] == 3
    assert "ValueError: boom at import" in found["message"]
    assert "dream_graph_sandbox_" not in found["message"]


async def test_evaluator_uses_the_run_options():
    options = Context(sandbox_timeout=0.5, sandbox_cpu_seconds=5, sandbox_memory_mb=256)
    (found,) = await SandboxEvaluator().evaluate(HOSTILE["sleep forever"], EvalInput(options=options))
    assert found["rule"] == "sandbox-timeout" and "0.5 s" in found["message"]
    (missing,) = await SandboxEvaluator().evaluate(None, EvalInput())
    assert missing["rule"] == "not-run"


def test_sandbox_is_registered_but_not_a_default():
    assert "sandbox" in get_registry()
    assert "sandbox" not in Context().evaluators


def test_the_graph_runs_the_sandbox_when_asked():
    from dream_graph import build_graph

    state = build_graph().invoke(
        {"prompt": "a node that counts words"}, context={"model": "offline", "evaluators": ["syntax", "sandbox"]}
    )
    assert state["status"] == "passed"
    assert {e["evaluator"] for e in state["evaluations"]} == {"syntax", "sandbox"}


@pytest.mark.parametrize(
    ("option", "value"), [("sandbox_timeout", 0), ("sandbox_cpu_seconds", 0), ("sandbox_memory_mb", 8)]
)
def test_bad_limits_are_refused(option, value):
    with pytest.raises(ValueError, match=option):
        Context(**{option: value})
