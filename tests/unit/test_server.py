"""The HTTP service in-process (httpx ASGITransport): every endpoint with good and bad input."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatResult
from langchain_core.runnables import RunnableLambda

from dream_graph.graph import build_graph
from dream_graph.offline import OFFLINE_LABEL, OfflineChatModel
from dream_graph.service.app import create_app
from dream_graph.service.langserve_routes import without_null
from dream_graph.settings import get_settings
from tests.fakes.base import CLEAN_REPLY, Reply
from tests.fakes.receiver import Receiver

PROMPT = "a node that counts the words in each message"
SLACK_SECRET = "slack-test-secret"
GITHUB_SECRET = "github-test-secret"


@pytest.fixture
def make_client() -> Any:
    """A factory: an app built now (after the test set its environment) and an in-process client for it."""

    def make(**kwargs: Any) -> httpx.AsyncClient:
        get_settings.cache_clear()
        app = create_app(**kwargs)
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test", timeout=60)
        client.app = app  # type: ignore[attr-defined]
        return client

    return make


@pytest.fixture
async def client(make_client: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with make_client() as c:
        yield c


def setenv(monkeypatch: pytest.MonkeyPatch, **values: str) -> None:
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()


def slack_headers(body: bytes, *, secret: str = SLACK_SECRET, timestamp: int | None = None) -> dict[str, str]:
    """Sign as Slack does (computed here independently of the server code)."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(secret.encode(), b"v0:" + ts.encode() + b":" + body, hashlib.sha256).hexdigest()
    return {
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": f"v0={digest}",
        "Content-Type": "application/x-www-form-urlencoded",
    }


def github_headers(body: bytes, event: str, *, secret: str = GITHUB_SECRET) -> dict[str, str]:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"X-GitHub-Event": event, "X-Hub-Signature-256": f"sha256={digest}", "Content-Type": "application/json"}


def assert_error(response: httpx.Response, status: int, *needles: str) -> dict[str, Any]:
    """Every error is JSON {detail, request_id}, the ID matching the X-Request-ID header."""
    assert response.status_code == status, response.text
    body = response.json()
    assert body["request_id"] and body["request_id"] == response.headers["x-request-id"]
    for needle in needles:
        assert needle in json.dumps(body["detail"]), body
    return body


# ---------------------------------------------------------------- /healthz and /docs


async def test_healthz_reports_docs_and_labels_the_offline_model(client):
    response = await client.get("/healthz")

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["docs"]["loaded"] is True and body["docs"]["sections"] > 0
    assert body["model"] == {"setting": "auto", "resolved": "offline", "label": OFFLINE_LABEL, "configured": True}
    assert {"dream", "gpt4", "cohere"} <= set(body["pipelines"])


async def test_healthz_says_which_model_auto_resolves_to(make_client, monkeypatch):
    setenv(monkeypatch, OPENAI_API_KEY="sk-test")
    async with make_client() as client:
        body = (await client.get("/healthz")).json()
    assert body["model"]["resolved"] == "openai:gpt-4o-mini" and "label" not in body["model"]


async def test_healthz_is_503_when_the_model_cannot_be_built(make_client, monkeypatch):
    setenv(monkeypatch, DREAM_GRAPH_MODEL="openai:gpt-4o")
    async with make_client() as client:
        response = await client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["model"]["configured"] is False
    assert "OPENAI_API_KEY" in response.json()["model"]["error"]


async def test_openapi_docs_list_the_endpoints(client):
    assert (await client.get("/docs")).status_code == 200
    paths = (await client.get("/openapi.json")).json()["paths"]
    assert {"/generate", "/slack/commands", "/github/webhook", "/healthz", "/dream/invoke"} <= set(paths)


# ---------------------------------------------------------------- /generate


async def test_generate_returns_the_output_contract(client):
    response = await client.post("/generate", json={"prompt": PROMPT})

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "passed" and body["model"] == "offline" and body["cycles"] == 1
    assert "class " in body["code"] and "pipeline:" in body["config_yaml"]
    assert {m["role"] for m in body["messages"]} == {"system", "human", "ai"}
    assert all(isinstance(m["content"], str) for m in body["messages"])
    assert {"syntax", "security"} <= {e["evaluator"] for e in body["evaluations"]}
    assert len(response.headers["x-request-id"]) == 32  # generated when the caller sent none


def test_the_plain_endpoints_are_matched_before_the_pipelines_many_routes():
    """Starlette tries routes in order: behind ~20 LangServe routes per pipeline, every /generate tried them all."""
    app = create_app()
    paths = [getattr(route, "path", "") for route in app.routes]
    first_pipeline_route = min(i for i, path in enumerate(paths) if path.startswith("/dream/"))
    for endpoint in ("/generate", "/slack/commands", "/github/webhook", "/healthz"):
        assert paths.index(endpoint) < first_pipeline_route, endpoint
    assert len(paths) - first_pipeline_route > 20 * len(app.state.graphs) > 0  # what they no longer wait behind


def test_a_result_is_encoded_directly_and_only_walked_by_jsonable_encoder_when_it_must(monkeypatch):
    import datetime

    from dream_graph.service import app as app_module

    walked = []
    real = app_module.jsonable_encoder
    monkeypatch.setattr(app_module, "jsonable_encoder", lambda obj: walked.append(obj) or real(obj))
    plain = {"status": "passed", "cycles": 2, "evaluations": [{"findings": [], "duration_ms": 1.5}], "error": None}
    response = app_module.result_response(plain)
    assert json.loads(response.body) == plain and response.status_code == 200 and walked == []

    when = datetime.datetime(2026, 11, 26, 12, 0, tzinfo=datetime.timezone.utc)
    response = app_module.result_response({"finished": when, "rules": {"F401"}}, status_code=502)
    assert json.loads(response.body) == {"finished": "2026-11-26T12:00:00+00:00", "rules": ["F401"]}
    assert response.status_code == 502 and len(walked) == 1


async def test_generate_echoes_the_callers_request_id_and_replaces_an_unsafe_one(client):
    echoed = await client.post("/generate", json={"prompt": PROMPT}, headers={"X-Request-ID": "req-42.a"})
    assert echoed.headers["x-request-id"] == "req-42.a"

    unsafe = await client.post("/generate", json={"prompt": ""}, headers={"X-Request-ID": "a b\nc"})
    assert unsafe.headers["x-request-id"] != "a b\nc"
    assert unsafe.json()["request_id"] == unsafe.headers["x-request-id"]


async def test_generate_applies_per_run_options_and_pipelines(client):
    response = await client.post(
        "/generate", json={"prompt": PROMPT, "pipeline": "offline", "options": {"evaluators": ["syntax"], "max_cycles": 1}}
    )
    assert response.status_code == 200, response.text
    assert [e["evaluator"] for e in response.json()["evaluations"]] == ["syntax"]


@pytest.mark.parametrize(
    ("payload", "status", "needle"),
    [
        ({"prompt": "x" * 8001}, 422, "limit is 8000"),
        ({"prompt": "   "}, 422, "prompt is empty"),
        ({}, 422, "prompt"),
        ({"prompt": PROMPT, "pipeline": "nope"}, 404, "known: cohere, dream, gpt35, gpt4, offline"),
        ({"prompt": PROMPT, "options": {"colour": "red"}}, 422, "unknown option(s) colour"),
        ({"prompt": PROMPT, "options": {"max_cycles": 99}}, 422, "max_cycles must be between 1 and 20"),
        ({"prompt": PROMPT, "options": {"model": "openai:gpt-4o"}}, 400, "OPENAI_API_KEY"),
        ({"prompt": PROMPT, "pipeline": "gpt35"}, 400, "OPENAI_API_KEY"),
        ({"prompt": PROMPT, "extra": 1}, 422, "extra"),
    ],
)
async def test_generate_rejects_bad_input_with_a_clear_message(client, payload, status, needle):
    assert_error(await client.post("/generate", json=payload), status, needle)


async def test_generate_rejects_malformed_json_and_huge_bodies(client):
    malformed = await client.post("/generate", content=b'{"prompt": ', headers={"Content-Type": "application/json"})
    assert_error(malformed, 422, "not valid JSON")
    huge = await client.post("/generate", content=b"x" * 1_000_001, headers={"Content-Type": "application/json"})
    assert_error(huge, 413, "the limit is 1000000")


async def test_prompt_limit_follows_the_setting(make_client, monkeypatch):
    setenv(monkeypatch, DREAM_GRAPH_MAX_PROMPT_CHARS="10")
    async with make_client() as client:
        assert_error(await client.post("/generate", json={"prompt": "x" * 11}), 422, "limit is 10")


async def test_api_key_guards_every_run_endpoint(make_client, monkeypatch):
    setenv(monkeypatch, DREAM_GRAPH_API_KEY="s3cret")
    async with make_client() as client:
        assert_error(await client.post("/generate", json={"prompt": PROMPT}), 401, "X-API-Key")
        wrong = await client.post("/generate", json={"prompt": PROMPT}, headers={"X-API-Key": "s3cres"})
        assert_error(wrong, 401, "X-API-Key")
        assert_error(await client.post("/dream/invoke", json={"input": {"prompt": PROMPT}}), 401, "X-API-Key")
        right = await client.post("/generate", json={"prompt": PROMPT}, headers={"X-API-Key": "s3cret"})
        assert right.status_code == 200 and right.json()["status"] == "passed"
        assert (await client.get("/healthz")).status_code == 200  # probes need no key


async def test_provider_errors_are_502_with_the_providers_status(make_client, fake_openai, monkeypatch):
    fake_openai.default = Reply.error(429, "rate limited", retry_after=0)
    setenv(monkeypatch, DREAM_GRAPH_MODEL="openai:gpt-test")
    async with make_client() as client:
        response = await client.post("/generate", json={"prompt": PROMPT, "options": {"max_retries": 0}})
    body = assert_error(response, 502, "rate limited")
    assert body["provider_status"] == 429
    assert body["result"]["status"] == "error"


async def test_fifty_concurrent_requests_through_the_fake_openai_server(make_client, fake_openai, monkeypatch):
    fake_openai.default = Reply.ok(CLEAN_REPLY, delay=0.05)
    setenv(monkeypatch, DREAM_GRAPH_MODEL="openai:gpt-test")
    async with make_client(max_concurrent_runs=10, max_queued_runs=40) as client:
        responses = await asyncio.gather(
            *(client.post("/generate", json={"prompt": f"{PROMPT} number {i}"}) for i in range(50))
        )
    assert [r.status_code for r in responses] == [200] * 50, [r.json()["detail"] for r in responses if r.status_code != 200]
    bodies = [r.json() for r in responses]
    assert all(b["status"] == "passed" and b["model"] == "openai:gpt-test" for b in bodies)
    assert sorted(b["prompt"] for b in bodies) == sorted(f"{PROMPT} number {i}" for i in range(50))
    assert len(fake_openai.requests) == 50
    assert len({r.headers["x-request-id"] for r in responses}) == 50


class GatedModel(OfflineChatModel):
    """The offline model, holding every reply until the test opens the gate: runs that stay in flight."""

    gate: Any = None

    async def _agenerate(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> ChatResult:
        await self.gate.wait()
        return self._generate(messages)


async def test_a_full_queue_answers_503_with_retry_after(make_client):
    gate = asyncio.Event()
    graph = build_graph(chat_model=GatedModel(gate=gate))
    async with make_client(graphs={"dream": graph}, max_concurrent_runs=1, max_queued_runs=1) as client:
        limiter = client.app.state.limiter
        held = [asyncio.create_task(client.post("/generate", json={"prompt": PROMPT})) for _ in range(2)]
        for _ in range(500):  # wait until both are admitted (one running, one queued)
            if limiter.admitted == 2:
                break
            await asyncio.sleep(0.01)
        assert limiter.admitted == 2

        rejected = await client.post("/generate", json={"prompt": PROMPT})
        stream_rejected = await client.post("/dream/invoke", json={"input": {"prompt": PROMPT}})
        gate.set()
        done = await asyncio.gather(*held)

    assert_error(rejected, 503, "retry later")
    assert rejected.headers["retry-after"] == "5"
    assert stream_rejected.status_code == 503
    assert [r.status_code for r in done] == [200, 200]
    assert limiter.admitted == 0


# ---------------------------------------------------------------- LangServe routes


def sse_events(text: str) -> list[tuple[str, Any]]:
    """(event name, parsed data) for each server-sent event."""
    events = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "data" in fields:
            events.append((fields.get("event", "message"), json.loads(fields["data"])))
    return events


async def test_langserve_invoke_batch_and_schemas(client):
    invoked = await client.post("/dream/invoke", json={"input": {"prompt": PROMPT}})
    assert invoked.status_code == 200 and invoked.json()["output"]["status"] == "passed"

    batch = await client.post("/offline/batch", json={"inputs": [{"prompt": PROMPT}, {"prompt": "a source node"}]})
    assert [o["status"] for o in batch.json()["output"]] == ["passed", "passed"]

    assert (await client.get("/dream/input_schema")).json()["$defs"]["InputState"]["required"] == ["prompt"]
    assert "response" in (await client.get("/dream/output_schema")).json()["properties"]
    assert (await client.get("/gpt4/playground/")).status_code == 200


async def test_langserve_bad_input_is_422(client):
    assert_error(await client.post("/dream/invoke", json={"input": {"prompt": ""}}), 422, "prompt is empty")
    assert (await client.post("/dream/invoke", json={"input": {"wrong": 1}})).status_code == 422


async def test_langserve_stream_events_reach_the_final_state(client):
    response = await client.post("/dream/stream_events", json={"input": {"prompt": PROMPT}})

    assert response.status_code == 200
    events = [data for event, data in sse_events(response.text) if event == "data"]
    kinds = [e.get("event") for e in events]
    assert "on_chat_model_stream" in kinds  # tokens, as the model writes them
    nodes = {e.get("name") for e in events if e.get("event") == "on_chain_end"}
    assert {"generate", "evaluate_syntax", "evaluate_security", "decide"} <= nodes
    final = [e for e in events if e.get("event") == "on_chain_end" and e.get("name") == "/dream"][-1]
    assert final["data"]["output"]["status"] == "passed"


async def test_langserve_stream_sends_slim_step_updates(client):
    response = await client.post("/dream/stream", json={"input": {"prompt": PROMPT}})

    chunks = [data for event, data in sse_events(response.text) if event == "data"]
    steps = [node for chunk in chunks for node in chunk]
    assert steps[:3] == ["retrieve_docs", "build_prompt", "generate"] and "decide" in steps
    assert not any(key in update for chunk in chunks for update in chunk.values() for key in ("documentation", "messages"))
    reply = next(chunk["generate"]["response"] for chunk in chunks if "generate" in chunk)
    assert reply.startswith(f"[{OFFLINE_LABEL}]")


async def test_unexpected_errors_are_500_json_with_the_request_id():
    def boom(state: dict[str, Any]) -> dict[str, Any]:
        raise RuntimeError("a bug")

    app = create_app(graphs={"dream": RunnableLambda(boom)})
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.post("/generate", json={"prompt": PROMPT}, headers={"X-Request-ID": "bug-1"})
    assert response.status_code == 500
    assert response.json() == {"detail": "internal error; quote the request_id when reporting it", "request_id": "bug-1"}
    assert "a bug" not in response.text


def test_playground_config_schema_has_no_null_types():
    schema = {
        "properties": {
            "docs": {"anyOf": [{"type": "string"}, {"type": "null"}], "default": None, "title": "Docs"},
            "either": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
        }
    }
    assert without_null(schema) == {
        "properties": {
            "docs": {"type": "string", "default": None, "title": "Docs"},
            "either": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
        }
    }


# ---------------------------------------------------------------- Slack


def slack_form(response_url: str, text: str = PROMPT) -> bytes:
    return urlencode({"command": "/dream", "text": text, "response_url": response_url, "user_id": "U1"}).encode()


async def test_slack_command_acknowledges_and_posts_the_result(make_client, monkeypatch):
    setenv(monkeypatch, SLACK_SIGNING_SECRET=SLACK_SECRET)
    with Receiver() as receiver:
        setenv(monkeypatch, DREAM_GRAPH_SLACK_RESPONSE_URL_PREFIXES=receiver.url.rsplit("/", 2)[0] + "/")
        body = slack_form(receiver.url)
        async with make_client() as client:
            ack = await client.post("/slack/commands", content=body, headers=slack_headers(body))
        posts = receiver.wait(1)

    assert ack.status_code == 200
    assert ack.json()["response_type"] == "ephemeral" and "Working on" in ack.json()["text"]
    assert len(posts) == 1 and posts[0]["path"] == "/commands/T1/123"
    text = posts[0]["json"]["text"]
    assert text.startswith("*passed* after 1 cycle(s) with `offline`")
    assert "class " in text and "pipeline:" in text


@pytest.mark.parametrize(
    ("headers", "needle"),
    [
        ({}, "missing X-Slack-Request-Timestamp"),
        ("fresh-unsigned", "missing X-Slack-Signature"),  # the time is taken when the test runs, not when collected
        ("wrong-secret", "does not match"),
        ("stale", "s away from now"),
        ({"X-Slack-Request-Timestamp": "soon", "X-Slack-Signature": "v0=00"}, "not a Unix time"),
    ],
)
async def test_slack_rejects_unsigned_wrong_and_stale_requests(make_client, monkeypatch, headers, needle):
    setenv(monkeypatch, SLACK_SIGNING_SECRET=SLACK_SECRET)
    body = slack_form("http://127.0.0.1:9/never")
    if headers == "wrong-secret":
        headers = slack_headers(body, secret="another")
    elif headers == "stale":
        headers = slack_headers(body, timestamp=int(time.time()) - 301)
    elif headers == "fresh-unsigned":
        headers = {"X-Slack-Request-Timestamp": str(int(time.time()))}
    async with make_client() as client:
        assert_error(await client.post("/slack/commands", content=body, headers=headers), 401, needle)


async def test_slack_without_a_secret_is_503(client):
    body = slack_form("http://127.0.0.1:9/never")
    assert_error(await client.post("/slack/commands", content=body, headers=slack_headers(body)), 503, "SLACK_SIGNING_SECRET")


async def test_slack_empty_text_gets_usage_and_nothing_is_posted(make_client, monkeypatch):
    setenv(monkeypatch, SLACK_SIGNING_SECRET=SLACK_SECRET)
    with Receiver() as receiver:
        setenv(monkeypatch, DREAM_GRAPH_SLACK_RESPONSE_URL_PREFIXES=receiver.url.rsplit("/", 2)[0] + "/")
        body = slack_form(receiver.url, text="  ")
        async with make_client() as client:
            ack = await client.post("/slack/commands", content=body, headers=slack_headers(body))
        assert ack.status_code == 200 and "Usage: /dream <what the code should do>" in ack.json()["text"]
        assert receiver.posts == []


async def test_slack_without_response_url_is_422(make_client, monkeypatch):
    setenv(monkeypatch, SLACK_SIGNING_SECRET=SLACK_SECRET)
    body = urlencode({"command": "/dream", "text": PROMPT}).encode()
    async with make_client() as client:
        assert_error(await client.post("/slack/commands", content=body, headers=slack_headers(body)), 422, "response_url")


# ---------------------------------------------------------------- GitHub webhook


async def github(client: httpx.AsyncClient, event: str, payload: Any, **kwargs: Any) -> httpx.Response:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return await client.post("/github/webhook", content=body, headers=github_headers(body, event, **kwargs))


async def test_github_ping_push_and_other_events(make_client, monkeypatch):
    setenv(monkeypatch, GITHUB_WEBHOOK_SECRET=GITHUB_SECRET)
    async with make_client() as client:
        ping = await github(client, "ping", {"zen": "Keep it logically awesome.", "hook_id": 1})
        push = await github(client, "push", {"ref": "refs/heads/main", "repository": {"full_name": "o/r"}})
        issue = await github(client, "issues", {"action": "opened"})

    assert ping.status_code == 200 and ping.json()["message"] == "pong"
    assert push.status_code == 200
    assert push.json()["event"] == "push" and push.json()["refreshed"] is False
    assert "no GitHub docs source is configured" in push.json()["reason"]
    assert issue.status_code == 202 and issue.json() == {"event": "issues", "ignored": True}


async def test_github_rejects_missing_and_wrong_signatures(make_client, monkeypatch):
    setenv(monkeypatch, GITHUB_WEBHOOK_SECRET=GITHUB_SECRET)
    body = b'{"zen": "x"}'
    async with make_client() as client:
        missing = await client.post("/github/webhook", content=body, headers={"X-GitHub-Event": "ping"})
        wrong = await github(client, "ping", body, secret="not-the-secret")
        tampered = await client.post(
            "/github/webhook", content=body + b" ", headers=github_headers(body, "ping")
        )
    assert_error(missing, 401, "missing X-Hub-Signature-256")
    assert_error(wrong, 401, "does not match")
    assert_error(tampered, 401, "does not match")


async def test_github_without_a_secret_is_503_and_bad_json_is_422(make_client, monkeypatch):
    async with make_client() as client:
        assert_error(await github(client, "ping", {"zen": "x"}), 503, "GITHUB_WEBHOOK_SECRET")
    setenv(monkeypatch, GITHUB_WEBHOOK_SECRET=GITHUB_SECRET)
    async with make_client() as client:
        assert_error(await github(client, "push", b"{not json"), 422, "not valid JSON")
        assert_error(await github(client, "push", b"[1, 2]"), 422, "JSON object")


async def test_unknown_routes_are_json_errors_too(client):
    assert_error(await client.get("/nowhere"), 404, "Not Found")


async def test_runs_api_is_mounted_and_sees_the_services_runs(make_client, monkeypatch):
    setenv(monkeypatch, DREAM_GRAPH_API_KEY="s3cret")
    key = {"X-API-Key": "s3cret"}
    async with make_client() as client:
        assert (await client.get("/runs")).status_code == 401
        done = await client.post("/generate", json={"prompt": PROMPT}, headers=key)
        assert done.status_code == 200
        run_id = done.json()["run_id"]
        listed = await client.get("/runs", headers=key)
        assert listed.status_code == 200 and run_id in [r["id"] for r in listed.json()["runs"]]
        one = await client.get(f"/runs/{run_id}", headers=key)
        assert one.json()["request"] == PROMPT and one.json()["status"] == "passed"
        report = await client.get("/runs/report", headers=key)
        assert report.status_code == 200
