"""What every request passes before the app sees it: the API key, a body cap counted as bytes arrive, JSON that the
app can parse safely, and one run limiter for every route that runs a graph (batch inputs counted one by one)."""

from __future__ import annotations

import asyncio
import json
import re
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import quote

from asgi_correlation_id import correlation_id
from starlette.datastructures import Headers
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dream_graph.service.auth import UNAUTHORIZED, caller_authorized
from dream_graph.settings import get_settings

RETRY_AFTER_SECONDS = 5
# POST routes that run the graph: /generate and every LangServe run endpoint under any prefix (/<name>/,
# /<name>/chat/, the /c/<config>/ forms): matched by the last segment, so a new mount cannot slip past the limiter.
RUN_PATH = re.compile(r"^/(?:generate|(?:[^/]+/)+(invoke|batch|stream|stream_log|stream_events))/?$")
# Signed by their sender instead of the API key; their handlers check the signature on the capped body.
SIGNED_PATHS = frozenset({"/slack/commands", "/github/webhook"})
LOGIN_PATH = "/login"  # takes the key in its form (dream_graph.service.login), so it cannot require it first
# GET pages that describe every endpoint: behind the key like the endpoints themselves.
GUARDED_GET_PATHS = frozenset({"/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"})
INLINE_PARSE_BYTES = 64_000  # larger bodies are parsed in a thread, off the event loop
_BAD_TEXT = re.compile("[\x00\ud800-\udfff]")


# ---------------------------------------------------------------- the run limiter


class Busy(Exception):
    """Every run slot and every queue place is taken."""


class TooManyInputs(Exception):
    """A batch larger than the number of runs this server ever runs at once."""


class RunLimiter:
    """At most `limit` graph runs at once and `queue` more waiting; beyond that callers are told to retry.

    A request for n runs (a batch) takes n places and waits for n slots together, first come first served, so two
    batches can never each hold half of what they need."""

    def __init__(self, limit: int, queue: int) -> None:
        self.limit, self.queue = limit, queue
        self._admitted = 0
        self._running = 0
        self._waiters: deque[tuple[int, asyncio.Future[None]]] = deque()

    @property
    def admitted(self) -> int:
        """Runs running or waiting now."""
        return self._admitted

    @property
    def running_now(self) -> int:
        """Runs holding a slot now."""
        return self._running

    def admit(self, runs: int = 1) -> None:
        """Take `runs` places (running or queued) now, or raise; pair with `running(runs, admitted=True)`."""
        if runs > self.limit:
            raise TooManyInputs(
                f"a batch of {runs} inputs is more than the {self.limit} runs this server runs at once "
                f"(DREAM_GRAPH_MAX_CONCURRENT_RUNS); send at most {self.limit} inputs per batch"
            )
        if self._admitted + runs > self.limit + self.queue:
            raise Busy(f"{self.limit} runs are in progress and {self.queue} more are queued; retry later")
        self._admitted += runs

    @asynccontextmanager
    async def running(self, runs: int = 1, *, admitted: bool = False) -> AsyncIterator[None]:
        """Wait for `runs` slots; places and slots are given back on exit, even on error or cancellation."""
        if not admitted:
            self.admit(runs)
        try:
            await self._acquire(runs)
            try:
                yield
            finally:
                self._release(runs)
        finally:
            self._admitted -= runs

    async def _acquire(self, runs: int) -> None:
        """Slots in arrival order; a cancelled waiter leaves the line without taking or leaking slots."""
        if not self._waiters and self._running + runs <= self.limit:
            self._running += runs
            return
        granted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((runs, granted))
        try:
            await granted
        except asyncio.CancelledError:
            if granted.done() and not granted.cancelled():
                self._release(runs)  # the slots came just as the waiter was cancelled: pass them on
            else:
                try:
                    self._waiters.remove((runs, granted))
                except ValueError:
                    pass
                self._wake()
            raise

    def _release(self, runs: int) -> None:
        self._running -= runs
        self._wake()

    def _wake(self) -> None:
        """Hand free slots to the waiters at the head of the line, in order."""
        while self._waiters:
            runs, granted = self._waiters[0]
            if granted.done():
                self._waiters.popleft()
                continue
            if self._running + runs > self.limit:
                return
            self._waiters.popleft()
            self._running += runs
            granted.set_result(None)


# ---------------------------------------------------------------- body checks


class BodyProblem(Exception):
    """A request body the app must not try to use; the message says what is wrong and how to fix it."""


def text_problem(value: str, where: str) -> str | None:
    """NUL bytes and lone surrogates cannot be stored (PostgreSQL, SQLite) or sent on: name the first one found."""
    bad = _BAD_TEXT.search(value)
    if bad is None:
        return None
    char = bad.group()
    what = "a NUL character (\\u0000)" if char == "\x00" else f"a lone surrogate (\\u{ord(char):04x})"
    return f"{where} contains {what} at character {bad.start()}; send valid Unicode text without it"


def _reject_constant(name: str) -> Any:
    raise BodyProblem(f"body is not valid JSON: {name} is not a JSON value")


def check_json(body: bytes, max_depth: int) -> Any:
    """Parse a JSON body with every limit the app's own parsers lack: UTF-8, depth, NUL and surrogates in strings."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BodyProblem(f"body is not UTF-8 (byte {exc.object[exc.start]:#04x} at {exc.start}); send UTF-8 JSON") from None
    try:
        value = json.loads(text, parse_constant=_reject_constant)
    except RecursionError:
        raise BodyProblem(f"body is nested too deeply; the limit is {max_depth} levels (DREAM_GRAPH_MAX_JSON_DEPTH)") from None
    except json.JSONDecodeError as exc:
        raise BodyProblem(f"body is not valid JSON: {exc}") from None
    except ValueError as exc:  # e.g. an integer with more digits than Python converts
        raise BodyProblem(f"body is not valid JSON: {str(exc)[:200]}") from None
    _walk(value, max_depth)
    return value


def _walk(value: Any, max_depth: int) -> None:
    """Depth and text checks without recursion, so the check itself cannot overflow the stack."""
    stack: list[tuple[Any, int, str]] = [(value, 1, "body")]
    while stack:
        item, depth, where = stack.pop()
        if isinstance(item, str):
            problem = text_problem(item, where)
            if problem:
                raise BodyProblem(problem)
            continue
        if not isinstance(item, (dict, list)):
            continue
        if depth > max_depth:
            raise BodyProblem(f"body is nested deeper than {max_depth} levels (DREAM_GRAPH_MAX_JSON_DEPTH)")
        if isinstance(item, dict):
            for key, child in item.items():
                problem = text_problem(key, f"a key in {where}")
                if problem:
                    raise BodyProblem(problem)
                stack.append((child, depth + 1, f"{where}.{key[:40]}"))
        else:
            stack.extend((child, depth + 1, f"{where}[{i}]") for i, child in enumerate(item))


async def read_capped(receive: Receive, cap: int) -> bytes | None:
    """The body, read as it arrives and abandoned at `cap` + 1 bytes (None); the rest is never read."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ConnectionAbortedError("client went away while sending the body")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > cap:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def error_response(status: int, detail: Any, headers: dict[str, str] | None = None) -> JSONResponse:
    """The service's one error shape, `{detail, request_id}`."""
    return JSONResponse({"detail": detail, "request_id": correlation_id.get()}, status_code=status, headers=headers)


def _replay(body: bytes, receive: Receive) -> Receive:
    """Hand the app the body already read, then the real channel (so disconnects still reach streams)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _batch_size(parsed: Any) -> int:
    """How many runs a LangServe batch asks for (anything unparseable is one request for the app to refuse)."""
    inputs = parsed.get("inputs") if isinstance(parsed, dict) else None
    return max(len(inputs), 1) if isinstance(inputs, list) else 1


def _refusal(scope: Scope, path: str) -> Response:
    """401 for API clients; a person's browser asking for a docs page is sent to the login form instead."""
    headers = Headers(scope=scope)
    if scope["method"] == "GET" and "text/html" in headers.get("accept", ""):
        return RedirectResponse(f"{LOGIN_PATH}?next={quote(path)}", status_code=303)
    return error_response(401, UNAUTHORIZED)


class RequestGate:
    """ASGI middleware: key first, then the body (capped while it streams), then JSON checks, then run admission."""

    def __init__(self, app: ASGIApp, limiter: RunLimiter) -> None:
        self.app, self.limiter = app, limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path, method = scope["path"], scope["method"]
        guarded = (method == "POST" and path not in SIGNED_PATHS and path != LOGIN_PATH) or path in GUARDED_GET_PATHS
        if guarded and not caller_authorized(Headers(scope=scope)):
            await _refusal(scope, path)(scope, receive, send)
            return
        if method != "POST":
            await self.app(scope, receive, send)
            return
        response, body, runs = await self._read(scope, receive, path)
        if response is not None:
            await response(scope, receive, send)
            return
        replay = _replay(body, receive)
        if runs == 0:
            await self.app(scope, replay, send)
            return
        try:
            self.limiter.admit(runs)
        except TooManyInputs as exc:
            await error_response(422, str(exc))(scope, receive, send)
            return
        except Busy as exc:  # Retry-After, so well-behaved clients back off instead of hammering the queue
            await error_response(503, str(exc), {"Retry-After": str(RETRY_AFTER_SECONDS)})(scope, receive, send)
            return
        async with self.limiter.running(runs, admitted=True):
            await self.app(scope, replay, send)

    async def _read(self, scope: Scope, receive: Receive, path: str) -> tuple[JSONResponse | None, bytes, int]:
        """(an error response or None, the body, how many runs the request asks for)."""
        settings = get_settings()
        cap = settings.max_body_bytes
        too_big = error_response(413, f"request body is over {cap} bytes; the limit is {cap} (DREAM_GRAPH_MAX_BODY_BYTES)")
        length = Headers(scope=scope).get("content-length", "")
        if length.isdigit() and int(length) > cap:
            return too_big, b"", 0
        try:
            body = await read_capped(receive, cap)
        except ConnectionAbortedError:
            return error_response(400, "the client disconnected before sending the whole body"), b"", 0
        if body is None:
            return too_big, b"", 0
        run = RUN_PATH.match(path)
        if path in SIGNED_PATHS or path == LOGIN_PATH or not body:  # a form, not JSON
            return None, body, 1 if run else 0
        try:
            if len(body) > INLINE_PARSE_BYTES:
                parsed = await asyncio.to_thread(check_json, body, settings.max_json_depth)
            else:
                parsed = check_json(body, settings.max_json_depth)
        except BodyProblem as exc:
            return error_response(422, str(exc)), b"", 0
        if run is None:
            return None, body, 0
        return None, body, _batch_size(parsed) if run.group(1) == "batch" else 1
