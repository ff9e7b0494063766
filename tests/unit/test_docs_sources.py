"""Docs sources with no network: spec parsing, the configured source, the keyed holder, the cache, the push filter."""

from __future__ import annotations

import json

import pytest

from dream_graph import docs
from dream_graph.docs import (
    check_run_source,
    configured_spec,
    docs_for,
    docs_holder,
    parse_docs_source,
    refresh_docs,
    register_docs_source,
)
from dream_graph.errors import ConfigError
from dream_graph.settings import get_settings
from dream_graph.sources import Doc, DocSet
from dream_graph.sources.cache import cache_file, load_cached, save_cached
from dream_graph.sources.spec import DEFAULT_GITHUB_PATHS

TRACKED = "github:aineko-dev/aineko@develop:docs"


@pytest.fixture(autouse=True)
def no_registrations(monkeypatch):
    monkeypatch.setattr(docs, "_registered", set())


def set_env(monkeypatch, **values: str) -> None:
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()


@pytest.mark.parametrize(
    ("spec", "kind", "key"),
    [
        ("bundled", "bundled", "bundled:aineko"),
        ("  Bundled:aineko ", "bundled", "bundled:aineko"),
        ("local:./my docs", "local", "local:./my docs"),
        ("github", "github", "github:aineko-dev/aineko@develop:" + ",".join(DEFAULT_GITHUB_PATHS)),
        ("github:octo/repo", "github", "github:octo/repo"),
        ("github:octo/repo@feature/x:docs/, README.md,docs", "github", "github:octo/repo@feature/x:docs,README.md"),
    ],
)
def test_specs_parse_to_a_canonical_key(spec, kind, key):
    config = parse_docs_source(spec)
    assert (config.kind, config.key) == (kind, key)
    assert parse_docs_source(config.key) == config


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ("", "empty"),
        ("ftp:x", "unknown source kind 'ftp'"),
        ("local:", "needs a folder"),
        ("github:just-a-name", "not an owner/repo"),
        ("github:o/r@:docs", "not a valid branch"),
        ("github:o/r@a..b", "not a valid branch"),
        ("github:o/r@main:../secrets", "inside the repository"),
        ("bundled:../x", "not a framework name"),
    ],
)
def test_bad_specs_say_what_is_wrong_and_the_syntax(spec, problem):
    with pytest.raises(ConfigError) as err:
        parse_docs_source(spec)
    assert problem in str(err.value)
    assert "github:<owner>/<repo>[@<branch>][:<path>,...]" in str(err.value)


def test_configured_source_order(monkeypatch, tmp_path):
    assert configured_spec() == "bundled"
    set_env(monkeypatch, DREAM_GRAPH_DOCS_DIR=str(tmp_path))
    assert configured_spec() == f"local:{tmp_path}"
    set_env(monkeypatch, DREAM_GRAPH_DOCS_SOURCE=TRACKED)
    assert configured_spec() == TRACKED


def test_the_holder_keeps_one_snapshot_per_source(tmp_path):
    (tmp_path / "guide.md").write_text("# Local guide\n\nOnly here.\n", encoding="utf-8")
    local = docs_for(f"local:{tmp_path}")
    bundled = docs_for(None)
    assert local.docset.source == f"local:{tmp_path}" and local.sections[0].heading == "Local guide"
    assert bundled.docset.source == "bundled:aineko"
    assert docs_for(f"local:{tmp_path}") is local  # loaded once, then a lookup
    assert set(docs_holder.loaded()) == {f"local:{tmp_path}", "bundled:aineko"}


def test_set_swaps_a_source_without_touching_the_others(tmp_path):
    before = docs_for("bundled")
    new = docs_holder.set(DocSet("local:x", (Doc("a.md", "# New\n\nnew text"),)), f"local:{tmp_path}")
    assert docs_for(f"local:{tmp_path}") is new
    assert docs_for("bundled") is before


def test_a_missing_local_folder_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        docs_for(f"local:{tmp_path / 'nope'}")


def test_per_run_sources_must_be_configured_or_registered(monkeypatch, tmp_path):
    assert check_run_source(None) is None
    assert check_run_source("bundled") == "bundled"
    with pytest.raises(ConfigError, match="not configured on this server"):
        check_run_source("local:/etc")
    with pytest.raises(ConfigError, match="not configured"):
        check_run_source("github:someone/private-repo")
    register_docs_source(f"local:{tmp_path}")
    assert check_run_source(f"local:{tmp_path}") == f"local:{tmp_path}"
    set_env(monkeypatch, DREAM_GRAPH_DOCS_SOURCE=TRACKED)
    assert check_run_source(TRACKED) == TRACKED


def test_a_source_declared_in_the_pipelines_file_is_allowed_per_run(monkeypatch, tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "guide.md").write_text("# Team guide\n\nOur own API.\n", encoding="utf-8")
    pipelines = tmp_path / "pipelines.toml"
    pipelines.write_text(f'[team]\nmodel = "offline"\ndocs = "local:{tmp_path / "docs"}"\n', encoding="utf-8")
    set_env(monkeypatch, DREAM_GRAPH_PIPELINES=str(pipelines))
    from dream_graph.graph import graph

    state = graph.invoke({"prompt": "a node"}, context={"model": "offline", "max_cycles": 1, "docs": f"local:{tmp_path / 'docs'}"})
    assert state["docs_source"] == f"local:{tmp_path / 'docs'}"
    assert [d["heading"] for d in state["doc_sections"]] == ["Team guide"]


def test_a_run_with_an_unregistered_source_fails_with_a_clear_error():
    from dream_graph.graph import graph

    with pytest.raises(ConfigError, match="not configured on this server"):
        graph.invoke({"prompt": "a node"}, context={"model": "offline", "docs": "local:/etc"})


def test_the_cache_round_trips_and_replaces_atomically(tmp_path):
    docset = DocSet("github:o/r@main", (Doc("a.md", "# A\n\ncafé ✓"),), commit="abc123", fetched_at="2024-01-01T00:00:00+00:00")
    path = save_cached(tmp_path, "github:o/r@main:docs", docset)
    assert path == cache_file(tmp_path, "github:o/r@main:docs")
    loaded = load_cached(tmp_path, "github:o/r@main:docs")
    assert loaded == docset
    newer = DocSet("github:o/r@main", (Doc("a.md", "# A2"),), commit="def456", fetched_at="2024-01-02T00:00:00+00:00")
    save_cached(tmp_path, "github:o/r@main:docs", newer)
    assert load_cached(tmp_path, "github:o/r@main:docs") == newer
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary files left behind
    assert load_cached(tmp_path, "github:o/r@other") is None


def test_a_corrupt_or_foreign_cache_file_is_ignored(tmp_path, caplog):
    path = cache_file(tmp_path, "github:o/r@main")
    path.parent.mkdir(parents=True)
    path.write_text("{not json", encoding="utf-8")
    assert load_cached(tmp_path, "github:o/r@main") is None
    path.write_text(json.dumps({"format": 1, "key": "github:x/y", "source": "s", "files": []}), encoding="utf-8")
    assert load_cached(tmp_path, "github:o/r@main") is None
    assert "ignoring the docs cache" in caplog.text


def push(full_name: str = "aineko-dev/aineko", ref: str = "refs/heads/develop", **extra) -> dict:
    return {"ref": ref, "after": "f" * 40, "repository": {"full_name": full_name, "default_branch": "main"}, **extra}


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        (push("someone/else"), "ignored push to someone/else refs/heads/develop: the docs follow aineko-dev/aineko@develop"),
        (push(ref="refs/heads/main"), "ignored push to aineko-dev/aineko refs/heads/main"),
        (push(ref="refs/tags/v1.0"), "ignored tag push refs/tags/v1.0"),
        (push(deleted=True), "ignored deletion of refs/heads/develop"),
        ({"zen": "Keep it logically awesome.", "hook_id": 1}, "malformed payload"),
        ({"ref": "refs/heads/develop", "repository": "aineko-dev/aineko"}, "malformed payload"),
        (["not", "a", "dict"], "malformed payload: expected a JSON object"),
    ],
)
def test_pushes_that_do_not_concern_the_docs_are_ignored_with_a_reason(monkeypatch, caplog, event, reason):
    set_env(monkeypatch, DREAM_GRAPH_DOCS_SOURCE=TRACKED, GITHUB_API_URL="http://127.0.0.1:9")  # never reached
    caplog.set_level("INFO", logger="dream_graph.docs")
    result = refresh_docs(event)
    assert result.refreshed is False and result.commit is None
    assert reason in result.reason
    assert reason in caplog.text
    assert docs_holder.loaded() == {}


def test_a_push_with_no_github_source_configured_is_ignored():
    result = refresh_docs(push())
    assert not result.refreshed
    assert "no GitHub docs source is configured" in result.reason


def test_a_source_without_branch_follows_the_pushed_repos_default_branch(monkeypatch):
    set_env(monkeypatch, DREAM_GRAPH_DOCS_SOURCE="github:aineko-dev/aineko:docs", GITHUB_API_URL="http://127.0.0.1:9")
    ignored = refresh_docs(push(ref="refs/heads/develop"))
    assert "ignored push" in ignored.reason and "aineko-dev/aineko@default branch" in ignored.reason
