"""Pick the documentation sections for one request: core API always, then the relevant BM25-ranked sections up to a
token budget; a section scoring far below the best match stays out even when the budget has room."""

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


def _index_text(section: Section, title: str) -> str:
    """The section with its document's title: "aineko run" in "The aineko command line" should match "command line"."""
    context = f"{title}\n" if title != section.heading else ""
    return f"{context}{section.heading}\n{section.text}"


def build_index(sections: Sequence[Section]) -> BM25Plus | None:
    """A BM25+ index over the sections (BM25+ keeps scores positive even for a corpus of one or two sections)."""
    titles: dict[str, str] = {}
    for s in sections:
        titles.setdefault(s.path, s.heading)  # a document's first heading is its title
    corpus = [tokenize(_index_text(s, titles[s.path])) for s in sections]
    return BM25Plus(corpus) if any(corpus) else None


def relevance(index: BM25Plus | None, terms: Sequence[str], size: int) -> list[float]:
    """BM25+ scores minus the floor BM25+ gives a section that matches no term, so 0 means "not relevant at all"."""
    if index is None or not terms:
        return [0.0] * size
    floor = sum((index.idf.get(t) or 0.0) * index.delta for t in terms)
    return [max(0.0, float(score) - floor) for score in index.get_scores(list(terms))]


def is_core(section: Section, core_headings: re.Pattern[str] | None) -> bool:
    """Sections that define the framework's API: marked with CORE_MARKER, or a heading matching the pattern."""
    return CORE_MARKER in section.text or bool(core_headings and core_headings.search(section.heading))


_NO_MATCH = 1e-9
"""Relevance at or below this is float noise around BM25+'s no-match floor."""


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
    min_score: float = 0.0,
) -> Selection:
    """Core sections first, then the best BM25 matches that fit `budget` tokens (0 means every section) and score at
    least `min_score` times the best non-core match (0 turns that cutoff off)."""
    if budget < 0:
        raise ValueError(f"docs budget must be 0 (no limit) or a positive number of tokens, got {budget}")
    if not 0.0 <= min_score <= 1.0:
        raise ValueError(f"docs min score must be a fraction of the best match from 0 to 1, got {min_score}")
    if budget == 0 or not sections:
        return Selection(list(sections), sum(_cost(s) for s in sections))
    core = core if core is not None else [False] * len(sections)
    index = index if index is not None else build_index(sections)
    scores = relevance(index, tokenize(query), len(sections))
    chosen = {i for i, keep in enumerate(core) if keep}
    cutoff = min_score * max((scores[i] for i in range(len(sections)) if i not in chosen), default=0.0)
    used = sum(_cost(sections[i]) for i in chosen)
    warnings = []
    if used > budget:
        warnings.append(
            f"the core API sections alone take {used} tokens, more than the docs budget of {budget}; kept anyway"
        )
    ranked = sorted(set(range(len(sections))) - chosen, key=lambda i: (-scores[i], i))
    relevant = [i for i in ranked if min_score == 0 or (scores[i] > _NO_MATCH and scores[i] >= cutoff)]
    for i in relevant if relevant or chosen else ranked:  # docs with no core and no match: fill by rank, not nothing
        if used + _cost(sections[i]) <= budget:
            chosen.add(i)
            used += _cost(sections[i])
    return Selection([sections[i] for i in sorted(chosen)], used, len(sections) - len(chosen), warnings)
