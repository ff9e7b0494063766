"""Pick the documentation sections for one request: core API always, then BM25-ranked sections up to a token budget."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from rank_bm25 import BM25Plus

if TYPE_CHECKING:
    from dream_graph.docs import Section

CORE_MARKER = "<!-- dream-graph: core -->"
"""Put this comment in a section of your own docs to keep it in every prompt."""

_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Za-z][a-z0-9]*|\d+")
_STOPWORDS = frozenset(
    "a an and are as at be by can do does for from has have how i if in into is it its me my of on or our "  # noqa: SIM905
    "please should so that the then this to was we what when where which while will with would you your".split()
)


def tokenize(text: str) -> list[str]:
    """Words for BM25: identifiers split at `_` and camelCase, lower case, stopwords out, plural `s` off."""
    words = (w.lower() for w in _WORD.findall(text))
    return [w[:-1] if len(w) > 3 and w.endswith("s") and not w.endswith("ss") else w for w in words if w not in _STOPWORDS]


def build_index(sections: Sequence[Section]) -> BM25Plus | None:
    """A BM25+ index over the sections (BM25+ keeps scores positive even for a corpus of one or two sections)."""
    corpus = [tokenize(f"{s.heading}\n{s.text}") for s in sections]
    return BM25Plus(corpus) if any(corpus) else None


def is_core(section: Section, core_headings: re.Pattern[str] | None) -> bool:
    """Sections that define the framework's API: marked with CORE_MARKER, or a heading matching the pattern."""
    return CORE_MARKER in section.text or bool(core_headings and core_headings.search(section.heading))


def _cost(section: Section) -> int:
    return section.tokens + 1  # the blank line that joins sections


@dataclass(frozen=True)
class Selection:
    """The sections for one prompt, in document order, and what the selection had to give up."""

    sections: list[Section]
    tokens: int
    dropped: int = 0
    warnings: list[str] = field(default_factory=list)


def select_sections(
    sections: Sequence[Section],
    query: str,
    budget: int,
    *,
    index: BM25Plus | None = None,
    core: Sequence[bool] | None = None,
) -> Selection:
    """Core sections first, then the best BM25 matches that still fit `budget` tokens; 0 means every section."""
    if budget < 0:
        raise ValueError(f"docs budget must be 0 (no limit) or a positive number of tokens, got {budget}")
    if budget == 0 or not sections:
        return Selection(list(sections), sum(_cost(s) for s in sections))
    core = core if core is not None else [False] * len(sections)
    terms = tokenize(query)
    index = index if index is not None else build_index(sections)
    scores = list(index.get_scores(terms)) if index is not None and terms else [0.0] * len(sections)
    chosen = {i for i, keep in enumerate(core) if keep}
    used = sum(_cost(sections[i]) for i in chosen)
    warnings = []
    if used > budget:
        warnings.append(
            f"the core API sections alone take {used} tokens, more than the docs budget of {budget}; kept anyway"
        )
    for i in sorted(set(range(len(sections))) - chosen, key=lambda i: (-scores[i], i)):
        if used + _cost(sections[i]) <= budget:
            chosen.add(i)
            used += _cost(sections[i])
    return Selection([sections[i] for i in sorted(chosen)], used, len(sections) - len(chosen), warnings)
