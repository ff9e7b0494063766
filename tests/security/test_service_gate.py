"""Attacks on the service's front door, in-process (httpx ASGITransport over the real app): bodies capped while they
stream, the key checked before any body is read, one limiter for every route that runs the graph, operator caps on
run options, and bad input answered with a 4xx that names the problem."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatResult
from langserve.lzstring import LZString

from dream_graph.graph import build_graph
from dream_graph.offline import OfflineChatModel
from dream_graph.service.app import create_app
from dream_graph.service.limits import RunLimiter, TooManyInputs
from tests.security.conftest import one_pipeline, setenv

PROMPT = "a node that counts the words in each message"
KEY = "Correct-Horse-9"
CAP = 4096  # DREAM_GRAPH_MAX_BODY_BYTES in these tests: small, so the boundary tests stay fast
WAIT = 30.0  # every wait in these tests is bounded: a deadlock fails with a message instead of hanging


def client_for(app: Any) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://test", timeout=WAIT * 3)


class Body:
    """A chunked request body of up to `total` bytes that counts how much the server actually pulled."""

    def __init__(self, total: int, chunk: int = 1024, head: bytes = b"") -> None:
        self.total, self.chunk, self.head, self.pulled = total, chunk, head, 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        sent = 0
        piece = self.head
        while sent < self.total:
            data = (piece or b" " * self.chunk)[: self.total - sent]
            piece = b""
            sent += len(data)
            self.pulled = sent
            yield data


class GatedModel(OfflineChatModel):
    """The offline model holding each reply until the test opens the gate, counting the replies it was asked for."""

    gate: Any = None
    calls: list[int] = []

    async def _agenerate(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> ChatResult:
        self.calls.append(1)
        await self.gate.wait()
        return self._generate(messages)

    async def _astream(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        """Streaming routes (stream_log, stream_events) call the model this way."""
        self.calls.append(1)
        await self.gate.wait()
        for chunk in self._stream(messages, *args, **kwargs):
            yield chunk


async def until(predicate: Any, what: str, timeout: float = WAIT) -> None:
    """Poll `predicate` until it holds; fail saying what never happened (never hang)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for: {what}")
        await asyncio.sleep(0.01)


# ---------------------------------------------------------------- bodies capped while they stream


@pytest.mark.parametrize("path", ["/generate", "/dream/invoke", "/slack/commands", "/github/webhook"])
async def test_a_chunked_body_over_the_cap_is_413_after_reading_only_the_cap(monkeypatch, path):
    setenv(monkeypatch, DREAM_GRAPH_MAX_BODY_BYTES=str(CAP), SLACK_SIGNING_SECRET="s", GITHUB_WEBHOOK_SECRET="g")
    body = Body(100_000_000)  # 100 MB offered, chunked (no Content-Length)
    async with client_for(create_app(graphs=one_pipeline())) as client:
        response = await asyncio.wait_for(client.post(path, content=body), WAIT)
    assert response.status_code == 413, response.text
    assert f"the limit is {CAP}" in response.json()["detail"]
    assert body.pulled <= CAP + 1024, f"the server read {body.pulled} bytes of a body over the {CAP}-byte cap"


async def test_a_chunked_body_of_exactly_the_cap_is_read_whole_and_one_more_byte_is_413(monkeypatch):
    setenv(monkeypatch, DREAM_GRAPH_MAX_BODY_BYTES=str(CAP))
    payload = json.dumps({"prompt": ""}).encode()
    exact = Body(CAP, head=payload)  # valid JSON padded with spaces to exactly CAP bytes
    over = Body(CAP + 1, head=payload)
    async with client_for(create_app(graphs=one_pipeline())) as client:
        at_cap = await client.post("/generate", content=exact, headers={"Content-Type": "application/json"})
        past_cap = await client.post("/generate", content=over, headers={"Content-Type": "application/json"})
    assert at_cap.status_code == 422 and "prompt is empty" in at_cap.text  # read and parsed: the app saw it
    assert past_cap.status_code == 413


async def test_the_api_key_is_checked_before_a_single_body_byte_is_read(monkeypatch):
    setenv(monkeypatch, DREAM_GRAPH_API_KEY=KEY, DREAM_GRAPH_MAX_BODY_BYTES=str(CAP))
    body = Body(100_000_000)
    async with client_for(create_app(graphs=one_pipeline())) as client:
        response = await client.post("/generate", content=body)
    assert response.status_code == 401
    assert body.pulled == 0


@pytest.mark.parametrize(
    ("presented", "allowed"),
    [
        (KEY, True),
        (KEY[:-1], False),  # a prefix of the real key
        ("", False),
        (KEY + "0", False),  # longer
        (KEY.lower(), False),  # wrong case
        (KEY.upper(), False),
        (None, False),
    ],
)
async def test_api_key_boundaries_on_runs_and_on_the_docs(monkeypatch, presented, allowed):
    setenv(monkeypatch, DREAM_GRAPH_API_KEY=KEY)
    headers = {} if presented is None else {"X-API-Key": presented}
    async with client_for(create_app(graphs=one_pipeline())) as client:
        statuses = {
            path: (await client.get(path, headers=headers)).status_code for path in ("/docs", "/redoc", "/openapi.json")
        }
        run = await client.post("/generate", json={"prompt": " "}, headers=headers)
    expected = 200 if allowed else 401
    assert statuses == {"/docs": expected, "/redoc": expected, "/openapi.json": expected}
    assert run.status_code == (422 if allowed else 401)  # 422: got past the key to the prompt check


async def test_a_browser_without_the_key_is_sent_to_the_login_form_not_shown_the_docs(monkeypatch):
    setenv(monkeypatch, DREAM_GRAPH_API_KEY=KEY)
    async with client_for(create_app(graphs=one_pipeline())) as client:
        page = await client.get("/docs", headers={"Accept": "text/html,application/xhtml+xml"})
        schema = await client.get("/openapi.json", headers={"Accept": "text/html"})
    assert page.status_code == 303 and page.headers["location"] == "/login?next=/docs"
    assert schema.status_code == 303 and "paths" not in schema.text


async def test_the_docs_pages_load_their_assets_from_this_server_not_a_cdn(monkeypatch):
    async with client_for(create_app(graphs=one_pipeline())) as client:
        pages = [(await client.get(path)).text for path in ("/docs", "/redoc")]
        assets = [
            await client.get(f"/static-offline-docs/{name}")
            for name in ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js")
        ]
    for page in pages:
        assert "cdn.jsdelivr" not in page and "unpkg.com" not in page and "fonts.googleapis" not in page
        assert "/static-offline-docs/" in page
    assert [a.status_code for a in assets] == [200, 200, 200]
    assert all(len(a.content) > 10_000 for a in assets)


# ---------------------------------------------------------------- one limiter for every run


def config_hash(configurable: dict[str, Any]) -> str:
    """LangServe's /c/<config>/ path segment (its own compression, as its client sends it)."""
    return LZString.compressToEncodedURIComponent(json.dumps({"configurable": configurable}))


QUICK = {"evaluators": ["syntax"], "max_cycles": 1}  # runs that finish fast once the gate opens
CONFIG = {"config": {"configurable": QUICK}}
RUN_ROUTES = [
    ("/generate", {"prompt": PROMPT, "options": QUICK}),
    ("/dream/invoke", {"input": {"prompt": PROMPT}, **CONFIG}),
    ("/dream/batch", {"inputs": [{"prompt": PROMPT}], **CONFIG}),
    ("/dream/stream", {"input": {"prompt": PROMPT}, **CONFIG}),
    ("/dream/stream_log", {"input": {"prompt": PROMPT}, **CONFIG}),
    ("/dream/stream_events", {"input": {"prompt": PROMPT}, **CONFIG}),
    (f"/dream/c/{config_hash(QUICK)}/invoke", {"input": {"prompt": PROMPT}}),
    (f"/dream/c/{config_hash(QUICK)}/stream", {"input": {"prompt": PROMPT}}),
    (f"/dream/c/{config_hash(QUICK)}/batch", {"inputs": [{"prompt": PROMPT}]}),
]


async def test_every_run_route_takes_a_place_and_a_second_run_is_503_until_it_ends():
    gate = asyncio.Event()
    model = GatedModel(gate=gate, calls=[])
    app = create_app(graphs={"dream": build_graph(chat_model=model)}, max_concurrent_runs=1, max_queued_runs=0)
    limiter = app.state.limiter
    async with client_for(app) as client:
        for path, payload in RUN_ROUTES:
            gate.clear()
            calls = len(model.calls)
            held = asyncio.create_task(client.post(path, json=payload))
            await until(lambda calls=calls: len(model.calls) > calls, f"the run on {path} reaching the model")
            assert limiter.admitted == 1 and limiter.running_now == 1, path

            second = await asyncio.wait_for(client.post(path, json=payload), WAIT)
            chat = await asyncio.wait_for(client.post("/dream/chat/stream", json={"input": {}}), WAIT)
            gate.set()
            first = await asyncio.wait_for(held, WAIT)

            assert second.status_code == 503, (path, second.text)
            assert second.headers["retry-after"] == "5" and "retry later" in second.json()["detail"]
            assert chat.status_code == 503, "the chat routes share the limiter"
            assert first.status_code == 200, (path, first.text)
            assert limiter.admitted == 0 and limiter.running_now == 0, path
    assert len(model.calls) == len(RUN_ROUTES)  # the refused requests never reached the model


async def test_a_batch_takes_one_place_per_input_and_one_larger_than_the_limit_is_refused():
    gate = asyncio.Event()
    model = GatedModel(gate=gate, calls=[])
    app = create_app(graphs={"dream": build_graph(chat_model=model)}, max_concurrent_runs=2, max_queued_runs=1)
    limiter = app.state.limiter
    two = {"inputs": [{"prompt": PROMPT}, {"prompt": "a source node"}], **CONFIG}
    async with client_for(app) as client:
        too_big = await client.post("/dream/batch", json={"inputs": [{"prompt": PROMPT}] * 3})
        held = asyncio.create_task(client.post("/dream/batch", json=two))
        await until(lambda: len(model.calls) == 2, "both inputs of the batch running")
        assert (limiter.admitted, limiter.running_now) == (2, 2)

        no_room = await client.post("/dream/batch", json=two)  # 2 more places: 2 + 2 > 2 running + 1 queued
        queued = asyncio.create_task(client.post("/generate", json={"prompt": PROMPT, "options": QUICK}))
        await until(lambda: limiter.admitted == 3, "a single run queued behind the batch")
        assert limiter.running_now == 2 and len(model.calls) == 2  # queued, not running: the limit held
        gate.set()
        done = await asyncio.wait_for(asyncio.gather(held, queued), WAIT)

    assert too_big.status_code == 422
    assert "a batch of 3 inputs is more than the 2 runs" in too_big.json()["detail"]
    assert no_room.status_code == 503
    assert [r.status_code for r in done] == [200, 200]
    assert [o["status"] for o in done[0].json()["output"]] == ["passed", "passed"]
    assert (limiter.admitted, limiter.running_now) == (0, 0)


async def test_places_come_back_after_errors_cancellations_and_refusals():
    gate = asyncio.Event()
    model = GatedModel(gate=gate, calls=[])
    app = create_app(graphs={"dream": build_graph(chat_model=model)}, max_concurrent_runs=1, max_queued_runs=1)
    limiter = app.state.limiter
    async with client_for(app) as client:
        refused = await client.post("/dream/invoke", json={"input": {"prompt": ""}})  # refused inside the route
        broken = await client.post("/dream/batch", json={"inputs": "not a list"})
        assert (limiter.admitted, refused.status_code, broken.status_code) == (0, 422, 422)

        running = asyncio.create_task(client.post("/dream/stream", json={"input": {"prompt": PROMPT}, **CONFIG}))
        waiting = asyncio.create_task(client.post("/generate", json={"prompt": PROMPT, "options": QUICK}))
        await until(lambda: limiter.admitted == 2, "one run and one queued")
        waiting.cancel()  # the caller gives up while queued
        running.cancel()  # ... and while running
        await asyncio.gather(running, waiting, return_exceptions=True)
        await until(lambda: limiter.admitted == 0, "every place given back after cancellations")
        assert limiter.running_now == 0

        gate.set()  # the limiter still works: a new run gets a slot at once
        again = await asyncio.wait_for(client.post("/generate", json={"prompt": PROMPT, "options": QUICK}), WAIT)
    assert again.status_code == 200 and limiter.admitted == 0


async def test_an_unexpected_error_in_a_run_gives_its_place_back():
    def boom(state: dict[str, Any]) -> dict[str, Any]:
        raise RuntimeError("a bug")

    from langchain_core.runnables import RunnableLambda

    app = create_app(graphs={"dream": RunnableLambda(boom)}, max_concurrent_runs=1, max_queued_runs=0)
    async with client_for(app) as client:
        statuses = [(await client.post("/generate", json={"prompt": PROMPT})).status_code for _ in range(3)]
    assert statuses == [500, 500, 500]  # never 503: each failed run freed its place
    assert app.state.limiter.admitted == 0


async def test_slack_commands_share_the_limiter(monkeypatch):
    from tests.unit.test_server import slack_form, slack_headers

    setenv(monkeypatch, SLACK_SIGNING_SECRET="slack-test-secret")
    gate = asyncio.Event()
    model = GatedModel(gate=gate, calls=[])
    app = create_app(graphs={"dream": build_graph(chat_model=model)}, max_concurrent_runs=1, max_queued_runs=0)
    async with client_for(app) as client:
        held = asyncio.create_task(client.post("/generate", json={"prompt": PROMPT, "options": QUICK}))
        await until(lambda: len(model.calls) == 1, "a run holding the only slot")
        body = slack_form("https://hooks.slack.com/commands/T1/1")
        busy = await client.post("/slack/commands", content=body, headers=slack_headers(body))
        gate.set()
        await asyncio.wait_for(held, WAIT)
    assert busy.status_code == 200 and "busy" in busy.json()["text"]
    assert len(model.calls) == 1 and app.state.limiter.admitted == 0


async def test_the_limiter_serves_in_order_and_a_cancelled_waiter_leaks_nothing():
    limiter = RunLimiter(3, 5)
    order: list[str] = []
    release = {name: asyncio.Event() for name in "abc"}

    async def run(name: str, runs: int) -> None:
        async with limiter.running(runs):
            order.append(name)
            await release[name].wait()

    a = asyncio.create_task(run("a", 2))
    await until(lambda: order == ["a"], "a running")
    b = asyncio.create_task(run("b", 2))  # needs 2, only 1 free: waits
    c = asyncio.create_task(run("c", 1))  # 1 would fit, but b is first in line
    await until(lambda: limiter.admitted == 5, "b and c queued")
    assert order == ["a"] and limiter.running_now == 2
    b.cancel()
    await asyncio.gather(b, return_exceptions=True)
    await until(lambda: order == ["a", "c"], "c running once b left the line")
    assert (limiter.admitted, limiter.running_now) == (3, 3)
    with pytest.raises(TooManyInputs):
        limiter.admit(4)
    release["a"].set()
    release["c"].set()
    await asyncio.wait_for(asyncio.gather(a, c), WAIT)
    assert (limiter.admitted, limiter.running_now) == (0, 0)


async def test_runs_fill_every_slot_and_one_more_waits_until_a_slot_is_free():
    limiter = RunLimiter(3, 5)
    holding = [limiter.running(1) for _ in range(3)]
    for slot in holding:
        await asyncio.wait_for(slot.__aenter__(), WAIT)
    assert (limiter.running_now, limiter.admitted) == (3, 3)
    fourth = asyncio.create_task(_hold(limiter, 1, asyncio.Event()))
    await until(lambda: limiter.admitted == 4, "the fourth run queued")
    assert limiter.running_now == 3 and not fourth.done(), "every slot is taken: the fourth waits"
    await holding[0].__aexit__(None, None, None)
    await until(lambda: limiter.running_now == 3 and limiter.admitted == 3, "the fourth took the freed slot")
    fourth.cancel()
    for slot in holding[1:]:
        await slot.__aexit__(None, None, None)
    await asyncio.gather(fourth, return_exceptions=True)
    assert (limiter.running_now, limiter.admitted) == (0, 0)


async def _hold(limiter: RunLimiter, runs: int, release: asyncio.Event) -> None:
    async with limiter.running(runs):
        await release.wait()


async def test_a_batch_waits_for_all_its_slots_while_a_smaller_run_still_holds_one():
    limiter = RunLimiter(2, 5)
    first, second, batch_done = asyncio.Event(), asyncio.Event(), asyncio.Event()
    a1 = asyncio.create_task(_hold(limiter, 1, first))
    a2 = asyncio.create_task(_hold(limiter, 1, second))
    await until(lambda: limiter.running_now == 2, "both slots taken")
    batch = asyncio.create_task(_hold(limiter, 2, batch_done))
    await until(lambda: limiter.admitted == 4, "the batch of two queued")
    first.set()
    await asyncio.wait_for(a1, WAIT)
    await asyncio.sleep(0.05)
    assert limiter.running_now == 1, "one slot free is not enough for a batch of two"
    second.set()
    await asyncio.wait_for(a2, WAIT)
    await until(lambda: limiter.running_now == 2, "the batch got both slots")
    batch_done.set()
    await asyncio.wait_for(batch, WAIT)
    assert (limiter.running_now, limiter.admitted) == (0, 0)


async def test_a_waiter_cancelled_just_as_its_slot_came_passes_the_slot_on():
    limiter = RunLimiter(1, 5)
    held = limiter.running(1)
    await held.__aenter__()
    waiter = asyncio.create_task(_hold(limiter, 1, asyncio.Event()))
    await until(lambda: limiter.admitted == 2, "the waiter queued")
    await held.__aexit__(None, None, None)  # the slot is handed to the waiter's future...
    waiter.cancel()  # ...and the waiter is cancelled before it could run
    await asyncio.gather(waiter, return_exceptions=True)
    assert waiter.cancelled() and (limiter.running_now, limiter.admitted) == (0, 0), "the slot was given back"
    async with limiter.running(1):  # and the next run gets it at once
        assert limiter.running_now == 1


# ---------------------------------------------------------------- operator caps on run options


@pytest.mark.parametrize(
    ("options", "needle"),
    [
        ({"temperature": -5}, "temperature must be between 0 and 2, got -5"),
        ({"temperature": 2.01}, "temperature must be between 0 and 2"),
        ({"max_tokens": 1_000_000_000_000}, "max_tokens must be at most 8192 on this server (DREAM_GRAPH_MAX_TOKENS_CAP)"),
        ({"max_tokens": 8193}, "at most 8192"),
        ({"max_tokens": 0}, "max_tokens must be at least 1"),
        ({"max_cycles": 11}, "max_cycles must be at most 10 on this server (DREAM_GRAPH_MAX_CYCLES_CAP)"),
        ({"token_budget": 200_001}, "DREAM_GRAPH_TOKEN_BUDGET_CAP"),
        ({"timeout": 120.5}, "DREAM_GRAPH_TIMEOUT_CAP"),
        ({"max_retries": 6}, "DREAM_GRAPH_MAX_RETRIES_CAP"),
        ({"docs_budget": 20_001}, "DREAM_GRAPH_DOCS_BUDGET_CAP"),
        ({"docs_budget": 0}, "docs_budget 0 (all docs) is over this server's cap"),
        ({"fallbacks": 5}, "fallbacks must be a list of strings"),
        ({"evaluators": 5}, "evaluators must be a list of strings"),
        ({"max_tokens": "many"}, "max_tokens must be a whole number"),
        ({"max_cycles": True}, "max_cycles must be a whole number"),
        ({"temperature": "1e999"}, "temperature must be a finite number"),
    ],
)
async def test_run_options_out_of_range_or_of_the_wrong_type_are_422_naming_the_bound(options, needle):
    async with client_for(create_app(graphs=one_pipeline())) as client:
        generate = await client.post("/generate", json={"prompt": PROMPT, "options": options})
        invoke = await client.post("/dream/invoke", json={"input": {"prompt": PROMPT}, "config": {"configurable": options}})
    assert generate.status_code == 422 and needle in generate.json()["detail"], generate.text
    if options != {"max_cycles": True}:  # LangServe's typed options schema (pydantic, lax) reads true as 1
        assert invoke.status_code == 422, invoke.text


async def test_options_at_the_caps_run_and_a_lowered_cap_is_enforced(monkeypatch):
    at_caps = {"max_tokens": 8192, "max_cycles": 10, "temperature": 2, "timeout": 120, "max_retries": 5}
    async with client_for(create_app(graphs=one_pipeline())) as client:
        ok = await client.post("/generate", json={"prompt": PROMPT, "options": {**at_caps, "evaluators": ["syntax"]}})
        hashed = await client.post(
            f"/dream/c/{config_hash({**QUICK, 'max_tokens': 8192})}/invoke", json={"input": {"prompt": PROMPT}}
        )
    assert ok.status_code == 200 and ok.json()["status"] == "passed", ok.text
    assert hashed.status_code == 200, hashed.text

    setenv(monkeypatch, DREAM_GRAPH_MAX_CYCLES_CAP="2", DREAM_GRAPH_MAX_CYCLES="2")
    async with client_for(create_app(graphs=one_pipeline())) as client:
        lower = await client.post("/generate", json={"prompt": PROMPT, "options": QUICK})
        higher = await client.post("/generate", json={"prompt": PROMPT, "options": {"max_cycles": 3}})
        hashed = await client.post(f"/dream/c/{config_hash({'max_cycles': 3})}/invoke", json={"input": {"prompt": PROMPT}})
    assert lower.status_code == 200
    assert higher.status_code == 422 and "at most 2 on this server" in higher.json()["detail"]
    assert hashed.status_code == 422 and "max_cycles" in hashed.text


# ---------------------------------------------------------------- bad input is a 4xx, never a 500


def nested(depth: int) -> str:
    """A JSON value `depth` levels deep, as a string."""
    return "[" * depth + "]" * depth


@pytest.mark.parametrize(
    ("path", "raw", "needle"),
    [
        ("/generate", b'{"prompt": "a node\\u0000 that counts"}', "contains a NUL character"),
        ("/generate", b'{"prompt": "a node \\ud800 that counts"}', "contains a lone surrogate (\\\\ud800)"),
        ("/dream/invoke", b'{"input": {"prompt": "x\\udfff"}}', "lone surrogate (\\\\udfff)"),
        ("/dream/invoke", b'{"input": {"prompt": "x\\u0000"}}', "NUL character"),
        ("/generate", b'{"prompt": "x", "options": {"\\u0000": 1}}', "a key in body.options"),
        ("/generate", b'{"prompt": "caf\xe9"}', "body is not UTF-8 (byte 0xe9"),
        ("/dream/invoke", b'{"input": {"prompt": "\xff"}}', "body is not UTF-8"),
        ("/generate", b'{"prompt": ', "body is not valid JSON"),
        ("/dream/invoke", b"{input: 1}", "body is not valid JSON"),
        ("/generate", b'{"prompt": "x", "options": {"temperature": NaN}}', "NaN is not a JSON value"),
        ("/generate", b'{"prompt": "x", "options": {"max_tokens": ' + b"9" * 5000 + b"}}", "body is not valid JSON"),
        ("/generate", ('{"prompt": "x", "options": {"a": ' + nested(63) + "}}").encode(), "nested deeper than 64"),
        ("/dream/batch", ('{"inputs": ' + nested(100_000) + "}").encode(), "nested too deeply"),
    ],
)
async def test_bad_bodies_are_422_naming_the_problem(path, raw, needle):
    async with client_for(create_app(graphs=one_pipeline())) as client:
        response = await client.post(path, content=raw, headers={"Content-Type": "application/json"})
    assert response.status_code == 422, response.text
    assert needle in json.dumps(response.json()["detail"]), response.text
    assert response.json()["request_id"]


async def test_nesting_exactly_at_the_limit_is_not_refused_for_its_depth():
    at_limit = ('{"prompt": "x", "options": {"a": ' + nested(62) + "}}").encode()  # 64 levels in all
    async with client_for(create_app(graphs=one_pipeline())) as client:
        response = await client.post("/generate", content=at_limit, headers={"Content-Type": "application/json"})
    assert response.status_code == 422
    assert "unknown option(s) a" in response.text and "nested" not in response.text
