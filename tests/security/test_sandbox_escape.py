"""Escape attempts: no guard lives in the sandboxed interpreter, so undoing one changes nothing."""

from __future__ import annotations

import json

import pytest

from dream_graph.evaluators import EvalInput
from dream_graph.evaluators.sandbox import SandboxEvaluator
from dream_graph.sandbox import run_python

pytestmark = [pytest.mark.slow, pytest.mark.timeout(60), pytest.mark.usefixtures("cold_sandboxes")]

PROBE = """
import json, os
out = {"uid": os.getuid(), "gid": os.getgid(), "env": dict(os.environ)}
try:
    out["shadow"] = open("/etc/shadow").read()[:20]
except OSError as exc:
    out["shadow"] = type(exc).__name__
pid = os.fork()
if pid == 0:
    os._exit(7)
out["child"] = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
print(json.dumps(out))
"""

HOOK_TRICK = """
import __main__
try:
    __main__._hook.__defaults__ = (frozenset(),)
except AttributeError as exc:
    print("no hook:", exc)
import sys
sys.modules.pop("_posixsubprocess", None)
"""


async def test_the_old_audit_hook_trick_changes_nothing(bwrap_backend):
    """The escape from the old sandbox finds no hook to disable, and the boundary is the same with or without it."""
    plain = await run_python(PROBE)
    tricked = await run_python(HOOK_TRICK + PROBE)
    note, probe = tricked.stdout.decode().splitlines()
    assert note.startswith("no hook:")
    assert json.loads(probe) == json.loads(plain.stdout)
    assert json.loads(probe)["shadow"] == "FileNotFoundError"
    assert json.loads(probe)["child"] == 7  # forking is allowed (kernel-capped), not hidden behind a hook


async def test_the_environment_is_empty_and_the_user_is_nobody(bwrap_backend, monkeypatch):
    monkeypatch.setenv("DREAM_GRAPH_CANARY_SECRET", "do-not-leak")
    result = await run_python(PROBE)
    seen = json.loads(result.stdout)
    assert (seen["uid"], seen["gid"]) == (65534, 65534)
    assert set(seen["env"]) <= {"PWD", "LC_CTYPE"}  # set by bwrap --chdir and by Python itself, nothing inherited
    assert seen["env"].get("PWD", "/job") == "/job"


async def test_no_namespace_or_mount_tricks(bwrap_backend):
    """No capabilities: mounting, a nested user namespace, and changing the hostname all fail."""
    script = """
import ctypes, json, os, socket
libc = ctypes.CDLL(None, use_errno=True)
out = {}
out["mount"] = libc.mount(b"none", b"/tmp", b"tmpfs", 0, None), ctypes.get_errno()
out["unshare_user"] = libc.unshare(0x10000000), ctypes.get_errno()
out["sethostname"] = libc.sethostname(b"x", 1), ctypes.get_errno()
out["hostname"] = socket.gethostname()
print(json.dumps(out))
"""
    seen = json.loads((await run_python(script)).stdout)
    assert seen["mount"][0] == -1 and seen["sethostname"][0] == -1
    assert seen["unshare_user"][0] == -1  # --disable-userns (or no capability): no nested namespaces
    assert seen["hostname"] == "sandbox"


async def test_the_evaluator_reports_the_backend_and_no_host_paths(bwrap_backend):
    findings = await SandboxEvaluator().evaluate("import os\nraise RuntimeError(os.getcwd())\n", EvalInput())
    assert findings[0] == {"rule": "sandbox-backend", "line": None, "severity": "info",
                           "message": f"imported in {bwrap_backend}"}  # fmt: skip
    assert findings[1]["rule"] == "sandbox-import-error" and "RuntimeError: /job" in findings[1]["message"]
