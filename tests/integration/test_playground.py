"""The playgrounds in a real browser (headless Debian Chromium driven by Playwright): the chat playground shows the
progress, the code and the checks, and revises its last answer; the default playground's options form changes the
run; bad options and a missing provider key show their message on the page; with an API key, a person logs in.
Screenshots go to each test's tmp dir for a person to look at."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration.serving import Server, dream_graph_server

pytestmark = pytest.mark.slow

CHROMIUM = os.environ.get("DREAM_GRAPH_TEST_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
PROMPT = "a node that counts the words in each message"
FOLLOW_UP = "now also drop empty messages"
WAIT_MS = 120_000  # a loaded CI machine; a run takes a few seconds here
STARTUP_S = 180  # the server's start-up (imports, one set of routes per pipeline) on a loaded machine

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is in the dev extra: pip install -e '.[dev]'")
if not Path(CHROMIUM).exists():
    pytest.skip(f"no Chromium at {CHROMIUM}: apt-get install -y chromium (.ci/run does)", allow_module_level=True)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("playground")
    with dream_graph_server(tmp, ready_timeout=STARTUP_S, DREAM_GRAPH_MODEL="offline") as running:
        yield running


@pytest.fixture(scope="module")
def keyed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("playground-key")
    with dream_graph_server(
        tmp, ready_timeout=STARTUP_S, DREAM_GRAPH_MODEL="offline", DREAM_GRAPH_API_KEY="s3cret-key"
    ) as running:
        yield running


@pytest.fixture
def page() -> Iterator[sync_api.Page]:
    """A fresh headless Chromium page; JavaScript errors on the page fail the test."""
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
        )
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        yield page
        browser.close()
        assert errors == [], f"JavaScript errors on the page: {errors}"


def option(page: sync_api.Page, name: str) -> sync_api.Locator:
    """The options form's input for run option `name`."""
    return page.locator(f'[id="#/properties/{name}-input"]')


def start(page: sync_api.Page, prompt: str) -> None:
    """Fill the prompt and press Start; after the options, since a changed option reloads the input form."""
    page.wait_for_load_state("networkidle")
    page.get_by_label("prompt").fill(prompt)
    page.get_by_role("button", name="Start").click()


def chat(page: sync_api.Page, text: str) -> None:
    box = page.get_by_placeholder("Send a message...")
    box.fill(text)
    box.press("Enter")


# ---------------------------------------------------------------- the chat playground


def test_chat_shows_progress_code_and_checks_then_revises_the_answer(server, page, tmp_path):
    page.goto(f"{server.url}/dream/chat/playground/")
    chat(page, PROMPT)

    page.get_by_text("remaining findings").first.wait_for(timeout=WAIT_MS)
    body = page.inner_text("body")
    assert re.search(r"docs: \d+ section\(s\) from bundled:aineko", body)  # progress, as it happened
    assert "cycle 1: reply from offline" in body and "security: pass" in body
    assert "status: passed after 1 cycle(s) with model offline" in body
    assert "```python\nfrom typing import Optional" in body  # the code with its line breaks
    assert re.search(r"\| cycle \| check +\| result \| findings \|\n\|-+\|-+\|-+\|-+\|\n\| 1 +\| aineko +\| pass", body)
    page.screenshot(path=str(tmp_path / "chat-answer-end.png"))
    page.get_by_text("status: passed").first.evaluate("e => e.scrollIntoView({block: 'start'})")
    page.screenshot(path=str(tmp_path / "chat-answer-start.png"))

    chat(page, FOLLOW_UP)
    page.wait_for_function("document.body.innerText.split('remaining findings').length === 3", timeout=WAIT_MS)
    page.screenshot(path=str(tmp_path / "chat-follow-up.png"), full_page=True)
    latest = httpx.get(f"{server.url}/runs", params={"limit": 1}, timeout=30).json()
    request = latest["runs"][0]["request"]
    assert request.startswith(f"Revise this earlier answer to: {PROMPT}")  # the follow-up revised the last answer
    assert f"Now change it so that: {FOLLOW_UP}" in request
    assert re.search(r"```python\n.*class \w+\(AbstractNode\)", request, re.DOTALL)  # the last answer's code went in


def test_chat_shows_a_missing_provider_key(server, page, tmp_path):
    page.goto(f"{server.url}/gpt4/chat/playground/")
    chat(page, PROMPT)

    message = page.get_by_text("error (400): model 'openai:gpt-4o' needs OPENAI_API_KEY").first
    message.wait_for(timeout=WAIT_MS)
    page.screenshot(path=str(tmp_path / "chat-missing-key.png"))
    assert "--model offline" in page.inner_text("body")  # what to do about it


# ---------------------------------------------------------------- the default playground and its options form


@pytest.mark.parametrize("pipeline", ["dream", "offline"])
def test_default_playground_shows_the_answer_as_text(server, page, pipeline, tmp_path):
    page.goto(f"{server.url}/{pipeline}/playground/")
    start(page, PROMPT)

    page.get_by_text("remaining findings").first.wait_for(timeout=WAIT_MS)
    body = page.inner_text("body")
    assert "status: passed after 1 cycle(s) with model offline" in body
    assert re.search(r"class \w+\(AbstractNode\):\n", body) and "\\n" not in body.split("status:")[1]
    assert "}{" not in body
    page.screenshot(path=str(tmp_path / f"playground-{pipeline}.png"), full_page=True)
    assert f'POST /{pipeline}/stream_log HTTP/1.1" 200' in server.log


def docs_count(page: sync_api.Page) -> int:
    """How many documentation sections the run on the page put in its prompt (its first progress line)."""
    return int(re.search(r"docs: (\d+) section\(s\)", page.inner_text("body")).group(1))


def test_an_option_set_in_the_form_changes_the_run(server, page, tmp_path):
    page.goto(f"{server.url}/dream/playground/")
    start(page, PROMPT)
    page.get_by_text("remaining findings").first.wait_for(timeout=WAIT_MS)
    with_defaults = docs_count(page)

    option(page, "docs_budget").fill("1")  # one token: only the core API sections, which always go in
    start(page, PROMPT)
    page.wait_for_function(
        f"/docs: (\\d+) section/.exec(document.body.innerText)?.[1] !== '{with_defaults}'", timeout=WAIT_MS
    )
    page.get_by_text("remaining findings").first.wait_for(timeout=WAIT_MS)
    page.screenshot(path=str(tmp_path / "playground-docs-budget-1.png"), full_page=True)
    assert 0 < docs_count(page) < with_defaults


def test_bad_options_and_a_missing_key_show_their_message(server, page, tmp_path):
    page.goto(f"{server.url}/dream/playground/")
    option(page, "max_cycles").fill("0")
    page.get_by_text("must be >= 1").first.wait_for(timeout=10_000)  # the form's own check, from the bounds
    page.get_by_label("prompt").fill(PROMPT)
    assert page.get_by_role("button", name="Start").is_disabled()
    page.screenshot(path=str(tmp_path / "playground-bad-option.png"), full_page=True)

    option(page, "max_cycles").fill("2")
    option(page, "model").fill("openai:gpt-4o")
    start(page, PROMPT)
    page.get_by_text("error (400): model 'openai:gpt-4o' needs OPENAI_API_KEY").wait_for(timeout=WAIT_MS)
    page.screenshot(path=str(tmp_path / "playground-missing-key.png"), full_page=True)

    option(page, "model").fill("offline")
    start(page, "   ")
    page.get_by_text("error (422): prompt is empty").wait_for(timeout=WAIT_MS)
    assert "response already started" not in server.log


# ---------------------------------------------------------------- logging in with the API key


def test_login_with_the_key_then_use_the_chat(keyed_server, page, tmp_path):
    page.goto(f"{keyed_server.url}/dream/chat/playground/")
    page.wait_for_url(re.compile(r"/login\?next=/dream/chat/playground/"))
    page.get_by_label("API key").fill("wrong")
    page.get_by_role("button", name="Log in").click()
    page.get_by_text("Wrong key").wait_for(timeout=10_000)
    page.screenshot(path=str(tmp_path / "login-wrong-key.png"))

    page.get_by_label("API key").fill("s3cret-key")
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{keyed_server.url}/dream/chat/playground/")
    chat(page, PROMPT)
    page.get_by_text("remaining findings").first.wait_for(timeout=WAIT_MS)
    page.screenshot(path=str(tmp_path / "chat-after-login.png"), full_page=True)
    cookie = next(c for c in page.context.cookies() if c["name"] == "dream_graph_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["value"] != "s3cret-key"
    assert httpx.post(f"{keyed_server.url}/dream/invoke", json={"input": {"prompt": PROMPT}}).status_code == 401
