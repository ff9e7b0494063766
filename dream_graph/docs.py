"""The documentation in use: loaded once, swapped atomically on refresh, split into sections for the prompt."""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass

from langchain_core.messages.utils import count_tokens_approximately

from dream_graph.settings import Settings, get_settings
from dream_graph.sources import DocSet
from dream_graph.sources.bundled import load_bundled
from dream_graph.sources.local import load_local

_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
_FENCE = re.compile(r"^\s*(```|~~~)")


@dataclass(frozen=True)
class Section:
    """A heading and the text under it, code blocks kept whole."""

    path: str
    heading: str
    text: str

    @property
    def tokens(self) -> int:
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


def load_configured(settings: Settings | None = None) -> DocSet:
    """The configured source: DREAM_GRAPH_DOCS_DIR if set, else the bundled snapshot."""
    settings = settings or get_settings()
    if settings.docs_dir:
        return load_local(settings.docs_dir)
    return load_bundled()


class DocsHolder:
    """Holds the current DocSet; readers get a consistent snapshot while a refresh swaps in a new one."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._docset: DocSet | None = None
        self._sections: list[Section] | None = None

    def get(self) -> tuple[DocSet, list[Section]]:
        """The current snapshot, loading the configured source on first use."""
        with self._lock:
            if self._docset is None:
                docset = load_configured()
                self._docset, self._sections = docset, split_sections(docset)
            return self._docset, self._sections  # type: ignore[return-value]

    def set(self, docset: DocSet) -> None:
        """Swap in new docs in one step (in-flight runs keep the snapshot they already read)."""
        sections = split_sections(docset)
        with self._lock:
            self._docset, self._sections = docset, sections

    def reset(self) -> None:
        """Forget the loaded docs (tests, and a changed DREAM_GRAPH_DOCS_DIR)."""
        with self._lock:
            self._docset = self._sections = None


docs_holder = DocsHolder()
