"""A fake OpenAI chat-completions server (`POST /v1/chat/completions`), JSON and SSE, as the openai client expects."""

from __future__ import annotations

import time
import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response

from tests.fakes.base import FakeServer, Reply, approx_tokens, sse, words


class FakeOpenAI(FakeServer):
    """OpenAI's wire format: `chat.completion` objects, `chat.completion.chunk` SSE ending in `[DONE]`,
    a final usage chunk when `stream_options.include_usage` is set, and `{"error": {...}}` bodies."""

    provider = "openai"

    @property
    def base_url(self) -> str:
        """What `OPENAI_BASE_URL` / `ChatOpenAI(base_url=...)` takes."""
        return f"{self.url}/v1"

    def add_routes(self, app: FastAPI) -> None:
        async def chat_completions(request: Request) -> Response:
            return await self.handle(request)

        app.post("/v1/chat/completions")(chat_completions)

    def error_body(self, reply: Reply) -> dict[str, Any]:
        kind = {400: "invalid_request_error", 401: "authentication_error", 429: "rate_limit_exceeded"}
        return {
            "error": {
                "message": reply.message,
                "type": kind.get(reply.status, "server_error"),
                "param": None,
                "code": kind.get(reply.status),
            }
        }

    def _usage(self, request: dict[str, Any], text: str) -> dict[str, int]:
        prompt, completion = approx_tokens(request.get("messages")), len(text.split())
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}

    def json_body(self, request: dict[str, Any], text: str) -> dict[str, Any]:
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": request.get("model", "fake"),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text, "refusal": None},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": self._usage(request, text),
            "system_fingerprint": "fp_fake",
        }

    def sse_events(self, request: dict[str, Any], text: str) -> tuple[list[str], list[str], list[str]]:
        ident, created, model = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time()), request.get("model", "fake")
        include_usage = bool((request.get("stream_options") or {}).get("include_usage"))

        def chunk(choices: list[dict[str, Any]], usage: dict[str, int] | None = None) -> str:
            body: dict[str, Any] = {
                "id": ident,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "system_fingerprint": "fp_fake",
                "choices": choices,
            }
            if include_usage:
                body["usage"] = usage
            return sse(body)

        def delta(content: dict[str, Any], finish: str | None = None) -> str:
            return chunk([{"index": 0, "delta": content, "logprobs": None, "finish_reason": finish}])

        head = [delta({"role": "assistant", "content": "", "refusal": None})]
        pieces = [delta({"content": piece}) for piece in words(text)]
        tail = [delta({}, "stop")]
        if include_usage:
            tail.append(chunk([], self._usage(request, text)))  # OpenAI's usage chunk: no choices
        tail.append(sse("[DONE]"))
        return head, pieces, tail
