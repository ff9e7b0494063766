"""Documentation fetched from a GitHub repository with PyGithub, pinned to one commit, with bounded retries."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import requests
from github import Auth, Github, GithubException
from github.ContentFile import ContentFile
from github.GithubException import BadCredentialsException, RateLimitExceededException, UnknownObjectException
from github.Repository import Repository
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt

from dream_graph.errors import DreamGraphError
from dream_graph.settings import Settings
from dream_graph.sources import Doc, DocSet
from dream_graph.sources.local import DOC_SUFFIXES
from dream_graph.sources.spec import DocsSourceConfig

log = logging.getLogger(__name__)


class DocsFetchError(DreamGraphError):
    """A fetch that failed; `transient` failures (network, 5xx, rate limit) are worth retrying, the rest are not."""

    def __init__(self, message: str, *, transient: bool, reset_at: datetime | None = None) -> None:
        super().__init__(message)
        self.transient = transient
        self.reset_at = reset_at


@dataclass(frozen=True)
class GitHubOptions:
    """How to reach GitHub and how hard to try."""

    base_url: str = "https://api.github.com"
    token: str | None = None
    timeout: int = 15
    attempts: int = 3
    retry_wait: float = 1.0
    rate_limit_max_wait: float = 60.0

    @classmethod
    def from_settings(cls, settings: Settings) -> GitHubOptions:
        """The options the environment asks for (GITHUB_API_URL, GITHUB_TOKEN, DREAM_GRAPH_DOCS_FETCH_*)."""
        return cls(
            base_url=settings.github_api_url.rstrip("/"),
            token=settings.github_token.get_secret_value() if settings.github_token else None,
            timeout=settings.github_timeout,
            attempts=settings.docs_fetch_attempts,
            retry_wait=settings.docs_retry_wait,
            rate_limit_max_wait=settings.docs_rate_limit_max_wait,
        )


def _header(exc: GithubException, name: str) -> str | None:
    for key, value in (exc.headers or {}).items():
        if key.lower() == name:
            return str(value)
    return None


def _reset_at(exc: GithubException) -> datetime | None:
    """When GitHub says the limit lifts: X-RateLimit-Reset (epoch seconds) or Retry-After (seconds)."""
    try:
        if reset := _header(exc, "x-ratelimit-reset"):
            return datetime.fromtimestamp(int(reset), tz=UTC)
        if after := _header(exc, "retry-after"):
            return datetime.fromtimestamp(time.time() + int(after), tz=UTC)
    except ValueError:
        pass
    return None


def _translate(exc: Exception, what: str, opts: GitHubOptions) -> DocsFetchError:
    """PyGithub/requests errors as one message a user can act on."""
    if isinstance(exc, BadCredentialsException) or getattr(exc, "status", None) == 401:
        return DocsFetchError(
            "GitHub rejected the token (401 Bad credentials): fix or unset GITHUB_TOKEN / GITHUB_ACCESS_TOKEN",
            transient=False,
        )
    if isinstance(exc, RateLimitExceededException) or getattr(exc, "status", None) == 429:
        reset = _reset_at(exc)  # type: ignore[arg-type]
        when = f"; it resets at {reset:%Y-%m-%d %H:%M:%S} UTC" if reset else ""
        return DocsFetchError(
            f"GitHub API rate limit exceeded{when} (set GITHUB_TOKEN for a higher limit)", transient=True, reset_at=reset
        )
    if isinstance(exc, UnknownObjectException) or getattr(exc, "status", None) == 404:
        return DocsFetchError(
            f"{what} was not found on GitHub (404): check the repository, branch and paths of the docs source "
            "(a private repository also needs GITHUB_TOKEN)",
            transient=False,
        )
    if isinstance(exc, GithubException):
        transient = exc.status >= 500
        return DocsFetchError(f"GitHub answered {exc.status} for {what}: {exc.message or exc.data}", transient=transient)
    reason = re.search(r"\[Errno -?\d+\] ([^'\")]+)", str(exc))  # requests nests the OS error in a long repr
    detail = reason.group(1) if reason else str(exc)[:200]
    return DocsFetchError(f"cannot reach GitHub at {opts.base_url} ({type(exc).__name__}: {detail})", transient=True)


def _call(fn: Callable[[], Any], what: str, opts: GitHubOptions) -> Any:
    try:
        return fn()
    except (GithubException, requests.RequestException) as exc:
        raise _translate(exc, what, opts) from exc


def _to_doc(content: ContentFile, warnings: list[str]) -> Doc | None:
    if content.encoding != "base64":  # GitHub leaves out the content of files over 1 MB
        warnings.append(f"skipped {content.path}: GitHub does not return its content ({content.size} bytes)")
        return None
    return Doc(path=content.path, text=content.decoded_content.decode("utf-8", errors="replace"))


def _collect(repo: Repository, path: str, ref: str, opts: GitHubOptions, warnings: list[str]) -> list[Doc]:
    """A file as itself; a folder as its markdown/text files, recursively, in path order."""
    what = f"path {path!r}" if path else "the repository root"
    listing = _call(lambda: repo.get_contents(path, ref=ref), what, opts)
    if not isinstance(listing, list):
        return [doc] if (doc := _to_doc(listing, warnings)) else []
    docs: list[Doc] = []
    for item in sorted(listing, key=lambda c: c.path):
        if item.type == "dir" or (item.type == "file" and item.path.lower().endswith(DOC_SUFFIXES)):
            docs.extend(_collect(repo, item.path, ref, opts, warnings))
    return docs


def fetch_once(config: DocsSourceConfig, opts: GitHubOptions) -> DocSet:
    """One attempt: resolve the branch to a commit, then read every path at that commit (a consistent copy)."""
    gh = Github(
        base_url=opts.base_url,
        auth=Auth.Token(opts.token) if opts.token else None,
        timeout=opts.timeout,
        retry=None,  # retries are ours: bounded, and they fall back instead of sleeping for an hour
        seconds_between_requests=None,
        user_agent="dream-graph",
    )
    try:
        repo: Repository = _call(lambda: gh.get_repo(config.repo), f"repository {config.repo}", opts)
        branch = config.branch or repo.default_branch
        sha = _call(lambda: repo.get_branch(branch).commit.sha, f"branch {branch!r} of {config.repo}", opts)
        warnings: list[str] = []
        docs: dict[str, Doc] = {}
        for path in config.paths or ("",):
            for doc in _collect(repo, path, sha, opts, warnings):
                docs.setdefault(doc.path, doc)
    finally:
        gh.close()
    if not docs:
        raise DocsFetchError(
            f"no {', '.join(DOC_SUFFIXES)} files under {', '.join(config.paths) or 'the root'} "
            f"of {config.repo}@{branch}",
            transient=False,
        )
    return DocSet(
        source=f"github:{config.repo}@{branch}",
        docs=tuple(docs.values()),
        warnings=tuple(warnings),
        commit=sha,
        fetched_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )


def _worth_retrying(opts: GitHubOptions) -> Callable[[BaseException], bool]:
    def check(exc: BaseException) -> bool:
        if not isinstance(exc, DocsFetchError) or not exc.transient:
            return False
        if exc.reset_at is not None:  # waiting longer than allowed: fall back now, say when it resets
            return (exc.reset_at - datetime.now(UTC)).total_seconds() <= opts.rate_limit_max_wait
        return True

    return check


def _backoff(opts: GitHubOptions) -> Callable[[RetryCallState], float]:
    def wait(state: RetryCallState) -> float:
        delay = opts.retry_wait * 2 ** (state.attempt_number - 1)
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, DocsFetchError) and exc.reset_at is not None:
            delay = max(delay, (exc.reset_at - datetime.now(UTC)).total_seconds())
        return max(0.0, delay)

    return wait


def fetch_github(config: DocsSourceConfig, opts: GitHubOptions, *, sleep: Callable[[float], None] = time.sleep) -> DocSet:
    """Fetch with exponential backoff on transient failures (at most `opts.attempts` tries); raise DocsFetchError."""
    if config.kind != "github":
        raise ValueError(f"not a GitHub source: {config.key}")
    retrying = Retrying(
        stop=stop_after_attempt(max(1, opts.attempts)),
        wait=_backoff(opts),
        retry=retry_if_exception(_worth_retrying(opts)),
        sleep=sleep,
        reraise=True,
        before_sleep=lambda s: log.warning(
            "docs fetch from %s failed (attempt %d): %s; retrying", config.key, s.attempt_number, s.outcome.exception()
        ),
    )
    return retrying(fetch_once, config, opts)
