"""Start `dream-graph serve` as a real uvicorn process on a free 127.0.0.1 port, for the integration tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

OUR_VARS = ("DREAM_GRAPH_", "OPENAI_", "COHERE_", "GITHUB_", "SLACK_")


def free_port() -> int:
    """A port nobody listens on now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def clean_environment(tmp: Path, **values: str) -> dict[str, str]:
    """The caller's environment without any dream_graph setting, plus `values`; state files under `tmp`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(OUR_VARS)}
    env.update(DREAM_GRAPH_DB=str(tmp / "runs.sqlite"), DREAM_GRAPH_CACHE_DIR=str(tmp / "cache"), **values)
    return env


@dataclass
class Server:
    """A running server: its base URL, the file its log goes to, and its process id."""

    url: str
    log_path: Path
    pid: int = 0

    @property
    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")


@contextmanager
def running(
    command: list[str], env: dict[str, str], cwd: Path, port: int, *, ready_path: str, log_dir: Path, timeout: float = 60
) -> Iterator[Server]:
    """Start `command`, wait until GET `ready_path` answers 200, stop it (SIGTERM, then SIGKILL) afterwards."""
    log_path = log_dir / f"server-{port}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT)
    server = Server(f"http://127.0.0.1:{port}", log_path, process.pid)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{command[:4]} exited with {process.returncode}:\n{server.log[-3000:]}")
            try:
                if httpx.get(server.url + ready_path, timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{command[:4]} did not become ready in {timeout} s:\n{server.log[-3000:]}")
            time.sleep(0.2)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def dream_graph_server(tmp: Path, *args: str, ready_timeout: float = 60, **env: str) -> Iterator[Server]:
    """`dream-graph serve [args]` with a clean environment plus `env`."""
    port = free_port()
    command = [sys.executable, "-m", "dream_graph.cli", "serve", "--host", "127.0.0.1", "--port", str(port), *args]
    environment = clean_environment(tmp, **env)
    with running(
        command, environment, tmp, port, ready_path="/healthz", log_dir=tmp, timeout=ready_timeout
    ) as server:
        yield server
