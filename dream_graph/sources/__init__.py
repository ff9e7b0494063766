"""Where the target framework's documentation comes from: one module per source."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Doc:
    """One documentation file: its path inside the source, and its text."""

    path: str
    text: str


@dataclass(frozen=True)
class DocSet:
    """A snapshot of documentation, labelled with where it came from (shown to users and recorded).

    `commit` (the Git SHA) and `fetched_at` (ISO 8601, UTC) are set for GitHub copies, fresh or cached.
    """

    source: str
    docs: tuple[Doc, ...]
    warnings: tuple[str, ...] = field(default=())
    commit: str | None = None
    fetched_at: str | None = None
