"""The documentation in use: one snapshot per docs source, loaded on first use, swapped atomically on refresh.

A snapshot holds the docs split into sections and a BM25 index over them, so a request only ranks and selects.
"""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

from langchain_core.messages.utils import count_tokens_approximately
from rank_bm25 import BM25Plus

from dream_graph.errors import ConfigError
from dream_graph.retrieval import Selection, build_index, is_core, select_sections
from dream_graph.settings import Settings, get_settings
from dream_graph.sources import DocSet
from dream_graph.sources.bundled import load_bundled
from dream_graph.sources.cache import cache_root, load_cached, save_cached
from dream_graph.sources.github import DocsFetchError, GitHubOptions, fetch_github
from dream_graph.sources.local import load_local
from dream_graph.sources.spec import DocsSourceConfig, parse_docs_source

__all__ = [
    "DocsFetchError",
    "DocsHolder",
    "DocsSnapshot",
    "DocsSourceConfig",
    "RefreshResult",
    "Section",
    "count_tokens",
    "docs_for",
    "docs_holder",
    "parse_docs_source",
    "refresh_docs",
    "register_docs_source",
    "split_sections",
]

log = logging.getLogger(__name__)

_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
_FENCE = re.compile(r"^\s*(```|~~~)")


@dataclass(frozen=True)
class Section:
    """A heading and the text under it, code blocks kept whole."""

    path: str
    heading: str
    text: str

    @cached_property
    def tokens(self) -> int:
        """Counted once per section: retrieval asks for it on every request."""
        return count_tokens(self.text)


def count_tokens(text: str) -> int:
    """Offline token estimate (langchain-core's approximate counter: ~4 characters a token)."""
    return int(count_tokens_approximately([("user", text)], extra_tokens_per_message=0))


def split_sections(docset: DocSet) -> list[Section]:
    """Split every doc at markdown headings outside code fences."""
    sections: list[Section] = []
    for doc in docset.docs:
        heading, lines, in_fence = doc.path, [], False
        for line in doc.text.splitlines():
            if _FENCE.match(line):
                in_fence = not in_fence
            match = None if in_fence else _HEADING.match(line)
            if match and any(x.strip() for x in lines):
                sections.append(Section(doc.path, heading, "\n".join(lines).strip()))
                lines = []
            if match:
                heading = match.group(2)
            lines.append(line)
        if any(x.strip() for x in lines):
            sections.append(Section(doc.path, heading, "\n".join(lines).strip()))
    return sections


@dataclass(frozen=True)
class DocsSnapshot:
    """One source's docs as a run sees them; never changed after creation (a refresh makes a new one)."""

    key: str
    docset: DocSet
    sections: list[Section]
    core: list[bool]
    index: BM25Plus | None = field(repr=False)

    def select(self, query: str, budget: int, min_score: float | None = None) -> Selection:
        """The relevant sections for a prompt about `query` within `budget` tokens (0: all of them); `min_score`
        defaults to DREAM_GRAPH_DOCS_MIN_SCORE."""
        min_score = get_settings().docs_min_score if min_score is None else min_score
        return select_sections(self.sections, query, budget, index=self.index, core=self.core, min_score=min_score)


def make_snapshot(key: str, docset: DocSet, settings: Settings | None = None) -> DocsSnapshot:
    """Split, mark the core API sections and index once, so requests only rank."""
    settings = settings or get_settings()
    try:
        core_headings = re.compile(settings.docs_core_headings, re.IGNORECASE) if settings.docs_core_headings else None
    except re.error as exc:
        raise ConfigError(f"DREAM_GRAPH_DOCS_CORE_HEADINGS is not a valid regular expression: {exc}") from None
    sections = split_sections(docset)
    return DocsSnapshot(key, docset, sections, [is_core(s, core_headings) for s in sections], build_index(sections))


def configured_spec(settings: Settings | None = None) -> str:
    """DREAM_GRAPH_DOCS_SOURCE, else DREAM_GRAPH_DOCS_DIR as a local source, else the bundled snapshot."""
    settings = settings or get_settings()
    if settings.docs_source:
        return settings.docs_source
    return f"local:{settings.docs_dir}" if settings.docs_dir else "bundled"


def source_config(spec: str | None = None, settings: Settings | None = None) -> DocsSourceConfig:
    """`spec` parsed, or the configured source when it is None."""
    return parse_docs_source(spec or configured_spec(settings))


def fetch_fresh(config: DocsSourceConfig, settings: Settings | None = None) -> DocSet:
    """Read the source now, with no fallback; a GitHub copy is kept on disk as the last good one."""
    settings = settings or get_settings()
    try:
        if config.kind == "bundled":
            return load_bundled(config.framework)
        if config.kind == "local":
            return load_local(config.folder or ".")
    except FileNotFoundError as exc:
        raise ConfigError(f"{exc}; fix the docs source {config.key!r}") from None
    docset = fetch_github(config, GitHubOptions.from_settings(settings))
    try:
        save_cached(cache_root(settings.cache_dir), config.key, docset)
    except OSError as exc:  # a read-only disk costs the fallback copy, not this run
        log.warning("could not write the docs cache for %s: %s (set DREAM_GRAPH_CACHE_DIR)", config.key, exc)
    return docset


def load_source(config: DocsSourceConfig, settings: Settings | None = None) -> DocSet:
    """`fetch_fresh`; if GitHub fails: the cached copy, else the bundled snapshot, each with a warning saying so."""
    settings = settings or get_settings()
    try:
        return fetch_fresh(config, settings)
    except DocsFetchError as exc:  # only GitHub fetches fail this way; local and bundled errors are config errors
        failure = f"fetching {config.key} failed ({exc})"
    cached = load_cached(cache_root(settings.cache_dir), config.key)
    if cached is not None:
        warning = (
            f"{failure}; using the cached copy at commit {(cached.commit or '?')[:12]} fetched {cached.fetched_at}"
        )
        log.warning("%s", warning)
        return replace(cached, source=f"cache:{cached.source}", warnings=(*cached.warnings, warning))
    bundled = load_bundled(config.framework)
    warning = f"{failure} and there is no cached copy; using the bundled snapshot ({bundled.source}), which may be older"
    log.warning("%s", warning)
    return replace(bundled, warnings=(*bundled.warnings, warning))


class DocsHolder:
    """One snapshot per source key; readers get a snapshot without waiting while a refresh builds the next one."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._snapshots: dict[str, DocsSnapshot] = {}
        self._loading: dict[str, threading.Lock] = {}

    def _key_lock(self, key: str) -> threading.Lock:
        with self._lock:
            return self._loading.setdefault(key, threading.Lock())

    def snapshot(self, spec: str | None = None) -> DocsSnapshot:
        """The docs for `spec` (None: the configured source); the first call per source loads it, once."""
        config = source_config(spec)
        if (snap := self._snapshots.get(config.key)) is not None:
            return snap
        with self._key_lock(config.key):  # concurrent first requests wait for one load
            if (snap := self._snapshots.get(config.key)) is None:
                snap = make_snapshot(config.key, load_source(config))
                with self._lock:
                    self._snapshots[config.key] = snap
            return snap

    def get(self, spec: str | None = None) -> tuple[DocSet, list[Section]]:
        """The docs and their sections for `spec` (None: the configured source)."""
        snap = self.snapshot(spec)
        return snap.docset, snap.sections

    def set(self, docset: DocSet, spec: str | None = None) -> DocsSnapshot:
        """Swap in new docs in one step (in-flight runs keep the snapshot they already read)."""
        key = source_config(spec).key
        snap = make_snapshot(key, docset)
        with self._lock:
            self._snapshots[key] = snap
        return snap

    def refresh(self, spec: str | None = None) -> DocsSnapshot:
        """Fetch `spec` now and swap it in; on failure raise and keep the docs in use."""
        config = source_config(spec)
        with self._key_lock(config.key):
            return self.set(fetch_fresh(config), config.key)

    def loaded(self) -> dict[str, DocsSnapshot]:
        """The snapshots in memory, by source key."""
        with self._lock:
            return dict(self._snapshots)

    def reset(self) -> None:
        """Forget the loaded docs (tests, and changed settings)."""
        with self._lock:
            self._snapshots.clear()


docs_holder = DocsHolder()
_registered: set[str] = set()


def docs_for(spec: str | None = None) -> DocsSnapshot:
    """The graph's entry point: a dict lookup once the source is loaded; a load only on first use or refresh."""
    return docs_holder.snapshot(spec)


def register_docs_source(spec: str) -> str:
    """Allow a trusted source (e.g. a pipeline's `docs`) as a per-run `docs` option; returns its key."""
    key = parse_docs_source(spec).key
    _registered.add(key)
    return key


def _register_pipeline_sources() -> None:
    """Sources declared in the pipelines file are trusted configuration, like DREAM_GRAPH_DOCS_SOURCE."""
    from dream_graph.pipelines import load_pipelines  # late: pipelines builds on the graph's run options

    try:
        declared = [p.docs for p in load_pipelines().values() if p.docs]
    except ConfigError as exc:  # a broken pipelines file is reported where it is used, not here
        log.warning("docs sources of the pipelines file not read: %s", exc)
        return
    for spec in declared:
        try:
            register_docs_source(spec)
        except ConfigError as exc:
            log.warning("pipelines file: %s", exc)


def check_run_source(spec: str | None) -> str | None:
    """A per-run `docs` option may only name a configured or declared source (no reading /etc or private repos)."""
    if not spec:
        return None
    config = parse_docs_source(spec)

    def allowed() -> bool:
        return config.kind == "bundled" or config.key in _registered or config.key == source_config().key

    if allowed():
        return spec
    _register_pipeline_sources()
    if allowed():
        return spec
    raise ConfigError(
        f"docs source {config.key!r} is not configured on this server; set DREAM_GRAPH_DOCS_SOURCE "
        "or declare it as a pipeline's `docs` in the pipelines file"
    )


@dataclass(frozen=True)
class RefreshResult:
    """What a push event did: `reason` says why docs were (not) refetched; `commit` is the new SHA."""

    refreshed: bool
    reason: str
    commit: str | None = None
    sources: tuple[str, ...] = ()


def _github_sources() -> list[DocsSourceConfig]:
    """Every GitHub source this process uses: configured, declared by pipelines, or loaded."""
    _register_pipeline_sources()
    specs = [configured_spec(), *sorted(_registered), *docs_holder.loaded()]
    configs = {c.key: c for c in (parse_docs_source(s) for s in specs) if c.kind == "github"}
    return list(configs.values())


def _push_target(event: Any) -> tuple[str, str, dict[str, Any]] | str:
    """(full_name, branch, repository) from a push payload, or the reason it cannot be used."""
    if not isinstance(event, dict):
        return "malformed payload: expected a JSON object"
    ref, repository = event.get("ref"), event.get("repository")
    if not isinstance(ref, str) or not isinstance(repository, dict) or not isinstance(repository.get("full_name"), str):
        return "malformed payload: a push event needs `ref` and `repository.full_name`"
    if ref.startswith("refs/tags/"):
        return f"ignored tag push {ref}: only branch pushes change the docs"
    if not ref.startswith("refs/heads/"):
        return f"ignored push to {ref}: not a branch"
    if event.get("deleted") is True:
        return f"ignored deletion of {ref}"
    return repository["full_name"], ref.removeprefix("refs/heads/"), repository


def refresh_docs(event: dict[str, Any]) -> RefreshResult:
    """Refetch the GitHub docs a push event changed (same repository, `ref == refs/heads/<branch>`); else say why not."""
    target = _push_target(event)
    if isinstance(target, str):
        log.info("docs refresh skipped: %s", target)
        return RefreshResult(False, target)
    full_name, branch, repository = target
    try:
        sources = _github_sources()
    except ConfigError as exc:
        log.warning("docs refresh skipped: %s", exc)
        return RefreshResult(False, f"ignored: {exc}")
    if not sources:
        reason = "ignored: no GitHub docs source is configured (DREAM_GRAPH_DOCS_SOURCE)"
        log.info("docs refresh skipped: %s", reason)
        return RefreshResult(False, reason)
    matching = [
        c
        for c in sources
        if (c.repo or "").lower() == full_name.lower() and branch == (c.branch or repository.get("default_branch"))
    ]
    if not matching:
        tracked = ", ".join(f"{c.repo}@{c.branch or 'default branch'}" for c in sources)
        reason = f"ignored push to {full_name} refs/heads/{branch}: the docs follow {tracked}"
        log.info("docs refresh skipped: %s", reason)
        return RefreshResult(False, reason)
    commit, done, current, failures = None, [], [], []
    for config in matching:
        loaded = docs_holder.loaded().get(config.key)
        if loaded is not None and loaded.docset.commit and loaded.docset.commit == event.get("after"):
            current.append(config.key)  # a redelivered push: nothing new to fetch
            commit = commit or loaded.docset.commit
            continue
        try:
            commit = docs_holder.refresh(config.key).docset.commit
            done.append(config.key)
        except (DocsFetchError, ConfigError) as exc:
            failures.append(f"{config.key}: {exc}")
    if failures:
        reason = f"refetch failed, keeping the docs in use: {'; '.join(failures)}"
    elif done:
        reason = f"refreshed {', '.join(done)} at commit {commit}"
    else:
        reason = f"already up to date at commit {commit}: {', '.join(current)}"
    log.log(logging.WARNING if failures else logging.INFO, "docs refresh: %s", reason)
    return RefreshResult(bool(done), reason, commit if done or current else None, tuple(done))
