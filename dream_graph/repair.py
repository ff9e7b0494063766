"""Decide what happens after a cycle's checks, and word the fix request from the findings."""

from __future__ import annotations

from dream_graph.prompts import render
from dream_graph.state import Evaluation

MAX_FINDINGS_PER_EVALUATOR = 20


def findings_signature(evaluations: list[Evaluation]) -> frozenset[tuple]:
    """What a cycle found, order-free, for spotting a cycle that made no progress."""
    return frozenset(
        (e["evaluator"], f["rule"], f.get("line"), f["message"])
        for e in evaluations
        for f in e["findings"]
        if not e["passed"]
    )


def _quote(code: str | None, line: int | None) -> str:
    if not code or not line:
        return ""
    lines = code.splitlines()
    if 1 <= line <= len(lines):
        return f"\n    > {lines[line - 1].strip()[:200]}"
    return ""


def format_findings(evaluations: list[Evaluation], code: str | None) -> str:
    """Failing checks grouped by evaluator, deduplicated, each finding with its rule, line and quoted code."""
    parts: list[str] = []
    for ev in evaluations:
        if ev["passed"]:
            continue
        seen: set[tuple] = set()
        items: list[str] = []
        for f in ev["findings"]:
            key = (f["rule"], f.get("line"), f["message"])
            if key in seen:
                continue
            seen.add(key)
            where = f"line {f['line']}" if f.get("line") else "whole reply"
            items.append(f"- [{f['rule']}] {where}: {f['message']}{_quote(code, f.get('line'))}")
        if len(items) > MAX_FINDINGS_PER_EVALUATOR:
            extra = len(items) - MAX_FINDINGS_PER_EVALUATOR
            items = items[:MAX_FINDINGS_PER_EVALUATOR] + [f"- ... and {extra} more of the same kind"]
        parts.append(f"{ev['evaluator']} check failed:\n" + "\n".join(items))
    return "\n\n".join(parts)


def fix_message(evaluations: list[Evaluation], code: str | None, cycle: int, max_cycles: int) -> str:
    """The user message that asks the model for a corrected reply."""
    return render("fix", findings=format_findings(evaluations, code), cycle=cycle, max_cycles=max_cycles)
