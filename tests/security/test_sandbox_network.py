"""Network attacks: no TCP to the host's loopback, no filesystem or abstract Unix socket of the host."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest

from dream_graph.evaluators import EvalInput
from dream_graph.evaluators.sandbox import SandboxEvaluator
from dream_graph.sandbox import run_python

pytestmark = [pytest.mark.slow, pytest.mark.timeout(60), pytest.mark.usefixtures("cold_sandboxes")]

CONNECT = """
import json, socket, sys
targets = json.loads(sys.stdin.read())
out = {}
for kind, address in targets:
    family = {"unix": socket.AF_UNIX, "tcp": socket.AF_INET}[kind]
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(1)
    try:
        s.connect(address if kind == "unix" else tuple(address))
        s.sendall(b"hello from the sandbox")
        out[str(address)] = "CONNECTED"
    except OSError as exc:
        out[str(address)] = type(exc).__name__
print(json.dumps(out))
"""


@pytest.fixture
def listeners(tmp_path):
    """A Unix socket in a host dir and in /tmp, an abstract one, and a TCP port on 127.0.0.1, all listening."""
    made = []
    unix_paths = [str(tmp_path / "host.sock"), f"/tmp/dream_graph_test_{os.getpid()}_{tmp_path.name}.sock"]
    for path in unix_paths:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(path)
        os.chmod(path, 0o777)
        s.listen()
        made.append(s)
    abstract = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    abstract_name = f"\0dream_graph_test_{os.getpid()}"
    abstract.bind(abstract_name)
    abstract.listen()
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    tcp.bind(("127.0.0.1", 0))
    tcp.listen()
    made += [abstract, tcp]
    for s in made:
        s.setblocking(False)
    targets = [["unix", p] for p in unix_paths] + [
        ["unix", abstract_name],
        ["tcp", ["127.0.0.1", tcp.getsockname()[1]]],
    ]
    if Path("/var/run/postgresql/.s.PGSQL.5432").exists():
        targets.append(["unix", "/var/run/postgresql/.s.PGSQL.5432"])
    yield targets, made
    for s in made:
        s.close()
    for path in unix_paths:
        Path(path).unlink(missing_ok=True)


def accepted(sockets: list[socket.socket]) -> int:
    """How many connections reached the host's listeners."""
    count = 0
    for s in sockets:
        try:
            s.accept()[0].close()
            count += 1
        except BlockingIOError:
            pass
    return count


async def test_no_socket_of_the_host_is_reachable(bwrap_backend, listeners):
    targets, sockets = listeners
    tcp_target = next(t for t in targets if t[0] == "tcp")
    outside = json.loads(await asyncio_run_plain(CONNECT, json.dumps([tcp_target])))
    assert list(outside.values()) == ["CONNECTED"]  # the listener works: the attack would succeed without a sandbox
    assert accepted(sockets) == 1
    result = await run_python(CONNECT, stdin=json.dumps(targets).encode())
    seen = json.loads(result.stdout)
    assert len(seen) == len(targets)
    for address, outcome in seen.items():
        assert outcome in ("FileNotFoundError", "ConnectionRefusedError", "OSError", "PermissionError"), (
            address,
            outcome,
        )
    assert accepted(sockets) == 0


async def asyncio_run_plain(script: str, stdin: str) -> str:
    """The same attack in a plain subprocess of the test (no sandbox), to prove the listener is reachable."""
    import asyncio
    import sys

    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", script, stdin=asyncio.subprocess.PIPE,
                                                stdout=asyncio.subprocess.PIPE)  # fmt: skip
    out, _ = await proc.communicate(stdin.encode())
    return out.decode()


async def test_the_sandbox_has_only_a_loopback_of_its_own(bwrap_backend):
    """A new network namespace: `lo` only, and nothing listens on it."""
    result = await run_python("import socket\nprint(sorted(n for _, n in socket.if_nameindex()))\n")
    assert eval(result.stdout) == ["lo"]


async def test_a_socket_attempt_at_import_is_a_finding(bwrap_backend, listeners):
    """Through the evaluator: a module that connects to the host's TCP listener at import fails and says why."""
    targets, sockets = listeners
    port = next(t for t in targets if t[0] == "tcp")[1][1]
    code = f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=1)\n"
    findings = await SandboxEvaluator().evaluate(code, EvalInput())
    assert findings[1]["rule"] == "sandbox-import-error"
    assert "ConnectionRefusedError" in findings[1]["message"] or "OSError" in findings[1]["message"]
    assert accepted(sockets) == 0
