"""Filesystem attacks: nothing outside the interpreter's read-only prefixes and the run's own dir is reachable."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dream_graph.evaluators import EvalInput
from dream_graph.evaluators.sandbox import SandboxEvaluator
from dream_graph.sandbox import SCRATCH_MB, run_python

pytestmark = [pytest.mark.slow, pytest.mark.timeout(60), pytest.mark.usefixtures("cold_sandboxes")]

REPO = Path(__file__).resolve().parents[2]
CANARY = "canary-7f3a9c-the-sandbox-must-not-see-this"

READ_ALL = """
import json, sys
seen = {}
for path in json.loads(sys.stdin.read()):
    try:
        with open(path, "rb") as f:
            seen[path] = "READ " + f.read(200).decode("latin-1")
    except OSError as exc:
        seen[path] = type(exc).__name__
print(json.dumps(seen))
"""


async def test_files_outside_cannot_be_read(bwrap_backend, tmp_path):
    """A canary beside the test, /etc/shadow, the repo's files and the service's .env are absent in the sandbox."""
    canary = tmp_path / "canary.txt"
    canary.write_text(CANARY)
    canary.chmod(0o600)
    env_file = tmp_path / ".env"
    env_file.write_text(f"OPENAI_API_KEY={CANARY}\n")
    targets = [str(canary), str(env_file), "/etc/shadow", "/etc/passwd", str(REPO / ".env")]
    targets += [
        str(REPO / "pyproject.toml"),
        "/root/.bash_history",
        "/proc/1/environ",
        "/var/run/postgresql/.s.PGSQL.5432",
    ]
    assert Path("/etc/shadow").exists() and (REPO / "pyproject.toml").exists()  # they are there on the host
    result = await run_python(READ_ALL, stdin=json.dumps(targets).encode())
    seen = json.loads(result.stdout)
    assert CANARY not in result.stdout.decode()
    for path in targets:
        if path != "/proc/1/environ":
            assert seen[path] in ("FileNotFoundError", "PermissionError"), (path, seen[path])
    assert seen["/proc/1/environ"] in ("READ ", "READ PWD=/\x00")  # /proc/1 is bwrap's reaper: no host env, no path


async def test_a_canary_read_at_import_does_not_reach_the_finding(bwrap_backend, tmp_path):
    """Through the evaluator: the module that tries to leak a file in its exception text gets FileNotFoundError."""
    canary = tmp_path / "secret.txt"
    canary.write_text(CANARY)
    code = f"raise RuntimeError(open({str(canary)!r}).read())\n"
    findings = await SandboxEvaluator().evaluate(code, EvalInput())
    assert [f["rule"] for f in findings] == ["sandbox-backend", "sandbox-import-error"]
    assert "FileNotFoundError" in findings[1]["message"] and CANARY not in findings[1]["message"]
    assert findings[1]["line"] == 1


async def test_only_the_interpreter_and_usr_are_visible(bwrap_backend):
    """The root holds /usr, the interpreter's prefixes, /proc, /dev, /tmp, /job, /lib links: no /etc, /run, home."""
    result = await run_python("import os\nprint(sorted(os.listdir('/')))\n")
    top = set(eval(result.stdout))
    assert {"usr", "proc", "dev", "tmp", "job"} <= top
    assert not top & {"etc", "run", "var", "home", "sys", "srv", "mnt", "opt", "boot"}


WRITE_ALL = """
import json, sys
done = {}
for path in json.loads(sys.stdin.read()):
    try:
        with open(path, "w") as f:
            f.write("pwned")
        done[path] = "WROTE"
    except OSError as exc:
        done[path] = type(exc).__name__
print(json.dumps(done))
"""


async def test_writing_outside_the_work_dir_fails_or_stays_private(bwrap_backend, tmp_path):
    """/, /usr and the interpreter are read-only; the host's dirs do not exist inside; /tmp is the run's own tmpfs."""
    import sys

    host_tmp_target = Path("/tmp") / f"dream_graph_sandbox_test_{tmp_path.name}"
    targets = ["/pwned", "/usr/pwned", f"{sys.prefix}/pwned", f"{sys.base_prefix}/pwned", str(tmp_path / "pwned"),
               str(host_tmp_target), "/job/ok"]  # fmt: skip
    result = await run_python(WRITE_ALL, stdin=json.dumps(targets).encode())
    done = json.loads(result.stdout)
    assert done.pop("/job/ok") == "WROTE"
    assert done.pop(str(host_tmp_target)) == "WROTE"  # the sandbox's private /tmp ...
    assert not host_tmp_target.exists()  # ... not the host's
    for path, outcome in done.items():
        assert outcome in ("OSError", "PermissionError", "FileNotFoundError"), (path, outcome)
        assert not Path(path).exists()


async def test_every_writable_place_is_a_small_tmpfs_of_the_run(bwrap_backend):
    """Filling memory through a tmpfs is bounded: /job, /tmp and /dev/shm are sized; / and /dev are read-only."""
    script = """
import json, os
out = {}
for d in ("/job", "/tmp", "/dev/shm", "/", "/dev"):
    try:
        with open(d + "/probe", "wb") as f:
            f.write(b"x")
        out[d] = os.statvfs(d).f_blocks * os.statvfs(d).f_frsize
    except OSError as exc:
        out[d] = exc.strerror
print(json.dumps(out))
"""
    seen = json.loads((await run_python(script)).stdout)
    for place in ("/job", "/tmp", "/dev/shm"):
        assert seen[place] == SCRATCH_MB * 1024 * 1024, (place, seen[place])
    assert seen["/"] == seen["/dev"] == "Read-only file system"


async def test_filling_the_work_dir_stops_at_its_size(bwrap_backend):
    """Many files under the per-file limit still cannot take more than the tmpfs holds (ENOSPC)."""
    script = """
n = 0
try:
    while True:
        with open(f"f{n}", "wb") as f:
            f.write(b"x" * 1024 * 1024)
        n += 1
except OSError as exc:
    print(n, exc.errno)
"""
    written, error = (await run_python(script)).stdout.split()
    assert int(error) == 28 and SCRATCH_MB - 2 <= int(written) <= SCRATCH_MB
