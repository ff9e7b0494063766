"""Prompt tokens: retrieval within the docs budget against stuffing every doc (the original), and needed sections kept.

Each request in data/prompt_requests.json is labelled with the doc sections it needs; a prompt is built by the graph's
own `retrieve_docs` and `build_prompt` nodes, so the count is what the model would be sent on the first cycle.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

DATA = Path(__file__).with_name("data") / "prompt_requests.json"
WHAT_IF_BUDGETS = (1000, 700)
"""Tighter budgets than the default, to show what retrieval can give up and what it keeps."""


def load_requests() -> tuple[str, list[dict[str, Any]]]:
    """The docs source and the labelled requests; a label naming no real section is an error in the data."""
    data = json.loads(DATA.read_text(encoding="utf-8"))
    return data["docs"], data["requests"]


def first_prompt(prompt: str, docs: str, budget: int) -> tuple[int, set[tuple[str, str]]]:
    """Prompt tokens of the first cycle and the (path, heading) of each doc section in it."""
    from dream_graph.graph import build_prompt, retrieve_docs

    state: dict[str, Any] = {"prompt": prompt}
    state.update(retrieve_docs(state, {"configurable": {"docs": docs, "docs_budget": budget}}))
    tokens = build_prompt(state)["prompt_tokens"]
    return tokens, {(s["path"], s["heading"]) for s in state["doc_sections"]}


def _check_labels(docs: str, requests: list[dict[str, Any]]) -> None:
    """Catch a typo in the labels (or renamed docs) instead of scoring it as a dropped section."""
    _, every = first_prompt("labels", docs, 0)
    unknown = {(n["path"], n["heading"]) for r in requests for n in r["needs"]} - every
    if unknown:
        raise ValueError(f"{DATA} labels sections the docs do not have: {sorted(unknown)}")


def measure(docs: str, requests: list[dict[str, Any]], budget: int, baseline: list[int]) -> dict[str, Any]:
    """Token ratio against stuffing everything, and the share of labelled sections kept, over every request."""
    tokens, needed, kept, complete = [], 0, 0, 0
    for request, base in zip(requests, baseline):
        count, sections = first_prompt(request["prompt"], docs, budget)
        needs = {(n["path"], n["heading"]) for n in request["needs"]}
        tokens.append(count)
        needed += len(needs)
        kept += len(needs & sections)
        complete += needs <= sections
    ratios = [t / b for t, b in zip(tokens, baseline)]
    return {
        "docs_budget": budget,
        "median_prompt_tokens": statistics.median(tokens),
        "tokens_vs_all_docs": round(sum(tokens) / sum(baseline), 3),
        "max_ratio": round(max(ratios), 3),
        "needed_kept": round(kept / needed, 3),
        "requests_complete": f"{complete}/{len(requests)}",
    }


def run(quick: bool = False) -> dict:
    """All docs (budget 0) as the baseline, the default budget, and tighter what-if budgets."""
    from dream_graph.settings import get_settings

    docs, requests = load_requests()
    if quick:
        requests = requests[:3]
    _check_labels(docs, requests)
    baseline = [first_prompt(r["prompt"], docs, 0)[0] for r in requests]
    default = get_settings().docs_budget
    rows = [
        {"config": "all docs (original)", **measure(docs, requests, 0, baseline)},
        {"config": "retrieval, default budget", **measure(docs, requests, default, baseline)},
        *({"config": "retrieval, what-if", **measure(docs, requests, b, baseline)} for b in WHAT_IF_BUDGETS),
    ]
    chosen = rows[1]
    return {
        "docs": docs,
        "requests": len(requests),
        "rows": rows,
        "goal": "at most 1/3 of the tokens of all docs, at least 90% of needed sections kept (default budget)",
        "goal_met": chosen["tokens_vs_all_docs"] <= 1 / 3 and chosen["needed_kept"] >= 0.9,
    }
