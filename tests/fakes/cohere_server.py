"""A fake Cohere v2 chat server (`POST /v2/chat`), JSON and SSE, as cohere 5.x / langchain-cohere 0.6 expect.

langchain-cohere 0.6's `ChatCohere` calls `client.v2.chat` and `client.v2.chat_stream` (cohere SDK 5.x), which POST
to `{base_url}/v2/chat` with `"stream": false|true`. The stream is SSE with the event type both in `event:` and in
the JSON's `type`: message-start, content-start, content-delta (one per chunk), content-end, message-end (with
`finish_reason` and `usage.billed_units`, which ChatCohere reads and needs). Errors are `{"id", "message"}` bodies.
"""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response

from tests.fakes.base import FakeServer, Reply, approx_tokens, sse, words


class FakeCohere(FakeServer):
    """Cohere's v2 chat wire format."""

    provider = "cohere"

    def add_routes(self, app: FastAPI) -> None:
        async def chat(request: Request) -> Response:
            return await self.handle(request)

        app.post("/v2/chat")(chat)

    def error_body(self, reply: Reply) -> dict[str, Any]:
        return {"id": str(uuid.uuid4()), "message": reply.message}

    def _usage(self, request: dict[str, Any], text: str) -> dict[str, Any]:
        prompt, completion = approx_tokens(request.get("messages")), len(text.split())
        return {
            "billed_units": {"input_tokens": prompt, "output_tokens": completion},
            "tokens": {"input_tokens": prompt + 7, "output_tokens": completion},
        }

    def json_body(self, request: dict[str, Any], text: str) -> dict[str, Any]:
        return {
            "id": str(uuid.uuid4()),
            "finish_reason": "COMPLETE",
            "message": {"role": "assistant", "content": [{"type": "text", "text": text}]},
            "usage": self._usage(request, text),
        }

    def sse_events(self, request: dict[str, Any], text: str) -> tuple[list[str], list[str], list[str]]:
        def event(kind: str, **data: Any) -> str:
            return sse({"type": kind, **data}, event=kind)

        head = [
            event(
                "message-start",
                id=str(uuid.uuid4()),
                delta={"message": {"role": "assistant", "content": [], "tool_plan": "", "tool_calls": [], "citations": []}},
            ),
            event("content-start", index=0, delta={"message": {"content": {"type": "text", "text": ""}}}),
        ]
        pieces = [event("content-delta", index=0, delta={"message": {"content": {"text": p}}}) for p in words(text)]
        tail = [
            event("content-end", index=0),
            event("message-end", delta={"finish_reason": "COMPLETE", "usage": self._usage(request, text)}),
        ]
        return head, pieces, tail
