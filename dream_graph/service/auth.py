"""The API key guard shared by every protected endpoint, the docs pages and the request gate."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from http.cookies import CookieError, SimpleCookie
from urllib.parse import quote

from fastapi import HTTPException, Request, Security
from fastapi.security import APIKeyHeader

from dream_graph.settings import get_settings

API_KEY_HEADER = "x-api-key"
UNAUTHORIZED = "missing or wrong X-API-Key header (in a browser, log in at /login)"
SESSION_COOKIE = "dream_graph_session"


def key_matches(presented: str | None, expected: str) -> bool:
    """Constant-time over the whole key, so timing says nothing about how much of a guess was right."""
    if presented is None:
        return False
    return hmac.compare_digest(presented.encode("utf-8", "surrogateescape"), expected.encode("utf-8"))


def session_token(key: str) -> str:
    """What the login cookie holds: derived from the key, so the cookie never carries the key itself."""
    return hmac.new(key.encode("utf-8"), b"dream_graph login session", hashlib.sha256).hexdigest()


def session_cookie(headers: Mapping[str, str]) -> str | None:
    """The login cookie's value, if the request carries one."""
    try:
        morsel = SimpleCookie(headers.get("cookie") or "").get(SESSION_COOKIE)
    except CookieError:
        return None
    return morsel.value if morsel is not None else None


def caller_authorized(headers: Mapping[str, str]) -> bool:
    """The one place that decides whether a caller holds the key: the X-API-Key header, or the /login cookie."""
    expected = get_settings().api_key
    if expected is None:
        return True
    key = expected.get_secret_value()
    return key_matches(headers.get(API_KEY_HEADER), key) or key_matches(session_cookie(headers), session_token(key))


_scheme = APIKeyHeader(name="X-API-Key", auto_error=False, description="Required when DREAM_GRAPH_API_KEY is set.")


async def require_api_key(request: Request, _declared: str | None = Security(_scheme)) -> None:
    """When DREAM_GRAPH_API_KEY is set, only callers presenting it (compared in constant time) get in; the
    security scheme is declared so the docs page offers an Authorize button. Async, though it never waits: FastAPI
    runs a plain `def` dependency in a worker thread, a hop per request for a few microseconds of work."""
    if not caller_authorized(request.headers):
        if request.method == "GET" and "text/html" in request.headers.get("accept", ""):  # a person: to the login form
            raise HTTPException(303, "log in first", headers={"Location": f"/login?next={quote(request.url.path)}"})
        raise HTTPException(401, UNAUTHORIZED)
