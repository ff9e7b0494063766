"""Resource attacks: each stops at its limit, for the reason the Result names, and the host is unharmed."""

from __future__ import annotations

import asyncio
import random
import time

import pytest

from dream_graph.context import Context
from dream_graph.evaluators import EvalInput
from dream_graph.evaluators.sandbox import SandboxEvaluator
from dream_graph.sandbox import OPEN_FILES, Limits, backend_status, run_python
from tests.security.conftest import processes_with_arg

pytestmark = [pytest.mark.slow, pytest.mark.timeout(60), pytest.mark.usefixtures("cold_sandboxes")]

FORK_COUNT = """
import os, time
kids = 0
try:
    while kids < 200:
        if os.fork() == 0:
            time.sleep(3)
            os._exit(0)
        kids += 1
except OSError as exc:
    print(kids, exc.errno, flush=True)
"""


@pytest.mark.parametrize("processes", [1, 8])
async def test_forks_stop_exactly_at_the_process_cap(bwrap_backend, processes):
    """The job itself counts: with a cap of N it gets N-1 children, then the kernel refuses the fork (EAGAIN)."""
    result = await run_python(FORK_COUNT, limits=Limits(processes=processes, timeout_s=10))
    kids, error = result.stdout.split()
    assert (int(kids), int(error)) == (processes - 1, 11), result
    assert result.returncode == 0
    if "cgroup" in backend_status()["detail"]:  # the parent read the refusal from the cgroup's own counter
        assert result.limit_hit == "processes"


async def test_a_fork_bomb_is_contained_and_the_host_keeps_working(bwrap_backend):
    """The classic bomb: every process forks forever; it stays at the cap until the wall limit kills the sandbox."""
    bomb = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    result = await run_python(bomb, limits=Limits(processes=16, timeout_s=1.5, cpu_s=5))
    assert result.limit_hit == "wall" and result.timed_out
    host = await asyncio.create_subprocess_exec("true")
    assert await host.wait() == 0  # the host can still start processes


async def test_a_fork_bomb_at_import_is_a_finding(bwrap_backend):
    """Through the evaluator: the finding says the process cap stopped it, with the configured number."""
    code = "import os, time\nfor _ in range(50):\n    if os.fork() == 0:\n        time.sleep(3)\n        os._exit(0)\n"
    findings = await SandboxEvaluator().evaluate(code, EvalInput(options=Context(sandbox_processes=4)))
    rules = [f["rule"] for f in findings]
    assert rules == ["sandbox-backend", "sandbox-processes"], findings
    assert "more than 4 processes" in findings[1]["message"]
    assert "BlockingIOError: [Errno 11]" in findings[1]["message"]  # the kernel's refusal, quoted


BUSY = """
import sys, time
while True:
    spent = time.process_time()
    print(f"{spent:.3f}", flush=True)
    end = spent + 0.05
    while time.process_time() < end:
        pass
"""


async def test_a_busy_loop_dies_at_the_cpu_limit(bwrap_backend):
    """Killed by the kernel's RLIMIT_CPU (SIGXCPU) near cpu_s, not by the wall clock."""
    result = await run_python(BUSY, limits=Limits(cpu_s=1, timeout_s=30))
    spent = float(result.stdout.split()[-1])
    assert result.limit_hit == "cpu" and not result.timed_out, result
    assert result.returncode == -24  # SIGXCPU
    assert 0.5 <= spent <= 1.5  # RLIMIT_CPU counts whole seconds of the process (launcher's start-up included)


async def test_the_cpu_limit_counts_from_after_the_preload(bwrap_backend):
    """A warm sandbox's import time is not charged to the job: it still gets about cpu_s of its own."""
    result = await run_python(BUSY, limits=Limits(cpu_s=1, timeout_s=30), preload=("json", "decimal", "asyncio"))
    spent = float(result.stdout.split()[-1])
    assert result.limit_hit == "cpu"
    assert 0.5 <= spent <= 1.6


async def test_a_sleep_dies_at_the_wall_limit_with_everything_it_started(bwrap_backend):
    """The whole sandbox is killed at timeout_s: the job and a child it started are both gone afterwards."""
    marker = f"600.{random.randrange(10**8, 10**9)}"
    script = f"import subprocess, time\nsubprocess.Popen(['/usr/bin/sleep', '{marker}'])\ntime.sleep(600)\n"
    task = asyncio.create_task(run_python(script, limits=Limits(timeout_s=1.0)))
    seen: list[int] = []
    while not seen and not task.done():
        await asyncio.sleep(0.05)
        seen = processes_with_arg(marker)
    result = await task
    assert seen, "the job's child never ran"
    assert result.timed_out and result.limit_hit == "wall" and result.returncode is None
    assert processes_with_arg(marker) == []


async def test_the_wall_limit_is_measured_from_the_job_start(bwrap_backend):
    """The job reports when it started (CLOCK_MONOTONIC is the host's): the kill comes timeout_s later, promptly."""
    script = "import time\nprint(time.monotonic(), flush=True)\ntime.sleep(60)\n"
    result = await run_python(script, limits=Limits(timeout_s=0.8))
    ended = time.monotonic()
    job_started = float(result.stdout.split()[0])
    assert result.limit_hit == "wall"
    assert 0.8 <= ended - job_started < 1.6  # start-up excluded; killing and reaping take milliseconds


HOG = """
chunks = []
try:
    while True:
        chunks.append(bytearray(1024 * 1024))
except MemoryError:
    print(len(chunks), flush=True)
    raise
"""


async def test_a_memory_hog_stops_at_the_memory_cap(bwrap_backend):
    """RLIMIT_AS: about memory_mb of 1 MB blocks fit, then MemoryError; the Result says memory."""
    result = await run_python(HOG, limits=Limits(memory_mb=64))
    got = int(result.stdout.split()[0])
    assert 40 <= got <= 64, result
    assert result.limit_hit == "memory"
    assert result.returncode == 1


async def test_memory_just_under_the_cap_is_allowed_and_just_over_is_not(bwrap_backend):
    """The boundary: a 48 MB block fits in a 64 MB allowance, an 80 MB block does not."""
    fits = await run_python("x = bytearray(48 * 1024 * 1024)\n", limits=Limits(memory_mb=64))
    over = await run_python("x = bytearray(80 * 1024 * 1024)\n", limits=Limits(memory_mb=64))
    assert (fits.returncode, fits.limit_hit) == (0, None)
    assert (over.returncode, over.limit_hit) == (1, "memory")


async def test_an_output_flood_is_capped_and_stopped(bwrap_backend):
    """Exactly output_kb is kept and the sandbox is killed at once (not at the wall limit)."""
    result = await run_python("import sys\nwhile True:\n    sys.stdout.write('x' * 4096)\n",
                              limits=Limits(output_kb=16, timeout_s=5))  # fmt: skip
    assert result.limit_hit == "output" and not result.timed_out  # the parent killed it at the cap, not at timeout_s
    assert result.stdout == b"x" * 16 * 1024
    assert result.returncode == -9


async def test_a_stderr_flood_is_capped_too(bwrap_backend):
    result = await run_python("import sys\nwhile True:\n    sys.stderr.write('y' * 4096)\n", limits=Limits(output_kb=8))
    assert result.limit_hit == "output"
    assert result.stderr == "y" * 8 * 1024


async def test_output_exactly_at_the_cap_is_kept_whole(bwrap_backend):
    result = await run_python("import sys\nsys.stdout.write('z' * 8192)\n", limits=Limits(output_kb=8))
    assert (result.limit_hit, result.returncode, result.stdout) == (None, 0, b"z" * 8192)


async def test_a_file_over_the_size_limit_cannot_be_written(bwrap_backend):
    """RLIMIT_FSIZE: 1 MB fits exactly, one byte more fails with EFBIG."""
    write = "with open('f', 'wb') as out:\n    out.write(b'a' * {})\n"
    ok = await run_python(write.format(1024 * 1024), limits=Limits(file_mb=1))
    over = await run_python(write.format(1024 * 1024 + 1), limits=Limits(file_mb=1))
    assert (ok.returncode, ok.limit_hit) == (0, None)
    assert over.limit_hit == "file" and "File too large" in over.stderr


async def test_the_job_cannot_raise_its_limits_back(bwrap_backend):
    """Hard limits were lowered before the job: raising them fails, and the CPU limit still fires."""
    script = """
import resource
for which in (resource.RLIMIT_CPU, resource.RLIMIT_AS, resource.RLIMIT_FSIZE, resource.RLIMIT_NPROC,
              resource.RLIMIT_NOFILE):
    try:
        resource.setrlimit(which, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        print("raised", which)
    except (ValueError, OSError):
        print("refused", which)
"""
    result = await run_python(script)
    assert "raised" not in result.stdout.decode()
    assert result.stdout.decode().count("refused") == 5


async def test_open_files_stop_at_the_cap(bwrap_backend):
    """RLIMIT_NOFILE: pipes and files (kernel memory RLIMIT_AS does not see) stop at OPEN_FILES descriptors."""
    script = "import os\nfds = []\ntry:\n    while True:\n        fds += os.pipe()\nexcept OSError as exc:\n" \
             "    print(max(fds), exc.errno)\n"  # fmt: skip
    highest, error = (await run_python(script)).stdout.split()
    assert int(error) == 24 and OPEN_FILES - 2 <= int(highest) < OPEN_FILES
