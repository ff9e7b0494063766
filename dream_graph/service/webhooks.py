"""Signed webhooks: the HMAC-SHA256 check shared by GitHub and Slack, and GitHub's X-Hub-Signature-256."""

from __future__ import annotations

import hashlib
import hmac


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
