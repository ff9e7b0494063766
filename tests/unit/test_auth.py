"""The API key and login cookie primitives, at the inputs HTTP never sends but a caller of the functions could."""

import asyncio
import hashlib
import hmac
import inspect

import pytest
from starlette.requests import Request

from dream_graph.service.auth import SESSION_COOKIE, caller_authorized, key_matches, session_cookie, session_token


@pytest.mark.parametrize("presented", ["\udcff", "s3cret\udc80", "sé", "", "s3cre", "s3cret "])
def test_a_wrong_key_of_any_text_is_refused_without_an_error(presented):
    assert key_matches(presented, "s3cret") is False


def test_the_right_key_matches_and_a_missing_one_does_not():
    assert key_matches("s3cret", "s3cret") is True
    assert key_matches(None, "s3cret") is False


def test_the_login_token_is_stable_across_versions_and_is_not_the_key():
    """A cookie issued before an upgrade stays valid after it: the derivation is pinned."""
    expected = hmac.new(b"s3cret", b"dream_graph login session", hashlib.sha256).hexdigest()
    assert session_token("s3cret") == expected
    assert session_token("s3cret") != session_token("s3cret2") and "s3cret" not in session_token("s3cret")


@pytest.mark.parametrize(
    ("header", "value"),
    [
        (f"{SESSION_COOKIE}=abc", "abc"),
        (f"theme=dark; {SESSION_COOKIE}=abc; lang=en", "abc"),
        ("theme=dark", None),
        ("", None),
        ('bad"cookie', None),
    ],
)
def test_the_session_cookie_is_read_from_the_cookie_header(header, value):
    assert session_cookie({"cookie": header}) == value
    assert session_cookie({}) is None


def test_the_login_cookie_admits_its_holder_and_nobody_else(monkeypatch):
    from dream_graph.settings import get_settings

    monkeypatch.setenv("DREAM_GRAPH_API_KEY", "s3cret")
    get_settings.cache_clear()
    good = f"{SESSION_COOKIE}={session_token('s3cret')}"
    assert caller_authorized({"cookie": good}) is True
    assert caller_authorized({"cookie": f"{SESSION_COOKIE}={session_token('other')}"}) is False
    assert caller_authorized({"cookie": f"{SESSION_COOKIE}=s3cret"}) is False, "the key itself is not a session"
    assert caller_authorized({"x-api-key": "s3cret"}) is True
    assert caller_authorized({}) is False


def _request(method: str, headers: dict[str, str], path: str = "/dream/playground/") -> Request:
    raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
    return Request({"type": "http", "method": method, "path": path, "headers": raw, "query_string": b""})


@pytest.mark.parametrize(
    ("method", "headers", "status"),
    [
        ("GET", {"accept": "text/html,application/xhtml+xml"}, 303),  # a person in a browser: to the login form
        ("GET", {"accept": "application/json"}, 401),
        ("GET", {}, 401),  # no Accept header at all
        ("POST", {"accept": "text/html"}, 401),  # a form post is not a page visit
        ("HEAD", {"accept": "text/html"}, 401),
    ],
)
def test_a_caller_without_the_key_is_sent_to_log_in_only_from_a_browser_page(monkeypatch, method, headers, status):
    from fastapi import HTTPException

    from dream_graph.service.auth import UNAUTHORIZED, require_api_key
    from dream_graph.settings import get_settings

    monkeypatch.setenv("DREAM_GRAPH_API_KEY", "s3cret")
    get_settings.cache_clear()
    with pytest.raises(HTTPException) as refused:
        asyncio.run(require_api_key(_request(method, headers, "/dream/chat playground/")))
    assert refused.value.status_code == status
    if status == 303:
        assert refused.value.headers == {"Location": "/login?next=/dream/chat%20playground/"}
        assert refused.value.detail == "log in first"
    else:
        assert refused.value.detail == UNAUTHORIZED and not refused.value.headers
    assert asyncio.run(require_api_key(_request(method, {**headers, "x-api-key": "s3cret"}))) is None


def test_without_a_configured_key_everyone_is_let_in():
    from dream_graph.service.auth import require_api_key

    assert caller_authorized({}) is True
    assert asyncio.run(require_api_key(_request("GET", {"accept": "text/html"}))) is None


def test_the_key_check_runs_on_the_event_loop_not_in_a_worker_thread():
    """FastAPI sends a plain `def` dependency to its thread pool: a hop per request for microseconds of work."""
    from dream_graph.service.auth import require_api_key

    assert inspect.iscoroutinefunction(require_api_key)
