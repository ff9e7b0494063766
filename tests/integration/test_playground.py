"""The LangServe playground in a real browser: headless Chromium submits a prompt and shows the final reply."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.serving import Server, dream_graph_server

pytestmark = pytest.mark.slow

CHROMIUM = os.environ.get("DREAM_GRAPH_TEST_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
PROMPT = "a node that counts the words in each message"

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is in the dev extra: pip install -e '.[dev]'")
if not Path(CHROMIUM).exists():
    pytest.skip(f"no Chromium at {CHROMIUM}: apt-get install -y chromium (.ci/run does)", allow_module_level=True)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with dream_graph_server(tmp_path_factory.mktemp("playground"), DREAM_GRAPH_MODEL="offline") as running:
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


@pytest.mark.parametrize("pipeline", ["dream", "offline"])
def test_playground_runs_a_prompt_and_shows_the_reply(server, page, pipeline, tmp_path):
    page.goto(f"{server.url}/{pipeline}/playground/")
    page.get_by_label("prompt").fill(PROMPT)
    page.get_by_role("button", name="Start").click()

    page.get_by_text('"stop_reason": "passed"').first.wait_for(timeout=60_000)
    body = page.inner_text("body")
    assert '"status": "passed"' in body
    assert "[offline demo model (a fixed template, not AI)] This answer adapts" in body  # the final reply's text
    reply = page.get_by_text("[offline demo model (a fixed template, not AI)]").last
    reply.scroll_into_view_if_needed()
    page.screenshot(path=str(tmp_path / f"playground-{pipeline}.png"))  # kept for a person to look at
    assert f"POST /{pipeline}/stream_log HTTP/1.1\" 200" in server.log
