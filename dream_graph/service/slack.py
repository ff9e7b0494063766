"""Slack slash commands: v0 request signatures, and posting a finished run back to the command's response_url."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Sequence
from typing import Any

import httpx

from dream_graph.service.webhooks import ReplayCache, SignatureError, body_digest, check_signature

log = logging.getLogger(__name__)

MAX_AGE_SECONDS = 5 * 60
SLACK_TEXT_LIMIT = 3000
_UNIX_TIME = re.compile(r"[0-9]{1,12}")


def verify_slack_signature(
    secret: str, body: bytes, timestamp: str | None, signature: str | None, *, now: float | None = None
) -> None:
    """Slack's v0 scheme: HMAC of `v0:<timestamp>:<body>`; an old timestamp means a replayed request."""
    if not timestamp:
        raise SignatureError("missing X-Slack-Request-Timestamp header: the request is not signed")
    if not _UNIX_TIME.fullmatch(timestamp):  # digits only, and few enough that no arithmetic can overflow
        raise SignatureError(f"X-Slack-Request-Timestamp {timestamp[:20]!r} is not a Unix time (1 to 12 digits)")
    age = (time.time() if now is None else now) - int(timestamp)
    if abs(age) > MAX_AGE_SECONDS:
        raise SignatureError(f"X-Slack-Request-Timestamp is {int(age)} s away from now (limit {MAX_AGE_SECONDS} s)")
    message = b"v0:" + timestamp.encode("ascii") + b":" + body
    check_signature(secret, message, signature, prefix="v0=", header="X-Slack-Signature")


def replay_cache() -> ReplayCache:
    """Signed requests are remembered for as long as their timestamp would be accepted (either side of now)."""
    return ReplayCache(2 * MAX_AGE_SECONDS + 1)


def replay_keys(timestamp: str | None, body: bytes) -> list[str]:
    """The signature covers timestamp and body, so the pair names one signed request."""
    return [f"slack:{timestamp}:{body_digest(body)}"]


def response_url_problem(url: str, prefixes: Sequence[str]) -> str | None:
    """Why the result may not be posted to `url` (None: it may), so a command cannot aim the service at any host."""
    allowed = [p for p in prefixes if p]
    if not url:
        return "the command has no response_url"
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError):
        return "the command's response_url is not a valid URL"
    for prefix in allowed:
        wanted = httpx.URL(prefix)
        same_origin = (parsed.scheme, parsed.host, parsed.port) == (wanted.scheme, wanted.host, wanted.port)
        if same_origin and not parsed.userinfo and url.startswith(prefix) and parsed.path.startswith(wanted.path):
            return None
    return (
        f"response_url must start with {' or '.join(allowed) or '(nothing is allowed)'}; "
        "widen DREAM_GRAPH_SLACK_RESPONSE_URL_PREFIXES to allow other hosts"
    )


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
