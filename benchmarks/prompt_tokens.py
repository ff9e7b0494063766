"""Prompt tokens: retrieval at the default settings against stuffing every doc (the original), and needed sections kept.

Each request in data/prompt_requests.json is labelled with the doc sections it needs. The default configuration's prompt
is built by the graph's own `retrieve_docs` and `build_prompt` nodes, so its count is what the model is sent on the
first cycle; what-if rows change the budget or the relevance cutoff (DREAM_GRAPH_DOCS_MIN_SCORE) through the same
selection. The headline ratio is total prompt tokens over the whole set against all docs (the median ratio is reported
too), and the share of labelled sections kept is given over every label and over the non-core labels only (the core
sections are always kept, so the second share is the one retrieval has to earn).
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

DATA = Path(__file__).with_name("data") / "prompt_requests.json"
WHAT_IF = (("no relevance cutoff", None, 0.0), ("looser cutoff", None, 0.25), ("stricter cutoff", None, 0.5))
"""(label, budget or None for the default, min_score): what the cutoff buys, and what a looser or stricter one costs."""

Key = tuple[str, str]


def load_requests() -> tuple[str, list[dict[str, Any]]]:
    """The docs source and the labelled requests."""
    data = json.loads(DATA.read_text(encoding="utf-8"))
    return data["docs"], data["requests"]


def first_prompt(prompt: str, docs: str, budget: int, min_score: float | None = None) -> tuple[int, set[Key]]:
    """Prompt tokens of the first cycle and the (path, heading) of each doc section in it; `min_score` None is the
    configured cutoff, run through the graph's own nodes."""
    from dream_graph.docs import docs_for
    from dream_graph.graph import build_prompt, retrieve_docs

    state: dict[str, Any] = {"prompt": prompt}
    if min_score is None:
        state.update(retrieve_docs(state, {"configurable": {"docs": docs, "docs_budget": budget}}))
        keys = {(s["path"], s["heading"]) for s in state["doc_sections"]}
    else:
        chosen = docs_for(docs).select(prompt, budget, min_score)
        state["documentation"] = "\n\n".join(s.text for s in chosen.sections)
        keys = {(s.path, s.heading) for s in chosen.sections}
    return build_prompt(state)["prompt_tokens"], keys


def _check_labels(docs: str, requests: list[dict[str, Any]]) -> set[Key]:
    """Catch a typo in the labels (or renamed docs) instead of scoring it as a dropped section; returns the core keys."""
    from dream_graph.docs import docs_for

    snapshot = docs_for(docs)
    every = {(s.path, s.heading) for s in snapshot.sections}
    unknown = {(n["path"], n["heading"]) for r in requests for n in r["needs"]} - every
    if unknown:
        raise ValueError(f"{DATA} labels sections the docs do not have: {sorted(unknown)}")
    return {(s.path, s.heading) for s, keep in zip(snapshot.sections, snapshot.core) if keep}


def measure(
    docs: str, requests: list[dict[str, Any]], budget: int, baseline: list[int], core: set[Key], min_score: float | None
) -> dict[str, Any]:
    """Token ratio against stuffing everything, the share of labelled sections kept, and the requests that lost one."""
    tokens, needed, kept, needed_nc, kept_nc, misses = [], 0, 0, 0, 0, []
    for request in requests:
        count, sections = first_prompt(request["prompt"], docs, budget, min_score)
        needs = {(n["path"], n["heading"]) for n in request["needs"]}
        tokens.append(count)
        needed, kept = needed + len(needs), kept + len(needs & sections)
        needed_nc, kept_nc = needed_nc + len(needs - core), kept_nc + len((needs - core) & sections)
        if not needs <= sections:
            misses.append({"prompt": request["prompt"], "missing": sorted(h for _, h in needs - sections)})
    ratios = [t / b for t, b in zip(tokens, baseline)]
    return {
        "docs_budget": budget,
        "min_score": min_score,
        "median_prompt_tokens": statistics.median(tokens),
        "tokens_vs_all_docs": round(sum(tokens) / sum(baseline), 3),
        "median_ratio": round(statistics.median(ratios), 3),
        "max_ratio": round(max(ratios), 3),
        "needed_kept": round(kept / needed, 3),
        "needed_kept_non_core": round(kept_nc / needed_nc, 3) if needed_nc else 1.0,
        "requests_complete": f"{len(requests) - len(misses)}/{len(requests)}",
        "misses": misses,
    }


def run(quick: bool = False) -> dict:
    """All docs (budget 0) as the baseline, the default settings, and what-if cutoffs."""
    from dream_graph.settings import get_settings

    docs, requests = load_requests()
    if quick:
        requests = requests[:3]
    core = _check_labels(docs, requests)
    settings = get_settings()
    baseline = [first_prompt(r["prompt"], docs, 0)[0] for r in requests]
    default = measure(docs, requests, settings.docs_budget, baseline, core, None)
    default["min_score"] = settings.docs_min_score
    rows = [
        {"config": "all docs (original)", **measure(docs, requests, 0, baseline, core, None)},
        {"config": "retrieval, default settings", **default},
        *(
            {"config": f"what-if: {label}", **measure(docs, requests, budget or settings.docs_budget, baseline, core, m)}
            for label, budget, m in WHAT_IF
        ),
    ]
    return {
        "docs": docs,
        "requests": len(requests),
        "all_docs_tokens_total": sum(baseline),
        "rows": rows,
        "misses_at_default": default["misses"],
        "goal": "total prompt tokens over the set at most 1/3 of all docs, at least 90% of needed sections kept "
        "(default settings)",
        "goal_met": default["tokens_vs_all_docs"] <= 1 / 3 and default["needed_kept"] >= 0.9,
    }
