"""Log in from a browser: a browser cannot send `X-API-Key`, so `/login` takes the key once and sets a cookie.

The cookie holds an HMAC of the key (never the key itself), is HttpOnly (no script reads it) and SameSite=Strict
(no other site's page can make the browser send it); `require_api_key` accepts it alongside the header. API clients
keep using the header.
"""

from __future__ import annotations

import html
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from dream_graph.service.auth import SESSION_COOKIE, key_matches, session_token
from dream_graph.settings import get_settings

router = APIRouter(tags=["login"])

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>dream_graph: log in</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body {{ font-family: system-ui, sans-serif; max-width: 28rem; margin: 4rem auto; padding: 0 1rem; }}
label, input, button {{ display: block; width: 100%; font-size: 1rem; }}
input {{ padding: .5rem; margin: .3rem 0 1rem; box-sizing: border-box; }}
button {{ padding: .6rem; }}
.message {{ padding: .6rem; border-radius: .4rem; background: #fde8e8; color: #8a1c1c; }}
.note {{ color: #555; font-size: .9rem; }}
</style></head>
<body><h1>dream_graph</h1>
{message}
<form method="post" action="/login">
<label for="key">API key (the server's DREAM_GRAPH_API_KEY)</label>
<input id="key" name="key" type="password" autocomplete="current-password" autofocus required>
<input type="hidden" name="next" value="{next}">
<button type="submit">Log in</button>
</form>
<p class="note">The key is kept in this browser as an HttpOnly cookie until you
<a href="/logout">log out</a> or close the browser. API clients send the X-API-Key header instead.</p>
</body></html>
"""


def safe_next(target: str | None) -> str:
    """Only a path on this server (no `//host` or scheme), so the login page cannot send anyone elsewhere."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/dream/chat/playground/"
    return target


def login_page(next_path: str, message: str = "", status_code: int = 200) -> HTMLResponse:
    """The form, with an optional message saying what went wrong."""
    shown = f'<p class="message" role="alert">{html.escape(message)}</p>' if message else ""
    return HTMLResponse(PAGE.format(message=shown, next=html.escape(safe_next(next_path))), status_code=status_code)


@router.get("/login", response_class=HTMLResponse)
async def login_form(next: str | None = None) -> HTMLResponse:
    """The login form (it says so when the server has no key and needs no login)."""
    if get_settings().api_key is None:
        return login_page(safe_next(next), "This server has no DREAM_GRAPH_API_KEY: no login is needed.")
    return login_page(safe_next(next))


@router.post("/login", response_class=HTMLResponse)
async def login(request: Request) -> Response:
    """Check the key once (constant time) and set the session cookie; a wrong key shows the form again with a 401."""
    form = {k: v[0] for k, v in parse_qs((await request.body()).decode("utf-8", "replace")).items()}
    key, target = form.get("key", ""), safe_next(form.get("next"))
    expected = get_settings().api_key
    if expected is None:
        return RedirectResponse(target, status_code=303)
    if not key_matches(key, expected.get_secret_value()):
        return login_page(target, "Wrong key: it is not the DREAM_GRAPH_API_KEY this server was started with.", status_code=401)
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        session_token(expected.get_secret_value()),
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )
    return response


@router.get("/logout")
async def logout() -> Any:
    """Forget the session cookie."""
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
    return response
