"""Attacks on the signed endpoints: Slack's response_url aimed at internal hosts, replayed Slack requests and GitHub
deliveries, overflowing timestamps, and signatures and timestamps at the exact edge of what is accepted."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatResult

from dream_graph.graph import build_graph
from dream_graph.offline import OfflineChatModel
from dream_graph.service import slack
from dream_graph.service.app import create_app
from dream_graph.service.webhooks import ReplayCache, SignatureError, verify_github_signature
from tests.fakes.receiver import Receiver
from tests.security.conftest import one_pipeline, setenv

SLACK_SECRET = "slack-test-secret"
GITHUB_SECRET = "github-test-secret"
PROMPT = "a node that counts the words in each message"
NOW = 1_800_000_000


class CountingModel(OfflineChatModel):
    """The offline model, counting the runs that reached it."""

    calls: list[int] = []

    async def _agenerate(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> ChatResult:
        self.calls.append(1)
        return self._generate(messages)


def signed(body: bytes, timestamp: str | None = None, secret: str = SLACK_SECRET) -> dict[str, str]:
    """Slack's v0 signature, computed here independently of the server code."""
    ts = timestamp or str(int(time.time()))
    digest = hmac.new(secret.encode(), b"v0:" + ts.encode() + b":" + body, hashlib.sha256).hexdigest()
    return {
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": f"v0={digest}",
        "Content-Type": "application/x-www-form-urlencoded",
    }


def form(response_url: str, text: str = PROMPT) -> bytes:
    return urlencode({"command": "/dream", "text": text, "response_url": response_url, "user_id": "U1"}).encode()


def app_and_model(**limits: int) -> tuple[Any, CountingModel]:
    model = CountingModel(calls=[])
    return create_app(graphs={"dream": build_graph(chat_model=model)}, **limits), model


def client_for(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test", timeout=60)


# ---------------------------------------------------------------- Slack response_url (SSRF)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:{port}/commands/T1/123",  # a local port (the receiver is listening there)
        "http://169.254.169.254/latest/meta-data/",  # a link-local metadata address
        "http://hooks.slack.com/commands/T1/1",  # the right host over plain http
        "https://hooks.slack.com.attacker.example/commands/T1/1",  # a look-alike host
        "https://hooks.slack.com@127.0.0.1:{port}/commands/T1/1",  # userinfo trick
        "https://hooks.slack.com:8443/commands/T1/1",  # another port
    ],
)
async def test_a_response_url_outside_the_allowed_prefixes_gets_an_ephemeral_error_and_nothing_is_posted(
    monkeypatch, url
):
    setenv(monkeypatch, SLACK_SIGNING_SECRET=SLACK_SECRET)
    app, model = app_and_model()
    with Receiver() as receiver:
        url = url.format(port=receiver.url.split(":")[2].split("/")[0])
        body = form(url)
        async with client_for(app) as client:
            ack = await client.post("/slack/commands", content=body, headers=signed(body))
        await asyncio.sleep(0.2)
        posts = list(receiver.posts)
    assert ack.status_code == 200
    assert ack.json()["response_type"] == "ephemeral"
    assert "response_url must start with https://hooks.slack.com/" in ack.json()["text"]
    assert "DREAM_GRAPH_SLACK_RESPONSE_URL_PREFIXES" in ack.json()["text"]
    assert posts == [] and model.calls == [] and app.state.limiter.admitted == 0


def test_response_url_prefix_rules():
    default = ["https://hooks.slack.com/"]
    assert slack.response_url_problem("https://hooks.slack.com/commands/T1/1/abc", default) is None
    assert slack.response_url_problem("https://HOOKS.slack.com/commands/T1/1", default) is not None  # exact prefix
    assert slack.response_url_problem("https://hooks.slack.com", default) is not None  # no path: not under the prefix
    assert slack.response_url_problem("", default) == "the command has no response_url"
    assert slack.response_url_problem("https://hooks.slack.com/x", []) is not None  # nothing allowed
    widened = ["https://hooks.slack.com/", "http://127.0.0.1:9000/slack/"]
    assert slack.response_url_problem("http://127.0.0.1:9000/slack/T1", widened) is None
    assert slack.response_url_problem("http://127.0.0.1:9000/other", widened) is not None
    assert slack.response_url_problem("http://127.0.0.1:9001/slack/T1", widened) is not None


# ---------------------------------------------------------------- replays


async def test_a_replayed_slack_request_is_answered_duplicate_and_starts_no_second_run(monkeypatch):
    setenv(monkeypatch, SLACK_SIGNING_SECRET=SLACK_SECRET)
    app, model = app_and_model()
    with Receiver() as receiver:
        setenv(monkeypatch, DREAM_GRAPH_SLACK_RESPONSE_URL_PREFIXES=receiver.url.rsplit("/", 2)[0] + "/")
        body = form(receiver.url)
        now = int(time.time())
        headers = signed(body, str(now))
        async with client_for(app) as client:
            first = await client.post("/slack/commands", content=body, headers=headers)
            replays = [await client.post("/slack/commands", content=body, headers=headers) for _ in range(3)]
            fresh = await client.post("/slack/commands", content=body, headers=signed(body, str(now - 10)))
        posts = receiver.wait(2, timeout=30)
    assert first.status_code == 200 and "Working on" in first.json()["text"]
    assert [r.status_code for r in replays] == [200, 200, 200]
    assert all(r.json()["text"].startswith("duplicate, ignored") for r in replays)
    assert "Working on" in fresh.json()["text"]  # a new timestamp is a new signed request
    assert len(model.calls) == 2 and len(posts) == 2


async def test_a_replayed_github_delivery_is_ignored_even_under_a_new_delivery_id(monkeypatch):
    setenv(monkeypatch, GITHUB_WEBHOOK_SECRET=GITHUB_SECRET)

    async def deliver(client: httpx.AsyncClient, payload: bytes, delivery: str) -> httpx.Response:
        digest = hmac.new(GITHUB_SECRET.encode(), payload, hashlib.sha256).hexdigest()
        headers = {"X-GitHub-Event": "ping", "X-Hub-Signature-256": f"sha256={digest}", "X-GitHub-Delivery": delivery}
        return await client.post("/github/webhook", content=payload, headers=headers)

    one, two = json.dumps({"zen": "one", "hook_id": 1}).encode(), json.dumps({"zen": "two", "hook_id": 1}).encode()
    async with client_for(create_app(graphs=one_pipeline())) as client:
        first = await deliver(client, one, "d-1")
        same = await deliver(client, one, "d-1")
        renamed = await deliver(client, one, "d-2")  # the delivery id is not signed: the body still matches
        reused_id = await deliver(client, two, "d-1")
        other = await deliver(client, two, "d-3")
    assert first.json()["message"] == "pong"
    for replay in (same, renamed, reused_id):
        assert replay.status_code == 200 and replay.json()["detail"] == "duplicate, ignored" and "message" not in replay.json()
    assert other.json() == {"event": "ping", "message": "pong", "zen": "two"}


def test_the_replay_cache_forgets_after_its_window_and_stays_bounded():
    cache = ReplayCache(window=10, max_entries=3)
    assert cache.seen_before(["a"], now=0) is False
    assert cache.seen_before(["a"], now=9.99) is True
    assert cache.seen_before(["a"], now=10) is False  # the window is over: a new request
    for key in "bcd":
        cache.seen_before([key], now=11)
    assert len(cache._seen) == 3 and cache.seen_before(["a"], now=11) is False  # oldest dropped


def test_the_replay_cache_expires_the_oldest_entries_only():
    cache = ReplayCache(window=10)
    cache.seen_before(["old"], now=0)
    cache.seen_before(["new"], now=5)
    assert cache.seen_before(["new"], now=11) is True, "expiring 'old' must not take the newer key with it"
    assert cache.seen_before(["old"], now=11) is False


# ---------------------------------------------------------------- timestamps and signatures at the edge


def slack_check(timestamp: str, signature: str | None = None, *, now: float = NOW, body: bytes = b"x=1") -> None:
    if signature is None:
        signature = signed(body, timestamp)["X-Slack-Signature"]
    slack.verify_slack_signature(SLACK_SECRET, body, timestamp, signature, now=now)


@pytest.mark.parametrize("offset", [-300, 300, 0])
def test_slack_timestamps_exactly_at_the_window_are_accepted(offset):
    slack_check(str(NOW + offset))


@pytest.mark.parametrize("offset", [-301, 301])
def test_slack_timestamps_one_second_past_the_window_are_refused(offset):
    with pytest.raises(SignatureError, match="s away from now"):
        slack_check(str(NOW + offset))


@pytest.mark.parametrize("timestamp", ["9" * 400, "1" * 13, "-1800000000", " 1800000000", "1_800_000_000", "١٢٣", ""])
def test_slack_timestamps_that_are_not_plain_unix_times_are_refused(timestamp):
    with pytest.raises(SignatureError, match="not a Unix time|missing"):
        slack_check(timestamp, "v0=00")


async def test_a_400_digit_slack_timestamp_is_401_not_500(monkeypatch):
    setenv(monkeypatch, SLACK_SIGNING_SECRET=SLACK_SECRET)
    body = form("https://hooks.slack.com/commands/T1/1")
    async with client_for(create_app(graphs=one_pipeline())) as client:
        response = await client.post("/slack/commands", content=body, headers=signed(body, "9" * 400))
    assert response.status_code == 401 and "not a Unix time" in response.json()["detail"]


@pytest.mark.parametrize("cut", ["prefix-only", "half", "one-short", "upper", "extra"])
def test_signatures_that_are_prefixes_or_variants_of_the_right_one_are_refused(cut):
    body = b'{"zen": "x"}'
    right = "sha256=" + hmac.new(GITHUB_SECRET.encode(), body, hashlib.sha256).hexdigest()
    wrong = {
        "prefix-only": "sha256=",
        "half": right[: len(right) // 2],
        "one-short": right[:-1],
        "upper": "sha256=" + right[7:].upper(),
        "extra": right + "0",
    }[cut]
    verify_github_signature(GITHUB_SECRET, body, right)  # the right one passes
    with pytest.raises(SignatureError, match="does not match"):
        verify_github_signature(GITHUB_SECRET, body, wrong)
    slack_right = signed(body, str(NOW))["X-Slack-Signature"]
    with pytest.raises(SignatureError, match="does not match"):
        slack_check(str(NOW), "v0=" if cut == "prefix-only" else slack_right[:-1], body=body)


@pytest.mark.parametrize("missing", [None, ""])
def test_github_refusals_name_the_header_and_what_is_wrong(missing):
    body = b'{"zen": "x"}'
    with pytest.raises(SignatureError) as unsigned:
        verify_github_signature(GITHUB_SECRET, body, missing)
    assert str(unsigned.value) == "missing X-Hub-Signature-256 header: the request is not signed"
    with pytest.raises(SignatureError) as wrong:
        verify_github_signature(GITHUB_SECRET, body, "sha256=" + "0" * 64)
    assert str(wrong.value) == (
        "X-Hub-Signature-256 does not match the request body; check that the shared secret is the same"
    )


def test_the_replay_cache_holds_ten_thousand_keys_by_default():
    cache = ReplayCache(window=60)
    for i in range(10_000):
        cache.seen_before([f"k{i}"], now=0)
    assert cache.seen_before(["k0"], now=1) is True, "the 10,000th newest key is still remembered"
    cache.seen_before(["one more"], now=1)
    assert len(cache._seen) == 10_000 and cache.seen_before(["k1"], now=1) is True
    assert cache.seen_before(["k0"], now=1) is False, "the oldest is forgotten"


async def test_a_nul_in_a_slack_command_is_an_ephemeral_error_and_no_run(monkeypatch):
    setenv(monkeypatch, SLACK_SIGNING_SECRET=SLACK_SECRET)
    app, model = app_and_model()
    body = form("https://hooks.slack.com/commands/T1/1", text="a node\x00 that counts")
    async with client_for(app) as client:
        ack = await client.post("/slack/commands", content=body, headers=signed(body))
    assert ack.status_code == 200 and "contains a NUL character" in ack.json()["text"]
    assert model.calls == [] and app.state.limiter.admitted == 0


def test_slack_refusals_say_exactly_what_is_wrong():
    def refusal(timestamp: str | None, signature: str | None = "v0=" + "0" * 64) -> str:
        with pytest.raises(SignatureError) as refused:
            slack.verify_slack_signature(SLACK_SECRET, b"x=1", timestamp, signature, now=NOW)
        return str(refused.value)

    assert refusal(None) == refusal("") == "missing X-Slack-Request-Timestamp header: the request is not signed"
    assert refusal("1234567890abcdefghijKLMNOP") == (
        "X-Slack-Request-Timestamp '1234567890abcdefghij' is not a Unix time (1 to 12 digits)"  # quoted, cut at 20
    )
    assert refusal(str(NOW)) == "X-Slack-Signature does not match the request body; check that the shared secret is the same"
    assert refusal(str(NOW), None) == "missing X-Slack-Signature header: the request is not signed"


def test_response_url_refusals_name_the_allowed_prefixes_and_the_setting():
    two = ["https://hooks.slack.com/commands/", "https://hooks.example.com/"]
    setting = "widen DREAM_GRAPH_SLACK_RESPONSE_URL_PREFIXES to allow other hosts"
    assert slack.response_url_problem("https://evil.example/x", two) == (
        f"response_url must start with https://hooks.slack.com/commands/ or https://hooks.example.com/; {setting}"
    )
    assert slack.response_url_problem("https://hooks.slack.com/commands/T1", ["", ""]) == (
        f"response_url must start with (nothing is allowed); {setting}"
    )
    assert slack.response_url_problem("http://[::1", two) == "the command's response_url is not a valid URL"
    assert slack.response_url_problem("", two) == "the command has no response_url"
