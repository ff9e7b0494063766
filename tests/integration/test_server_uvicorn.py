"""The service as deployed: `dream-graph serve` (uvicorn) in its own process, over real HTTP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest

from tests.fakes.base import CLEAN_REPLY, Reply
from tests.fakes.fixtures import FAKE_OPENAI_KEY
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.receiver import Receiver
from tests.integration.serving import Server, dream_graph_server

pytestmark = pytest.mark.slow

PROMPT = "a node that counts the words in each message"
SLACK_SECRET = "slack-uvicorn-secret"
GITHUB_SECRET = "github-uvicorn-secret"


@pytest.fixture(scope="module")
def slack_receiver() -> Iterator[Receiver]:
    """Where Slack commands post their results; started first, so the server can allow exactly its origin."""
    with Receiver() as receiver:
        yield receiver


@pytest.fixture(scope="module")
def server(
    openai_server_session: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory, slack_receiver: Receiver
) -> Iterator[Server]:
    """One server for the module: offline by default, the fake OpenAI server reachable as openai:<name>."""
    with dream_graph_server(
        tmp_path_factory.mktemp("serve"),
        DREAM_GRAPH_MODEL="offline",
        OPENAI_BASE_URL=openai_server_session.base_url,
        OPENAI_API_KEY=FAKE_OPENAI_KEY,
        SLACK_SIGNING_SECRET=SLACK_SECRET,
        GITHUB_WEBHOOK_SECRET=GITHUB_SECRET,
        DREAM_GRAPH_MAX_CONCURRENT_RUNS="10",
        DREAM_GRAPH_MAX_QUEUED_RUNS="60",
        # response_url is limited to https://hooks.slack.com/ by default: allow exactly the local receiver
        DREAM_GRAPH_SLACK_RESPONSE_URL_PREFIXES=slack_receiver.url.rsplit("/", 3)[0] + "/",
    ) as running:
        yield running


def test_healthz_and_generate_with_request_ids_in_the_log(server):
    health = httpx.get(f"{server.url}/healthz").json()
    assert health["status"] == "ok" and health["model"]["resolved"] == "offline"

    response = httpx.post(
        f"{server.url}/generate", json={"prompt": PROMPT}, headers={"X-Request-ID": "uvicorn-req-1"}, timeout=60
    )
    assert response.status_code == 200 and response.json()["status"] == "passed"
    assert response.headers["x-request-id"] == "uvicorn-req-1"
    for _ in range(50):  # the access log line is written just after the response
        if "[uvicorn-req-1] dream_graph.service.app: run finished" in server.log:
            break
        time.sleep(0.1)
    assert "[uvicorn-req-1] dream_graph.service.app: run finished: pipeline=dream status=passed" in server.log


def test_bad_input_gets_json_errors(server):
    too_long = httpx.post(f"{server.url}/generate", json={"prompt": "x" * 9000})
    assert too_long.status_code == 422 and "limit is 8000" in too_long.json()["detail"]
    malformed = httpx.post(f"{server.url}/generate", content=b"{", headers={"Content-Type": "application/json"})
    assert malformed.status_code == 422 and malformed.json()["request_id"] == malformed.headers["x-request-id"]
    unknown = httpx.post(f"{server.url}/generate", json={"prompt": PROMPT, "pipeline": "gpt5"})
    assert unknown.status_code == 404 and "known: " in unknown.json()["detail"]


def test_langserve_stream_events_over_http(server):
    kinds: list[str] = []
    final = None
    with httpx.stream("POST", f"{server.url}/dream/stream_events", json={"input": {"prompt": PROMPT}}, timeout=60) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if line.startswith("data: ") and len(line) > 6:
                event = json.loads(line[6:])
                kinds.append(event.get("event"))
                if event.get("event") == "on_chain_end" and event.get("name") == "/dream":
                    final = event["data"]["output"]
    assert "on_chat_model_stream" in kinds
    assert final is not None and final["status"] == "passed"


def test_slack_acknowledges_first_and_posts_the_result_later(server, slack_receiver):
    body = urlencode({"command": "/dream", "text": PROMPT, "response_url": slack_receiver.url}).encode()
    ts = str(int(time.time()))
    signature = "v0=" + hmac.new(SLACK_SECRET.encode(), f"v0:{ts}:".encode() + body, hashlib.sha256).hexdigest()
    ack = httpx.post(
        f"{server.url}/slack/commands",
        content=body,
        headers={"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": signature,
                 "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert ack.status_code == 200 and "Working on" in ack.json()["text"]
    posts = slack_receiver.wait(1)
    assert len(posts) == 1 and posts[0]["json"]["text"].startswith("*passed*")


def test_github_webhook_over_http(server):
    body = json.dumps({"zen": "Design for failure."}).encode()
    digest = hmac.new(GITHUB_SECRET.encode(), body, hashlib.sha256).hexdigest()
    ok = httpx.post(f"{server.url}/github/webhook", content=body,
                    headers={"X-GitHub-Event": "ping", "X-Hub-Signature-256": f"sha256={digest}"})
    assert ok.status_code == 200 and ok.json()["message"] == "pong"
    bad = httpx.post(f"{server.url}/github/webhook", content=body,
                     headers={"X-GitHub-Event": "ping", "X-Hub-Signature-256": "sha256=" + "0" * 64})
    assert bad.status_code == 401


def test_fifty_concurrent_generate_requests_via_the_fake_openai_server(server, fake_openai):
    fake_openai.default = Reply.ok(CLEAN_REPLY, delay=0.05)

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=server.url, timeout=120) as client:
            return await asyncio.gather(
                *(
                    client.post("/generate", json={"prompt": f"{PROMPT} #{i}", "options": {"model": "openai:gpt-test"}})
                    for i in range(50)
                )
            )

    responses = asyncio.run(burst())
    assert [r.status_code for r in responses] == [200] * 50, [r.text[:300] for r in responses if r.status_code != 200]
    assert {r.json()["model"] for r in responses} == {"openai:gpt-test"}
    assert sorted(r.json()["prompt"] for r in responses) == sorted(f"{PROMPT} #{i}" for i in range(50))
    assert len(fake_openai.requests) == 50


def _children(pid: int) -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        found.update(int(c) for c in (task / "children").read_text().split())
    return found


@pytest.mark.slow
def test_serve_with_two_workers_starts_two_processes_and_serves(tmp_path):
    with dream_graph_server(tmp_path, "--workers", "2") as srv:
        workers: set[int] = set()
        deadline = time.monotonic() + 30
        while len(workers) < 2 and time.monotonic() < deadline:  # uvicorn starts its workers one after another
            workers = {c for c in _children(srv.pid) if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes()}
            time.sleep(0.2)
        assert len(workers) >= 2, workers

        async def burst() -> list[httpx.Response]:
            async with httpx.AsyncClient(timeout=60) as client:
                return await asyncio.gather(
                    *(client.post(f"{srv.url}/generate", json={"prompt": f"{PROMPT} {i}"}) for i in range(12))
                )

        responses = asyncio.run(burst())
        assert [r.status_code for r in responses] == [200] * 12
        assert all(r.json()["status"] == "passed" for r in responses)
