"""Docs source specs: one string names a source, in pipeline files and in DREAM_GRAPH_DOCS_SOURCE.

    bundled                                  the snapshot shipped with the package (framework aineko)
    bundled:<framework>                      another shipped snapshot
    local:<dir>                              a folder of markdown/text files
    github                                   the default GitHub target (DEFAULT_GITHUB below)
    github:<owner>/<repo>[@<branch>][:<path>,<path>...]
                                             files or folders (expanded recursively) in a GitHub repo;
                                             no branch: the repo's default branch; no paths: the whole repo
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

from dream_graph.errors import ConfigError
from dream_graph.sources.bundled import DEFAULT_FRAMEWORK

DEFAULT_GITHUB_REPO = "aineko-dev/aineko"
DEFAULT_GITHUB_BRANCH = "develop"
DEFAULT_GITHUB_PATHS = ("docs/developer_guide/aineko_project.md", "docs/developer_guide/node_implementation.md")
DEFAULT_GITHUB = f"github:{DEFAULT_GITHUB_REPO}@{DEFAULT_GITHUB_BRANCH}:{','.join(DEFAULT_GITHUB_PATHS)}"

_REPO = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})/[A-Za-z0-9._-]{1,100}$")
_BRANCH_BAD = re.compile(r"(^[/.]|\.\.|[\s~^:?*\[\\]|@\{|/$|\.lock$|\.$)")
_SYNTAX = "bundled, bundled:<framework>, local:<dir>, github, or github:<owner>/<repo>[@<branch>][:<path>,...]"

Kind = Literal["bundled", "local", "github"]


@dataclass(frozen=True)
class DocsSourceConfig:
    """A parsed docs source; `key` is its canonical spec, used to cache and look up its docs."""

    kind: Kind
    framework: str = DEFAULT_FRAMEWORK
    folder: str | None = None
    repo: str | None = None
    branch: str | None = None
    paths: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        """The canonical spec string: equal sources give equal keys."""
        if self.kind == "bundled":
            return f"bundled:{self.framework}"
        if self.kind == "local":
            return f"local:{self.folder}"
        return f"github:{self.repo}" + (f"@{self.branch}" if self.branch else "") + (
            f":{','.join(self.paths)}" if self.paths else ""
        )


def _bad(spec: str, why: str) -> ConfigError:
    return ConfigError(f"docs source {spec!r}: {why}. Use {_SYNTAX}")


def _parse_github(spec: str, rest: str) -> DocsSourceConfig:
    target, _, path_list = rest.partition(":")
    repo, at, branch = target.partition("@")
    if not _REPO.match(repo):
        raise _bad(spec, f"{repo!r} is not an owner/repo name")
    if at and (not branch or _BRANCH_BAD.search(branch)):
        raise _bad(spec, f"{branch!r} is not a valid branch name")
    paths = tuple(p.strip().strip("/") for p in path_list.split(",") if p.strip().strip("/"))
    if any(".." in p.split("/") for p in paths):
        raise _bad(spec, "paths must stay inside the repository (no '..')")
    return DocsSourceConfig(kind="github", repo=repo, branch=branch or None, paths=tuple(dict.fromkeys(paths)))


@lru_cache(maxsize=256)
def parse_docs_source(spec: str) -> DocsSourceConfig:
    """Parse a docs source spec (see the module docstring); a ConfigError says what is wrong and the syntax."""
    text = (spec or "").strip()
    kind, _, rest = text.partition(":")
    kind = kind.lower()
    if kind == "bundled":
        framework = rest.strip() or DEFAULT_FRAMEWORK
        if not re.fullmatch(r"[A-Za-z0-9_-]+", framework):
            raise _bad(spec, f"{framework!r} is not a framework name")
        return DocsSourceConfig(kind="bundled", framework=framework)
    if kind == "local":
        if not rest.strip():
            raise _bad(spec, "local needs a folder, e.g. local:./docs")
        return DocsSourceConfig(kind="local", folder=rest.strip())
    if kind == "github":
        return parse_docs_source(DEFAULT_GITHUB) if not rest.strip() else _parse_github(spec, rest.strip())
    raise _bad(spec, f"unknown source kind {kind!r}" if text else "it is empty")
