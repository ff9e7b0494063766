"""Runs cannot see or touch each other: two jobs at once, the second hunting for the first's files and processes."""

from __future__ import annotations

import asyncio
import json
import random
import sys
from pathlib import Path

import pytest

from dream_graph.sandbox import Limits, run_python
from tests.security.conftest import processes_with_arg

pytestmark = [pytest.mark.slow, pytest.mark.timeout(60), pytest.mark.usefixtures("cold_sandboxes")]

VICTIM = """
import os, subprocess, sys, time
print(os.getpid(), sorted(os.listdir("/job")), flush=True)
subprocess.Popen(["/usr/bin/sleep", sys.stdin.read()])  # the test waits for this before it attacks
time.sleep(4)
import victim
print(victim.VALUE, sorted(os.listdir("/job")), flush=True)
"""

ATTACKER = """
import glob, json, os, signal
me = os.getpid()
pids = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
killed, alive = [], []
for pid in range(1, 5000):
    if pid == me:
        continue
    try:
        os.kill(pid, 0)
        alive.append(pid)
        if pid != 1:
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
    except OSError:
        pass
found = []
for pattern in ("/*/victim.py", "/job/**/victim.py", "/tmp/**/victim.py", "/dev/**/victim.py",
                "/proc/*/root/job/victim.py", "/proc/*/cwd/victim.py", "/proc/*/root/tmp/victim.py"):
    found += glob.glob(pattern, recursive=True)
replaced = []
for path in set(found) | {"/job/victim.py", "/tmp/victim.py"}:
    try:
        with open(path, "w") as f:
            f.write("VALUE = 'pwned'\\n")
        replaced.append(path)
    except OSError:
        pass
print(json.dumps({"me": me, "proc": pids, "alive": alive, "killed": killed, "found": sorted(set(found)),
                  "replaced": sorted(replaced)}))
"""


@pytest.mark.parametrize("warm", ["0", "1"])
async def test_a_concurrent_run_cannot_read_replace_or_kill_another(bwrap_backend, monkeypatch, warm):
    monkeypatch.setenv("DREAM_GRAPH_SANDBOX_WARM", warm)
    marker = f"60.{random.randrange(10**8, 10**9)}"
    victim = asyncio.create_task(
        run_python(
            VICTIM, files={"victim.py": "VALUE = 'original'\n"}, stdin=marker.encode(), limits=Limits(timeout_s=20)
        )
    )
    while not processes_with_arg(marker) and not victim.done():
        await asyncio.sleep(0.05)  # until the victim is running with its module in place
    attacker = await run_python(ATTACKER, limits=Limits(timeout_s=20))
    assert not victim.done()  # the attack ran while the victim was alive
    result = await victim
    seen = json.loads(attacker.stdout)
    assert result.returncode == 0, result
    first, second = result.stdout.decode().splitlines()
    assert first.split(" ", 1)[1] == "['victim.py']"
    assert second == "original ['victim.py']"  # the victim's module is untouched
    assert seen["found"] == []  # the attacker saw no other run's files anywhere
    assert seen["replaced"] == ["/job/victim.py", "/tmp/victim.py"]  # only in its own private dirs
    assert seen["alive"] == [1] and seen["killed"] == []  # only its own PID namespace: bwrap's reaper and itself
    assert seen["proc"] == sorted([1, seen["me"]])


async def test_each_run_starts_with_an_empty_work_dir_and_tmp(bwrap_backend, monkeypatch):
    """Single use, also for warm sandboxes: what one run leaves in /job and /tmp is not there for the next."""
    monkeypatch.setenv("DREAM_GRAPH_SANDBOX_WARM", "1")
    script = "import os\nprint(sorted(os.listdir('/job')), sorted(os.listdir('/tmp')))\n" \
             "open('/job/left', 'w').write('x')\nopen('/tmp/left', 'w').write('x')\n"  # fmt: skip
    outputs = [(await run_python(script)).stdout for _ in range(3)]
    # an interpreter or venv that lives under /tmp (a CI clone, say) is bound read-only at its own path: its top
    # folder is the only thing /tmp may show; what a run wrote there never is
    bound = sorted({Path(p).relative_to("/tmp").parts[0] for p in (sys.prefix, sys.base_prefix) if p.startswith("/tmp/")})
    assert outputs == [f"[] {bound}\n".encode()] * 3
