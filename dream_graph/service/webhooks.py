"""Signed webhooks: the HMAC-SHA256 check shared by GitHub and Slack, and GitHub's X-Hub-Signature-256."""

from __future__ import annotations

import hashlib
import hmac
import time
from collections import OrderedDict
from collections.abc import Iterable

GITHUB_REPLAY_WINDOW_SECONDS = 24 * 3600


class SignatureError(Exception):
    """A request's signature is missing, stale or wrong; the message says which (HTTP 401)."""


def hmac_sha256_hex(secret: str, message: bytes) -> str:
    """Both GitHub and Slack sign with a hex HMAC-SHA256 of bytes only the sender and we can compute."""
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


def check_signature(secret: str, message: bytes, signature: str | None, *, prefix: str, header: str) -> None:
    """Constant-time comparison, so the response time tells an attacker nothing about the right signature."""
    if not signature:
        raise SignatureError(f"missing {header} header: the request is not signed")
    expected = prefix + hmac_sha256_hex(secret, message)
    if not hmac.compare_digest(expected.encode("utf-8"), signature.strip().encode("utf-8")):
        raise SignatureError(f"{header} does not match the request body; check that the shared secret is the same")


def verify_github_signature(secret: str, body: bytes, signature: str | None) -> None:
    """GitHub signs the raw body: `X-Hub-Signature-256: sha256=<hex>`."""
    check_signature(secret, body, signature, prefix="sha256=", header="X-Hub-Signature-256")


class ReplayCache:
    """Keys of signed requests seen within a window: a replayed delivery is answered once, not run again.

    Bounded (oldest forgotten first) so a flood of valid deliveries cannot grow memory; per process."""

    def __init__(self, window: float, max_entries: int = 10_000) -> None:
        self.window, self.max_entries = window, max_entries
        self._seen: OrderedDict[str, float] = OrderedDict()

    def seen_before(self, keys: Iterable[str], *, now: float | None = None) -> bool:
        """True when any key was recorded within the window; otherwise records them all and answers False."""
        now = time.monotonic() if now is None else now
        while self._seen and next(iter(self._seen.values())) <= now:
            self._seen.popitem(last=False)
        keys = [k for k in keys if k]
        if any(k in self._seen for k in keys):
            return True
        for key in keys:
            self._seen[key] = now + self.window
            if len(self._seen) > self.max_entries:
                self._seen.popitem(last=False)
        return False


def body_digest(body: bytes) -> str:
    """A fixed-size stand-in for a body in the replay cache."""
    return hashlib.sha256(body).hexdigest()
