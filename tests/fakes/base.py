"""The part both fake LLM servers share: scripted replies, request recording, and a uvicorn server on a free port."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import threading
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

MAX_HANG_SECONDS = 60.0


@dataclass(frozen=True)
class Reply:
    """One scripted answer: text (JSON or SSE, as the client asked), or an HTTP error, or no answer at all."""

    text: str = ""
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    message: str = ""
    delay: float = 0.0
    chunk_delay: float = 0.0
    pause_after: int | None = None
    hang: bool = False

    @classmethod
    def ok(cls, text: str, *, delay: float = 0.0, chunk_delay: float = 0.0, pause_after: int | None = None) -> Reply:
        """A normal reply; streamed requests get it in word-sized chunks (`pause_after` chunks, then wait)."""
        return cls(text=text, delay=delay, chunk_delay=chunk_delay, pause_after=pause_after)

    @classmethod
    def error(cls, status: int, message: str | None = None, *, retry_after: float | None = None) -> Reply:
        """An HTTP error in the provider's own error format, with `Retry-After` when given."""
        headers = {"Retry-After": f"{retry_after:g}"} if retry_after is not None else {}
        return cls(status=status, message=message or f"fake server error {status}", headers=headers)

    @classmethod
    def hanging(cls) -> Reply:
        """Accept the request and never answer (until the server is reset or stopped): the client must time out."""
        return cls(hang=True)


@dataclass(frozen=True)
class RecordedRequest:
    """What a client sent: path, headers (lower-case names), parsed JSON body, and arrival time (monotonic)."""

    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    at: float


def words(text: str) -> list[str]:
    """Word-sized stream chunks that join back to exactly `text`."""
    return [piece for piece in re.findall(r"\s*\S+\s*|\s+", text) if piece]


def approx_tokens(value: Any) -> int:
    """A stable token count for usage blocks: whitespace words in every string of the request."""
    if isinstance(value, str):
        return len(value.split())
    if isinstance(value, dict):
        return sum(approx_tokens(v) for v in value.values())
    if isinstance(value, list):
        return sum(approx_tokens(v) for v in value)
    return 0


class FakeServer:
    """A provider's chat endpoint served by uvicorn on 127.0.0.1 in a background thread; subclasses add routes."""

    provider = "fake"
    keep_alive_s = 5
    """How long an idle client connection stays open (uvicorn's default)."""
    record_requests = True
    """Keep every request (`requests`, `bodies`); a load test turns it off, or the heap grows with every request."""

    def __init__(self, default: Reply | None = None, *, latency: float = 0.0) -> None:
        self.default = default or Reply.ok(CLEAN_REPLY)
        self.latency = latency
        self.requests: list[RecordedRequest] = []
        self.finished_streams = 0
        self._initial_default = self.default
        self._queue: deque[Reply] = deque()
        self._lock = threading.Lock()
        self._release = threading.Event()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0
        self.app = FastAPI()
        self.add_routes(self.app)

    # -- the API tests use -------------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        """The server root, e.g. http://127.0.0.1:54321."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        """What the provider's client takes as its base URL."""
        return self.url

    def script(self, *replies: Reply) -> None:
        """Queue replies; each request takes the next one, and `default` once the queue is empty."""
        with self._lock:
            self._queue.extend(replies)

    @property
    def bodies(self) -> list[dict[str, Any]]:
        """The JSON body of every request so far, in order."""
        with self._lock:
            return [r.body for r in self.requests]

    def release(self) -> None:
        """Let hanging requests and paused streams go on."""
        self._release.set()

    def reset(self) -> None:
        """Forget the script, the recorded requests and any changed default; free anything hanging."""
        self.release()
        with self._lock:
            self._queue.clear()
            self.requests.clear()
            self.finished_streams = 0
            self.default = self._initial_default
            self.latency = 0.0
        self._release = threading.Event()

    def start(self) -> FakeServer:
        """Bind a free port and serve until `stop`."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app, log_level="warning", timeout_graceful_shutdown=1, lifespan="off", timeout_keep_alive=self.keep_alive_s
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]}, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError(f"fake {self.provider} server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        """Shut the server down and wait for its thread."""
        self.release()
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- for subclasses ------------------------------------------------------------------------------------------
    def add_routes(self, app: FastAPI) -> None:
        """Register the provider's endpoints (each calls `handle`)."""
        raise NotImplementedError

    def error_body(self, reply: Reply) -> dict[str, Any]:
        """The provider's JSON error format."""
        raise NotImplementedError

    def json_body(self, request: dict[str, Any], text: str) -> dict[str, Any]:
        """The provider's non-streamed reply."""
        raise NotImplementedError

    def sse_events(self, request: dict[str, Any], text: str) -> tuple[list[str], list[str], list[str]]:
        """The provider's stream as (head events, one event per chunk of `text`, tail events), SSE-formatted."""
        raise NotImplementedError

    def wants_stream(self, body: dict[str, Any]) -> bool:
        return bool(body.get("stream"))

    async def handle(self, request: Request) -> Response:
        """Record the request, take the next reply, and answer as JSON or SSE, late or never, as scripted."""
        raw = await request.body()
        try:
            body = json.loads(raw or b"{}")
        except json.JSONDecodeError:
            return JSONResponse(self.error_body(Reply(status=400, message="body is not JSON")), status_code=400)
        release = self._release
        with self._lock:
            if self.record_requests:
                self.requests.append(
                    RecordedRequest(
                        request.url.path, {k.lower(): v for k, v in request.headers.items()}, body, time.monotonic()
                    )
                )
            reply = self._queue.popleft() if self._queue else self.default
        if reply.hang:
            await _wait(release, MAX_HANG_SECONDS)
            return JSONResponse(self.error_body(Reply(status=504, message="released")), status_code=504)
        if self.latency or reply.delay:
            await asyncio.sleep(self.latency + reply.delay)
        if reply.status >= 400:
            return JSONResponse(self.error_body(reply), status_code=reply.status, headers=reply.headers)
        if not self.wants_stream(body):
            return JSONResponse(self.json_body(body, reply.text), headers=reply.headers)
        head, chunks, tail = self.sse_events(body, reply.text)
        return StreamingResponse(
            self._stream(head, chunks, tail, reply, release),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", **reply.headers},
        )

    async def _stream(
        self, head: list[str], chunks: list[str], tail: list[str], reply: Reply, release: threading.Event
    ) -> AsyncIterator[bytes]:
        for event in head:
            yield event.encode()
        for i, event in enumerate(chunks):
            if reply.pause_after is not None and i == reply.pause_after:
                await _wait(release, MAX_HANG_SECONDS)
            if reply.chunk_delay:
                await asyncio.sleep(reply.chunk_delay)
            yield event.encode()
        for event in tail:
            yield event.encode()
        with self._lock:
            self.finished_streams += 1


async def _wait(event: threading.Event, limit: float) -> None:
    """Wait for a thread-side event without blocking the server's loop."""
    deadline = time.monotonic() + limit
    while not event.is_set() and time.monotonic() < deadline:
        await asyncio.sleep(0.01)


def sse(data: Any, event: str | None = None) -> str:
    """One server-sent event."""
    payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    return (f"event: {event}\n" if event else "") + f"data: {payload}\n\n"


CLEAN_REPLY = '''Here is the node.

```python
from typing import Optional

from aineko import AbstractNode


class WordCounter(AbstractNode):
    """Counts the words in each message."""

    def _execute(self, params: Optional[dict] = None) -> Optional[bool]:
        message = self.inputs["input"].next()
        if message is None:
            return None
        self.outputs["output"].write(len(str(message["message"]).split()))
        return None
```

```yaml
pipeline:
  name: word_count
  nodes:
    word_counter:
      class: generated.WordCounter
      inputs:
        - input
      outputs:
        - output
  datasets:
    input:
      type: aineko.datasets.kafka.KafkaDataset
    output:
      type: aineko.datasets.kafka.KafkaDataset
```
'''
"""A reply that passes the syntax and security checks."""

SYNTAX_ERROR_REPLY = CLEAN_REPLY.replace("def _execute(self, params: Optional[dict] = None)", "def _execute(self, params")
"""A reply whose python block does not parse."""

BANDIT_REPLY = CLEAN_REPLY.replace(
    "from typing import Optional\n", "import subprocess\nfrom typing import Optional\n"
).replace('        return None\n```', '        subprocess.call(str(message), shell=True)\n        return None\n```')
"""A reply that parses but has Bandit findings (subprocess with shell=True)."""
