"""The GitHub docs source through the real PyGithub client against a fake GitHub API on 127.0.0.1."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from datetime import UTC
from typing import Any

import pytest
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage
from typer.testing import CliRunner

from dream_graph import docs
from dream_graph.cli import app
from dream_graph.docs import docs_for, docs_holder, refresh_docs
from dream_graph.graph import build_graph
from dream_graph.settings import get_settings
from dream_graph.sources.github import DocsFetchError, GitHubOptions, fetch_github
from dream_graph.sources.spec import parse_docs_source
from tests.fakes.base import CLEAN_REPLY
from tests.fakes.github_server import FakeGitHub

REPO = "aineko-dev/aineko"
SPEC = f"github:{REPO}@develop:docs/developer_guide,README.md"
FILES = {
    "docs/developer_guide/node_implementation.md": "# Building a node\n\n## The node API\n\nOld API: `_execute` — café ✓\n",
    "docs/developer_guide/deeper/pipeline_configuration.md": "# Pipeline configuration\n\nKeys: `pipeline.name`.\n",
    "docs/developer_guide/img/diagram.png": "not text",
    "docs/other/skip.md": "# Not under the configured paths\n",
    "README.md": "# Aineko\n\nA framework.\n",
}


@pytest.fixture(scope="module")
def github_session() -> Iterator[FakeGitHub]:
    with FakeGitHub() as server:
        yield server


@pytest.fixture
def gh(github_session: FakeGitHub, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeGitHub]:
    """A fresh fake GitHub holding the repo; the environment points the docs source at it, with instant retries."""
    github_session.reset()
    github_session.add_repo(REPO, FILES, branch="develop")
    monkeypatch.setenv("GITHUB_API_URL", github_session.url)
    monkeypatch.setenv("DREAM_GRAPH_DOCS_SOURCE", SPEC)
    monkeypatch.setenv("DREAM_GRAPH_DOCS_RETRY_WAIT", "0")
    monkeypatch.setattr(docs, "_registered", set())
    get_settings.cache_clear()
    yield github_session
    github_session.reset()


def paths(requests) -> list[str]:
    return [r.path.split("?")[0] for r in requests]


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def test_files_and_folders_expand_recursively_at_one_commit(gh):
    head = gh.repos[REPO.lower()].branches["develop"]
    snap = docs_for()
    assert [d.path for d in snap.docset.docs] == [
        "docs/developer_guide/deeper/pipeline_configuration.md",
        "docs/developer_guide/node_implementation.md",
        "README.md",
    ]
    assert "café ✓" in snap.docset.docs[1].text  # base64 decoded as UTF-8
    assert snap.docset.source == f"github:{REPO}@develop" and snap.docset.commit == head
    assert snap.docset.fetched_at and snap.docset.warnings == ()
    contents = [r.path for r in gh.requests if "/contents/" in r.path]
    assert contents and all(p.endswith(f"?ref={head}") for p in contents)  # every read pinned to the commit
    assert not any("authorization" in r.headers for r in gh.requests)  # unauthenticated works


@pytest.mark.parametrize("variable", ["GITHUB_TOKEN", "GITHUB_ACCESS_TOKEN"])
def test_the_token_is_sent(gh, monkeypatch, variable):
    gh.tokens = {"ghp_good"}
    monkeypatch.setenv(variable, "ghp_good")
    get_settings.cache_clear()
    assert docs_for().docset.warnings == ()
    assert {r.headers.get("authorization") for r in gh.requests} == {"token ghp_good"}


def test_a_private_repo_needs_the_token(gh, monkeypatch):
    gh.add_repo("acme/private-docs", {"docs/a.md": "# Secret\n\ntext"}, private=True)
    with pytest.raises(DocsFetchError, match="not found on GitHub"):
        fetch_github(parse_docs_source("github:acme/private-docs"), GitHubOptions(base_url=gh.url, retry_wait=0))
    gh.tokens = {"ghp_good"}
    docset = fetch_github(
        parse_docs_source("github:acme/private-docs"), GitHubOptions(base_url=gh.url, token="ghp_good", retry_wait=0)
    )
    assert [d.path for d in docset.docs] == ["docs/a.md"]


def test_a_bad_token_falls_back_at_once_with_a_warning(gh, monkeypatch):
    gh.tokens = {"ghp_good"}
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_wrong")
    get_settings.cache_clear()
    snap = docs_for()
    assert snap.docset.source == "bundled:aineko"
    assert "401 Bad credentials" in snap.docset.warnings[0] and "no cached copy" in snap.docset.warnings[0]
    assert paths(gh.requests) == [f"/repos/{REPO}"]  # not retried: a wrong token stays wrong


def test_a_missing_path_says_which(gh, monkeypatch):
    monkeypatch.setenv("DREAM_GRAPH_DOCS_SOURCE", f"github:{REPO}@develop:docs/nope.md")
    get_settings.cache_clear()
    warning = docs_for().docset.warnings[0]
    assert "path 'docs/nope.md' was not found on GitHub (404)" in warning


def test_a_rate_limit_far_away_falls_back_and_says_when_it_resets(gh):
    reset = gh.rate_limit(remaining=0, reset_in=3600)
    snap = docs_for()
    assert snap.docset.source == "bundled:aineko"
    from datetime import datetime

    when = datetime.fromtimestamp(reset, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")
    assert f"rate limit exceeded; it resets at {when} UTC" in snap.docset.warnings[0]
    assert len(gh.requests) == 1


def test_a_rate_limit_that_resets_soon_is_waited_out(gh):
    gh.rate_limit(remaining=0, reset_in=30)
    waits: list[float] = []

    def sleep(seconds: float) -> None:  # "wait" until the reset: the fake's window opens again
        waits.append(seconds)
        gh.rate_limit(remaining=None)

    opts = GitHubOptions(base_url=gh.url, retry_wait=0, rate_limit_max_wait=60)
    docset = fetch_github(parse_docs_source(SPEC), opts, sleep=sleep)
    assert len(docset.docs) == 3
    assert len(waits) == 1 and 20 < waits[0] <= 31


def test_server_errors_are_retried_with_backoff(gh):
    gh.fail_next(502, 503)
    waits: list[float] = []
    docset = fetch_github(parse_docs_source(SPEC), GitHubOptions(base_url=gh.url, retry_wait=0.5), sleep=waits.append)
    assert len(docset.docs) == 3
    assert waits == [0.5, 1.0]
    gh.fail_next(500, 500, 500)
    with pytest.raises(DocsFetchError, match="GitHub answered 500"):
        fetch_github(parse_docs_source(SPEC), GitHubOptions(base_url=gh.url, retry_wait=0), sleep=waits.append)


def test_github_down_uses_the_cached_copy_with_a_warning(gh, monkeypatch):
    good = docs_for()
    docs_holder.reset()
    monkeypatch.setenv("GITHUB_API_URL", closed_port_url())
    get_settings.cache_clear()
    snap = docs_for()
    assert snap.docset.docs == good.docset.docs
    assert snap.docset.source == f"cache:github:{REPO}@develop"
    warning = snap.docset.warnings[0]
    assert "cannot reach GitHub" in warning and f"cached copy at commit {good.docset.commit[:12]}" in warning
    assert good.docset.fetched_at in warning


def test_github_down_and_no_cache_uses_the_bundled_docs_and_says_so(gh, monkeypatch):
    monkeypatch.setenv("GITHUB_API_URL", closed_port_url())
    get_settings.cache_clear()
    state = build_graph().invoke({"prompt": "a node that counts words"}, context={"model": "offline", "max_cycles": 1})
    assert state["docs_source"] == "bundled:aineko"
    assert any("no cached copy; using the bundled snapshot" in w for w in state["docs_warnings"])
    assert state["doc_sections"]  # never a prompt built from nothing


def test_concurrent_first_requests_fetch_once(gh):
    results: list[Any] = []
    threads = [threading.Thread(target=lambda: results.append(docs_for())) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({id(r) for r in results}) == 1
    assert paths(gh.requests).count(f"/repos/{REPO}") == 1


def test_a_matching_push_refreshes_and_updates_the_cache(gh):
    old = docs_for()
    new_sha = gh.push(REPO, {"docs/developer_guide/node_implementation.md": "# Building a node\n\nNew API.\n"}, branch="develop")
    result = refresh_docs(gh.push_payload(REPO, "develop"))
    assert result.refreshed and result.commit == new_sha
    assert result.sources == (parse_docs_source(SPEC).key,)
    assert "New API." in docs_for().docset.docs[1].text
    assert "Old API" in old.docset.docs[1].text  # the old snapshot is untouched
    again = refresh_docs(gh.push_payload(REPO, "develop"))  # a redelivery of the same push
    assert not again.refreshed and again.commit == new_sha and "already up to date" in again.reason
    assert paths(gh.requests).count(f"/repos/{REPO}") == 2


def test_a_failed_refetch_keeps_the_docs_in_use(gh):
    before = docs_for()
    gh.push(REPO, {"README.md": "# changed"}, branch="develop")
    gh.fail_next(502, 502, 502)
    result = refresh_docs(gh.push_payload(REPO, "develop"))
    assert not result.refreshed and "refetch failed, keeping the docs in use" in result.reason
    assert docs_for() is before


def test_a_push_to_another_repo_or_branch_fetches_nothing(gh):
    docs_for()
    gh.add_repo("someone/else", {"README.md": "# x"}, branch="develop")
    gh.push(REPO, {"README.md": "# on main"}, branch="main")
    count = len(gh.requests)
    assert not refresh_docs(gh.push_payload("someone/else", "develop")).refreshed
    assert not refresh_docs(gh.push_payload(REPO, "main")).refreshed
    assert not refresh_docs(gh.push_payload(REPO, "develop", ref="refs/tags/v1")).refreshed
    assert len(gh.requests) == count


class RefreshingModel(GenericFakeChatModel):
    """Answers like a model, but first lets a push land (the docs change while this run is in flight)."""

    on_call: Any = None

    def _generate(self, messages, stop=None, run_manager=None, **kwargs):  # type: ignore[override]
        if self.on_call is not None:
            self.on_call()
            self.on_call = None
        return super()._generate(messages, stop=stop, run_manager=run_manager, **kwargs)


def test_a_refresh_during_a_run_does_not_change_that_runs_prompt(gh):
    refreshed: list[Any] = []

    def land_push() -> None:
        gh.push(REPO, {"docs/developer_guide/node_implementation.md": "# Building a node\n\nNEW TEXT after push.\n"}, branch="develop")
        refreshed.append(refresh_docs(gh.push_payload(REPO, "develop")))

    model = RefreshingModel(messages=iter([AIMessage(CLEAN_REPLY), AIMessage(CLEAN_REPLY)]), on_call=land_push)
    graph = build_graph(chat_model=model)
    in_flight = graph.invoke({"prompt": "a node that counts words"}, context={"max_cycles": 1, "docs_budget": 0})
    after = graph.invoke({"prompt": "a node that counts words"}, context={"max_cycles": 1, "docs_budget": 0})

    assert refreshed[0].refreshed
    first_prompt, second_prompt = in_flight["messages"][1].content, after["messages"][1].content
    assert "Old API" in first_prompt and "NEW TEXT after push." not in first_prompt
    assert "NEW TEXT after push." in second_prompt and "Old API" not in second_prompt


async def test_async_runs_fetch_off_the_event_loop_and_see_the_same_docs(gh):
    model = GenericFakeChatModel(messages=iter([AIMessage(CLEAN_REPLY)]))
    state = await build_graph(chat_model=model).ainvoke({"prompt": "a node"}, context={"max_cycles": 1})
    assert state["docs_source"] == f"github:{REPO}@develop"
    assert {d["path"] for d in state["doc_sections"]} <= {d.path for d in docs_for().docset.docs}


def test_cli_show_and_refresh(gh):
    runner = CliRunner()
    shown = runner.invoke(app, ["docs", "show", "--json"])
    assert shown.exit_code == 0, shown.output
    info = json.loads(shown.stdout)
    assert info["source"] == f"github:{REPO}@develop" and info["commit"] == gh.repos[REPO.lower()].branches["develop"]
    assert [f["path"] for f in info["files"]][-1] == "README.md"
    assert {"path", "heading", "tokens", "core"} <= set(info["sections"][0])

    new_sha = gh.push(REPO, {"README.md": "# Aineko\n\nUpdated.\n"}, branch="develop")
    refreshed = runner.invoke(app, ["docs", "refresh"])
    assert refreshed.exit_code == 0, refreshed.output
    assert f"at commit {new_sha}" in refreshed.stdout

    gh.fail_next(401)
    failed = runner.invoke(app, ["docs", "refresh"])
    assert failed.exit_code == 1
    assert "fetch failed" in failed.stderr

    human = runner.invoke(app, ["docs", "show"])
    assert "README.md" in human.stdout and new_sha in human.stdout
