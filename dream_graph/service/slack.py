"""Slack slash commands: v0 request signatures, and posting a finished run back to the command's response_url."""

from __future__ import annotations

import logging
import time
from typing import Any

import httpx

from dream_graph.service.webhooks import SignatureError, check_signature

log = logging.getLogger(__name__)

MAX_AGE_SECONDS = 5 * 60
SLACK_TEXT_LIMIT = 3000


def verify_slack_signature(
    secret: str, body: bytes, timestamp: str | None, signature: str | None, *, now: float | None = None
) -> None:
    """Slack's v0 scheme: HMAC of `v0:<timestamp>:<body>`; an old timestamp means a replayed request."""
    if not timestamp:
        raise SignatureError("missing X-Slack-Request-Timestamp header: the request is not signed")
    try:
        sent = int(timestamp)
    except ValueError:
        raise SignatureError(f"X-Slack-Request-Timestamp {timestamp[:20]!r} is not a Unix time") from None
    age = (time.time() if now is None else now) - sent
    if abs(age) > MAX_AGE_SECONDS:
        raise SignatureError(f"X-Slack-Request-Timestamp is {int(age)} s away from now (limit {MAX_AGE_SECONDS} s)")
    message = b"v0:" + timestamp.encode("ascii") + b":" + body
    check_signature(secret, message, signature, prefix="v0=", header="X-Slack-Signature")


def _clip(text: str, limit: int = SLACK_TEXT_LIMIT) -> str:
    return text if len(text) <= limit else text[: limit - 20] + "\n… (truncated)"


def format_result(prompt: str, result: dict[str, Any]) -> dict[str, Any]:
    """One Slack message: the verdict first, then the code and config as code blocks."""
    status = result.get("status")
    head = f"*{status}* after {result.get('cycles')} cycle(s) with `{result.get('model')}` for: {_clip(prompt, 200)}"
    parts = [head]
    if result.get("error"):
        parts.append(f"error: {result['error']}")
    if result.get("code"):
        parts.append(f"```{_clip(result['code'])}```")
    if result.get("config_yaml"):
        parts.append(f"```{_clip(result['config_yaml'])}```")
    if status != "passed":
        failed = [e for e in result.get("evaluations") or [] if not e.get("passed") and e.get("cycle") == result.get("cycles")]
        for ev in failed:
            findings = "; ".join(f"[{f['rule']}] {f['message']}" for f in ev.get("findings") or [])
            parts.append(f"{ev['evaluator']} failed: {_clip(findings, 500)}")
    return {"response_type": "ephemeral", "replace_original": False, "text": "\n".join(parts)}


def error_message(text: str) -> dict[str, Any]:
    """A message only the person who typed the command sees."""
    return {"response_type": "ephemeral", "text": text}


async def post_response(response_url: str, message: dict[str, Any], *, timeout: float = 10.0) -> bool:
    """Deliver a delayed answer; a failure is logged, since nobody is waiting on the HTTP request any more."""
    try:
        async with httpx.AsyncClient(timeout=timeout) as client:
            reply = await client.post(response_url, json=message)
        reply.raise_for_status()
    except httpx.HTTPError as exc:
        log.error("posting the Slack result to response_url failed: %s", exc)
        return False
    return True
