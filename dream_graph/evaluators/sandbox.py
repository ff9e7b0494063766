"""Import the generated module in a separate, limited Python process: never in the service process.

The child runs `sys.executable -I` in a fresh temp dir with an empty environment, CPU/memory/process rlimits, a
wall-clock limit (the whole process group is killed), a new network namespace where the platform allows, and an
audit hook that refuses sockets, fork/exec, ctypes, signals to other processes and reads under /proc.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess  # nosec B404 - only to probe `unshare` with fixed arguments
import sys
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import IO

from dream_graph.evaluators.base import EvalInput, finding
from dream_graph.state import Finding

MODULE_NAME = "generated"
"""The generated code is imported as this module (the offline model's pipelines say `generated.<Class>`)."""

STDERR_TAIL_BYTES = 16_384
TRACEBACK_LINES = 8
NOBODY_UID = 65534

AINEKO_STUB = '''"""Stand-in for `aineko` inside the dream_graph sandbox: enough for generated nodes to import."""
import importlib.abc
import importlib.machinery
import sys


class AbstractNode:
    """The node base class, without Kafka: consumers and producers are empty."""

    def __init__(self, *args, **kwargs):
        self.consumers = {}
        self.producers = {}
        self.params = kwargs.get("params") or {}

    def _pre_loop_hook(self, params=None):
        return None

    def _execute(self, params=None):
        raise NotImplementedError

    def log(self, message, level="info"):
        return None


class _Anything:
    def __init__(self, *args, **kwargs):
        pass

    def __call__(self, *args, **kwargs):
        return _Anything()

    def __getattr__(self, name):
        return _Anything()


def __getattr__(name):
    return AbstractNode if name.endswith("Node") else _Anything


class _Submodules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path=None, target=None):
        if fullname.startswith("aineko."):
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        module.__path__ = []
        module.AbstractNode = AbstractNode
        module.__getattr__ = __getattr__


sys.meta_path.append(_Submodules())
'''

MARKER = "DREAM_GRAPH_SANDBOX_RESULT"
"""The launcher's last stderr line: `<MARKER> ok|exception|cpu`; no marker means the child was killed."""

LAUNCHER = r'''
import json, os, resource, signal, sys, traceback
cfg = json.loads(sys.argv[1])
def _report(outcome):
    os.write(2, ("\n%s %s\n" % (cfg["marker"], outcome)).encode())
def _cpu(signum, frame):
    _report("cpu")
    os._exit(3)
signal.signal(signal.SIGXCPU, _cpu)
for limit, value in ((resource.RLIMIT_CPU, (cfg["cpu"], cfg["cpu"] + 1)),
                     (resource.RLIMIT_AS, (cfg["mem"], cfg["mem"])),
                     (resource.RLIMIT_FSIZE, (cfg["fsize"], cfg["fsize"])),
                     (resource.RLIMIT_CORE, (0, 0))):
    resource.setrlimit(limit, value)
if cfg["uid"] >= 0:
    os.setgroups([])
    os.setgid(cfg["uid"])
    os.setuid(cfg["uid"])
resource.setrlimit(resource.RLIMIT_NPROC, (0, 0))
import _posixsubprocess
def _no_fork_exec(*args, **kwargs):
    raise PermissionError("sandbox: starting processes is not allowed")
_posixsubprocess.fork_exec = _no_fork_exec
BLOCKED = frozenset(("os.fork", "os.forkpty", "os.system", "os.exec", "os.posix_spawn", "os.spawn",
                     "subprocess.Popen", "pty.spawn", "ctypes.dlopen", "ctypes.dlsym", "ctypes.cdata",
                     "os.kill", "os.killpg", "signal.pthread_kill", "socket.__new__", "socket.connect",
                     "socket.bind", "socket.getaddrinfo", "socket.gethostbyname", "socket.sendto"))
def _hook(event, args, _blocked=BLOCKED, _fspath=os.fspath):
    if event in _blocked:
        raise PermissionError("sandbox: %s is not allowed" % event)
    if event == "open" and isinstance(args[0], (str, bytes)):
        path = _fspath(args[0])
        if (path.startswith("/proc") if isinstance(path, str) else path.startswith(b"/proc")):
            raise PermissionError("sandbox: reading /proc is not allowed")
sys.addaudithook(_hook)
sys.path.insert(0, cfg["dir"])
try:
    __import__(cfg["module"])
except BaseException:
    traceback.print_exc()
    sys.stderr.flush()
    _report("exception")
    os._exit(1)
_report("ok")
os._exit(0)
'''


@dataclass(frozen=True)
class Limits:
    """What the child may use: wall clock, CPU seconds, address space, file size."""

    timeout_s: float = 5.0
    cpu_s: int = 2
    memory_mb: int = 512
    file_mb: int = 16


@dataclass(frozen=True)
class Isolation:
    """How this platform isolates the child's network (detected once per process)."""

    prefix: tuple[str, ...]
    network: str
    drop_to_uid: int

    @property
    def note(self) -> str:
        if self.drop_to_uid >= 0:
            user = "the child runs as nobody"
        elif os.geteuid() == 0 and "--user" not in self.prefix:
            user = "the child runs as root (the interpreter is not readable by nobody); forks are blocked by an audit hook"
        else:
            user = "the child runs as the service's user"
        return f"sandbox: {self.network}; {user}"


@dataclass
class Result:
    """What happened to the child."""

    returncode: int | None
    stderr: str
    timed_out: bool
    isolation: Isolation


def _works(prefix: tuple[str, ...]) -> bool:
    try:
        done = subprocess.run([*prefix, "true"], capture_output=True, timeout=5, check=False)  # nosec B603
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0


_NAMESPACES = (
    (("--net", "--pid", "--fork", "--mount-proc"), "new network, pid and /proc namespaces; sockets also blocked"),
    (("--user", "--map-root-user", "--net", "--pid", "--fork", "--mount-proc"),
     "new user, network, pid and /proc namespaces; sockets also blocked"),
    (("--net",), "new network namespace; sockets also blocked"),
    (("--user", "--map-root-user", "--net"), "new user and network namespaces; sockets also blocked"),
)
NO_NAMESPACE = "no network namespace on this platform; socket creation is blocked in the child instead"


def _world_readable(path: Path) -> bool:
    """Can an unprivileged user reach `path` (every ancestor searchable by others)?"""
    try:
        return all(p.stat().st_mode & 0o001 for p in (path, *path.parents))
    except OSError:
        return False


@lru_cache(maxsize=1)
def isolation() -> Isolation:
    """The strongest isolation this platform allows, detected once per process."""
    drop = -1
    if os.geteuid() == 0 and all(_world_readable(Path(p)) for p in (sys.base_prefix, sys.prefix)):
        drop = NOBODY_UID  # root: run the child as nobody so RLIMIT_NPROC binds and files stay private
    unshare = shutil.which("unshare")
    for flags, label in _NAMESPACES if unshare else ():
        prefix = (unshare, *flags, "--")
        if _works(prefix):
            user_ns = "--user" in flags
            return Isolation(prefix, label, -1 if user_ns else drop)
    return Isolation((), NO_NAMESPACE, drop)


def _prepare(directory: str, code: str, uid: int) -> None:
    """The module and the aineko stand-in, readable (and the dir writable) by the unprivileged child."""
    root = Path(directory)
    (root / f"{MODULE_NAME}.py").write_text(code, encoding="utf-8")
    (root / "aineko").mkdir()
    (root / "aineko" / "__init__.py").write_text(AINEKO_STUB, encoding="utf-8")
    if uid >= 0:
        for path in (root, root / "aineko"):
            os.chown(path, uid, uid)
        os.chmod(root, 0o755)  # nosec B103 - a private temp dir handed to the sandbox user


def _tail(stream: IO[bytes], limit: int) -> bytes:
    """The last `limit` bytes the child wrote (a file, not a pipe: a flooding child cannot stall the parent)."""
    size = stream.seek(0, os.SEEK_END)
    stream.seek(max(0, size - limit))
    return stream.read()


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


async def _run_child(argv: list[str], directory: str, err: IO[bytes], timeout_s: float) -> tuple[int | None, bool]:
    """Start the child in its own session, wait at most `timeout_s`, then kill its whole process group."""
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=err,
        cwd=directory,
        env={},
        start_new_session=True,
    )
    timed_out = False
    try:
        await asyncio.wait_for(proc.wait(), timeout_s)
    except TimeoutError:
        timed_out = True
    finally:
        _kill_group(proc.pid)  # the child on timeout, or anything it left behind in its group
        await proc.wait()
    return proc.returncode, timed_out


async def run_sandboxed(code: str, limits: Limits = Limits()) -> Result:
    """Import `code` as a module in the sandboxed child; the parent only reads its exit status and stderr."""
    iso = await asyncio.to_thread(isolation)
    with tempfile.TemporaryDirectory(prefix="dream_graph_sandbox_") as directory:
        await asyncio.to_thread(_prepare, directory, code, iso.drop_to_uid)
        cfg = {
            "cpu": max(1, int(limits.cpu_s)),
            "mem": int(limits.memory_mb) * 1024 * 1024,
            "fsize": int(limits.file_mb) * 1024 * 1024,
            "uid": iso.drop_to_uid,
            "module": MODULE_NAME,
            "marker": MARKER,
            "dir": directory,
        }
        argv = [*iso.prefix, sys.executable, "-I", "-c", LAUNCHER, json.dumps(cfg)]
        with tempfile.TemporaryFile(prefix="dream_graph_sandbox_err_") as err:
            returncode, timed_out = await _run_child(argv, directory, err, limits.timeout_s)
            tail = await asyncio.to_thread(_tail, err, STDERR_TAIL_BYTES)
    stderr = tail.decode("utf-8", "replace").replace(directory, "<sandbox>")  # stable across cycles, no host paths
    return Result(returncode, stderr, timed_out, iso)


_FRAME = re.compile(rf'File "[^"]*{MODULE_NAME}\.py", line (\d+)')


def _last_lines(text: str, n: int = TRACEBACK_LINES, width: int = 300) -> str:
    lines = [line if len(line) <= width else line[:width] + "..." for line in text.strip().splitlines() if line.strip()]
    return "\n".join(lines[-n:])


def outcome(result: Result) -> str | None:
    """The launcher's own report (ok, exception, cpu), or None when the child died without one."""
    for line in reversed(result.stderr.splitlines()):
        if line.startswith(MARKER + " "):
            return line.split(" ", 1)[1].strip()
    return None


def to_findings(result: Result, limits: Limits) -> list[Finding]:
    """Each way the import can go wrong as one finding; a clean import passes."""
    note = result.isolation.note
    said = outcome(result)
    if result.timed_out:
        return [finding("sandbox-timeout", f"importing the module did not finish within {limits.timeout_s:g} s "
                        f"(the process group was killed); {note}")]
    if said == "ok":
        return [] if result.isolation.prefix else [finding("sandbox-isolation", note, severity="info")]
    if said == "exception":
        trace = result.stderr.rsplit(MARKER, 1)[0]
        frames = _FRAME.findall(trace)
        return [finding("sandbox-import-error", f"importing the module raised:\n{_last_lines(trace)}\n({note})",
                        line=int(frames[-1]) if frames else None)]
    if said == "cpu":
        return [finding("sandbox-cpu", f"the import used more than {limits.cpu_s} s of CPU and was stopped; {note}")]
    detail = _last_lines(result.stderr, 3) or "no output"
    return [finding("sandbox-killed", f"the import ended abnormally (exit status {result.returncode}: CPU hard limit of "
                    f"{limits.cpu_s + 1} s, {limits.memory_mb} MB of memory, {limits.file_mb} MB of output, or os._exit); "
                    f"{detail}; {note}")]


def limits_from(context: EvalInput) -> Limits:
    """This run's sandbox limits (defaults outside a graph run)."""
    opts = context.options
    if opts is None:
        return Limits()
    return Limits(timeout_s=opts.sandbox_timeout, cpu_s=opts.sandbox_cpu_seconds, memory_mb=opts.sandbox_memory_mb)


class SandboxEvaluator:
    """Opt-in: does the module import cleanly in an isolated, limited child process?"""

    name = "sandbox"

    async def evaluate(self, code: str | None, context: EvalInput) -> list[Finding]:
        if code is None or not code.strip():
            return [finding("not-run", "no python code to import")]
        limits = limits_from(context)
        return to_findings(await run_sandboxed(code, limits), limits)
