"""The front door against a real `dream-graph serve` (uvicorn): chunked bodies far over the cap are stopped at the cap,
a bounded load of chunked bodies and batches keeps the server's memory small and the limiter's counts exact, and a
client that hangs up mid-stream gives its place back."""

from __future__ import annotations

import hashlib
import hmac
import json
import select
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.fakes.base import CLEAN_REPLY, Reply
from tests.fakes.fixtures import FAKE_OPENAI_KEY
from tests.fakes.openai_server import FakeOpenAI
from tests.integration.serving import Server, clean_environment, free_port, running

pytestmark = pytest.mark.slow

KEY = "load-test-key"
MB = 1024 * 1024
QUICK = {"evaluators": ["syntax"], "max_cycles": 1}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, openai_server_session: FakeOpenAI) -> Iterator[Server]:
    """One server for the module (start-up is the slow part): 2 runs at once + 2 queued, the default 1 MB body cap,
    every signed route enabled, the fake OpenAI server as the model."""
    tmp = tmp_path_factory.mktemp("load")
    env = clean_environment(
        tmp,
        DREAM_GRAPH_API_KEY=KEY,
        DREAM_GRAPH_MODEL="openai:gpt-test",
        OPENAI_BASE_URL=openai_server_session.base_url,
        OPENAI_API_KEY=FAKE_OPENAI_KEY,
        DREAM_GRAPH_MAX_CONCURRENT_RUNS="2",
        DREAM_GRAPH_MAX_QUEUED_RUNS="2",
        SLACK_SIGNING_SECRET="slack-secret",
        GITHUB_WEBHOOK_SECRET="github-secret",
    )
    port = free_port()
    command = [sys.executable, "-m", "dream_graph.cli", "serve", "--host", "127.0.0.1", "--port", str(port)]
    with running(command, env, tmp, port, ready_path="/healthz", log_dir=tmp, timeout=180) as started:
        yield started


@pytest.fixture
def fake(openai_server_session: FakeOpenAI) -> Iterator[FakeOpenAI]:
    """The module's fake OpenAI server, clean for each test."""
    openai_server_session.reset()
    yield openai_server_session
    openai_server_session.reset()


def rss_mb(pid: int) -> float:
    """Resident memory of a process, from /proc (VmRSS, in kB)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


def signed_headers(path: str, body_hint: bytes = b"") -> dict[str, str]:
    """Headers that would pass each route's first check if the body were small (the body is what is too big)."""
    if path == "/slack/commands":
        ts = str(int(time.time()))
        digest = hmac.new(b"slack-secret", b"v0:" + ts.encode() + b":" + body_hint, hashlib.sha256).hexdigest()
        return {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": f"v0={digest}"}
    if path == "/github/webhook":
        digest = hmac.new(b"github-secret", body_hint, hashlib.sha256).hexdigest()
        return {"X-GitHub-Event": "push", "X-Hub-Signature-256": f"sha256={digest}"}
    return {"X-API-Key": KEY, "Content-Type": "application/json"}


def send_chunked(url: str, path: str, total: int, chunk: int = 64 * 1024, timeout: float = 20) -> tuple[int, int, float]:
    """POST `total` bytes with Transfer-Encoding: chunked over a raw socket, stopping as soon as the server answers.

    Returns (status, bytes of body sent, seconds); status 0 means no answer came."""
    host, port = url.removeprefix("http://").split(":")
    started = time.monotonic()
    sent = 0
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        head = [f"POST {path} HTTP/1.1", f"Host: {host}", "Transfer-Encoding: chunked"]
        head += [f"{k}: {v}" for k, v in signed_headers(path).items()]
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        frame = f"{chunk:x}\r\n".encode() + b" " * chunk + b"\r\n"
        sock.setblocking(False)
        pending = b""
        while time.monotonic() - started < timeout:
            readable, writable, _ = select.select([sock], [sock] if sent < total else [], [], 0.5)
            if readable:
                break
            if writable:
                pending = pending or frame
                try:
                    n = sock.send(pending)
                except (BlockingIOError, InterruptedError):
                    continue
                except (BrokenPipeError, ConnectionResetError):
                    break
                pending = pending[n:]
                if not pending:
                    sent += chunk
        sock.setblocking(True)
        sock.settimeout(5)
        try:
            answer = sock.recv(4096)
        except (OSError, TimeoutError):
            answer = b""
    status = int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else 0
    return status, sent, time.monotonic() - started


@pytest.mark.parametrize("path", ["/generate", "/slack/commands", "/github/webhook"])
def test_a_chunked_100_mb_body_is_413_after_about_the_cap(server, fake, path):
    status, sent, seconds = send_chunked(server.url, path, 100 * MB)
    assert status == 413, f"no 413 after sending {sent / MB:.1f} MB in {seconds:.1f} s"
    assert sent < 16 * MB, f"the server kept reading: {sent / MB:.1f} MB went in before the 413"
    assert seconds < 15
    assert httpx.get(server.url + "/healthz", timeout=10).json()["runs"]["admitted"] == 0
    print(f"{path}: 413 after {sent / MB:.2f} MB sent in {seconds:.2f} s")


def test_a_bounded_load_of_chunked_bodies_and_batches_keeps_memory_small_and_the_counts_exact(server, fake):
    fake.default = Reply.ok(CLEAN_REPLY, delay=3.0)  # runs long enough for every batch to meet a full limiter
    before = rss_mb(server.pid)
    peak = [before]
    admitted_seen: list[int] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak.append(rss_mb(server.pid))
            try:
                admitted_seen.append(httpx.get(server.url + "/healthz", timeout=5).json()["runs"]["admitted"])
            except httpx.HTTPError:
                pass
            time.sleep(0.05)

    uploads: list[tuple[int, int, float]] = []
    paths = ["/generate", "/slack/commands", "/github/webhook", "/dream/invoke"] * 2

    def upload(path: str) -> None:
        uploads.append(send_chunked(server.url, path, 20 * MB))

    batch = {"inputs": [{"prompt": "a node that counts words"}, {"prompt": "a source node"}], "config": {"configurable": QUICK}}
    batches: list[httpx.Response] = []

    def send_batch() -> None:
        batches.append(httpx.post(server.url + "/dream/batch", json=batch, headers={"X-API-Key": KEY}, timeout=60))

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        threads = [threading.Thread(target=upload, args=(p,)) for p in paths]
        threads.append(threading.Thread(target=send_batch))
        for thread in threads:
            thread.start()
        time.sleep(1.0)  # the first batch holds both slots; now the others meet a full limiter
        more = [threading.Thread(target=send_batch) for _ in range(3)]
        for thread in more:
            thread.start()
        for thread in threads + more:
            thread.join(timeout=90)
        assert not any(t.is_alive() for t in threads + more), "a request never finished"
    finally:
        stop.set()
        sampler.join(timeout=10)

    statuses = sorted(r.status_code for r in batches)
    assert [u[0] for u in uploads] == [413] * len(paths), uploads
    assert max(peak) < 300, f"server RSS peaked at {max(peak):.0f} MB (started at {before:.0f} MB)"
    assert statuses == [200, 200, 503, 503], [r.text[:200] for r in batches]
    assert max(admitted_seen) <= 4  # 2 running + 2 queued, each batch input counted
    assert httpx.get(server.url + "/healthz", timeout=10).json()["runs"]["admitted"] == 0
    arrivals = sorted(r.at for r in fake.requests)
    assert len(arrivals) == 4  # 2 admitted batches x 2 inputs x 1 cycle; the refused ones never reached the model
    assert arrivals[2] - arrivals[0] >= 2.5, "the second batch ran while the first held both slots"
    print(f"RSS before {before:.0f} MB, peak {max(peak):.0f} MB; uploads {[round(u[2], 2) for u in uploads]} s")


def test_a_client_that_hangs_up_mid_stream_gives_its_place_back(server, fake):
    fake.default = Reply.hanging()  # the model never answers (until the test ends): only the hang-up can free the place
    body = json.dumps({"input": {"prompt": "a node that counts words"}, "config": {"configurable": QUICK}}).encode()
    host, port = server.url.removeprefix("http://").split(":")
    health = server.url + "/healthz"
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        head = f"POST /dream/stream HTTP/1.1\r\nHost: {host}\r\nX-API-Key: {KEY}\r\nContent-Type: application/json\r\n"
        sock.sendall(head.encode() + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        deadline = time.monotonic() + 20
        while httpx.get(health, timeout=5).json()["runs"]["admitted"] != 1:
            assert time.monotonic() < deadline, "the stream was never admitted"
            time.sleep(0.1)
        while not fake.requests:
            assert time.monotonic() < deadline, "the run never reached the model"
            time.sleep(0.1)
    hung_up = time.monotonic()
    while httpx.get(health, timeout=5).json()["runs"]["admitted"] != 0:
        assert time.monotonic() - hung_up < 10, "the place was not given back after the client hung up"
        time.sleep(0.1)
    assert not fake.finished_streams  # the model never answered: the hang-up freed the place
