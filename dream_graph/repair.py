"""The repair loop's policy: when to stop, what the fix request says, how the conversation stays small."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.messages.utils import count_tokens_approximately

from dream_graph.evaluators import is_blocking
from dream_graph.prompts import render
from dream_graph.state import Evaluation, Finding

log = logging.getLogger(__name__)

MAX_FINDINGS_PER_EVALUATOR = 20
MAX_FINDINGS_CHARS = 6000
"""Cap on the findings text of one fix request (about 1,500 tokens); the rest is counted, not sent."""
MAX_HISTORY_CHARS = 1500
MAX_QUOTE_CHARS = 200


def blocking_findings(evaluation: Evaluation) -> list[Finding]:
    """The findings that failed the check (the "info" ones are reported, never sent back)."""
    return [f for f in evaluation["findings"] if is_blocking(f)]


def findings_signature(evaluations: list[Evaluation]) -> frozenset[tuple]:
    """What a cycle found, as a multiset without line numbers, so moved-but-unchanged problems count as no progress."""
    counts = Counter(
        (e["evaluator"], f["rule"], f["message"]) for e in evaluations if not e["passed"] for f in blocking_findings(e)
    )
    return frozenset(counts.items())


def _quote(code: str | None, line: int | None) -> str:
    if not code or not line:
        return ""
    lines = code.splitlines()
    if 1 <= line <= len(lines):
        return f"\n    > {lines[line - 1].strip()[:MAX_QUOTE_CHARS]}"
    return ""


def _bandit_twins(evaluations: list[Evaluation]) -> set[tuple[int | None, str]]:
    """(line, number) of every Bandit finding, to drop Ruff's S-rule copy of the same problem."""
    return {
        (f.get("line"), f["rule"][1:])
        for e in evaluations
        if e["evaluator"] == "security"
        for f in e["findings"]
        if f["rule"].startswith("B")
    }


def _items(ev: Evaluation, code: str | None, twins: set[tuple[int | None, str]]) -> list[str]:
    seen: set[tuple] = set()
    items: list[str] = []
    for f in blocking_findings(ev):
        key = (f["rule"], f.get("line"), f["message"])
        twin = ev["evaluator"] == "lint" and f["rule"].startswith("S") and (f.get("line"), f["rule"][1:]) in twins
        if key in seen or twin:
            continue
        seen.add(key)
        where = f" line {f['line']}" if f.get("line") else ""
        items.append(f"- [{f['rule']}]{where}: {f['message']}{_quote(code, f.get('line'))}")
    if len(items) > MAX_FINDINGS_PER_EVALUATOR:
        extra = len(items) - MAX_FINDINGS_PER_EVALUATOR
        items = items[:MAX_FINDINGS_PER_EVALUATOR] + [f"- ... and {extra} more from this check"]
    return items


def format_findings(evaluations: list[Evaluation], code: str | None, limit: int = MAX_FINDINGS_CHARS) -> str:
    """Failing checks grouped by evaluator, deduplicated, quoted, and capped at `limit` characters."""
    twins = _bandit_twins(evaluations)
    parts: list[str] = []
    used, dropped = 0, 0
    for ev in sorted(evaluations, key=lambda e: e["evaluator"]):
        if ev["passed"]:
            continue
        header = f"{ev['evaluator']} check failed:"
        kept: list[str] = []
        for item in _items(ev, code, twins):
            if used + len(item) + len(header) > limit and (parts or kept):
                dropped += 1
                continue
            kept.append(item)
            used += len(item) + 1
        if kept:
            parts.append(header + "\n" + "\n".join(kept))
            used += len(header) + 2
    if dropped:
        parts.append(f"({dropped} more findings not shown; fix the ones above first)")
    return "\n\n".join(parts)


def summarize_attempt(cycle: int, evaluations: list[Evaluation]) -> str:
    """An earlier attempt in one line: which checks failed with which rules (its reply is not resent)."""
    failed = [e for e in evaluations if e["cycle"] == cycle and not e["passed"]]
    if not failed:
        return f"- attempt {cycle}: passed"
    rules = "; ".join(
        f"{e['evaluator']} " + ", ".join(f"{r} x{n}" if n > 1 else r for r, n in Counter(
            f["rule"] for f in blocking_findings(e)).items())
        for e in sorted(failed, key=lambda e: e["evaluator"])
    )
    return f"- attempt {cycle}: {rules}"


def attempt_history(evaluations: list[Evaluation], cycle: int, limit: int = MAX_HISTORY_CHARS) -> str:
    """Earlier attempts (before `cycle`) as their findings, newest kept when the text must be cut."""
    lines = [summarize_attempt(c, evaluations) for c in range(1, cycle)]
    kept: list[str] = []
    for line in reversed(lines):
        if sum(len(k) + 1 for k in kept) + len(line) > limit:
            break
        kept.insert(0, line)
    if not kept:
        return ""
    return "Earlier attempts failed with (their replies are not repeated here):\n" + "\n".join(kept) + "\n\n"


def fix_message(
    evaluations: list[Evaluation], code: str | None, cycle: int, max_cycles: int, history: str = ""
) -> str:
    """The user message that asks the model for a corrected reply."""
    return render(
        "fix", findings=format_findings(evaluations, code), cycle=cycle, max_cycles=max_cycles, history=history
    )


def initial_messages(messages: Sequence[BaseMessage]) -> list[BaseMessage]:
    """The system message and the first request (docs included): sent once per call, never duplicated."""
    for i, message in enumerate(messages):
        if isinstance(message, AIMessage):
            return list(messages[:i])
    return list(messages)


def next_conversation(messages: Sequence[BaseMessage], fix: str) -> list[BaseMessage]:
    """First request + the latest reply + one fix request; older replies live on only as findings in `fix`."""
    replies = [m for m in messages if isinstance(m, AIMessage)]
    return [*initial_messages(messages), *replies[-1:], HumanMessage(fix)]


def tokens_of(messages: Sequence[BaseMessage]) -> int:
    """Approximate tokens, counted offline, the same way for every provider."""
    return int(count_tokens_approximately(list(messages)))


def call_cost(messages: Sequence[BaseMessage]) -> int:
    """Tokens of the call that produced the last reply: the provider's count when it reports one."""
    last = messages[-1] if messages else None
    usage = getattr(last, "usage_metadata", None) or {}
    if isinstance(last, AIMessage) and usage.get("input_tokens") and usage.get("output_tokens"):
        return int(usage["input_tokens"]) + int(usage["output_tokens"])
    return tokens_of(messages)


def repair_step(state: dict[str, Any], max_cycles: int, token_budget: int) -> dict[str, Any]:
    """After a cycle's checks: stop (passed, max_cycles, no_progress, budget) or build the next, compact conversation."""
    cycle = state["cycles"]
    evaluations: list[Evaluation] = state.get("evaluations") or []
    messages: list[BaseMessage] = state["messages"]
    used = int(state.get("tokens_used") or 0) + call_cost(messages)
    current = [e for e in evaluations if e["cycle"] == cycle]
    if all(e["passed"] for e in current):
        return {"status": "passed", "stop_reason": "passed", "tokens_used": used}
    if cycle >= max_cycles:
        return {"status": "failed", "stop_reason": "max_cycles", "tokens_used": used}
    previous = [e for e in evaluations if e["cycle"] == cycle - 1]
    if previous and findings_signature(current) == findings_signature(previous):
        return {"status": "failed", "stop_reason": "no_progress", "tokens_used": used}
    fix = fix_message(current, state.get("code"), cycle, max_cycles, attempt_history(evaluations, cycle))
    conversation = next_conversation(messages, fix)
    reply_tokens = tokens_of([m for m in messages if isinstance(m, AIMessage)][-1:])
    if used + tokens_of(conversation) + reply_tokens > token_budget:
        log.info("repair stopped: %d tokens used, next call needs ~%d, budget %d",
                 used, tokens_of(conversation) + reply_tokens, token_budget)
        return {"status": "failed", "stop_reason": "budget", "tokens_used": used}
    return {"messages": conversation, "tokens_used": used}


async def autofix(state: dict[str, Any], enabled: bool = True) -> dict[str, Any]:
    """Apply Ruff's safe fixes to this cycle's code, so trivial findings never cost an LLM call; record what changed."""
    code = state.get("code")
    if not enabled or not code or not code.strip():
        return {}
    from dream_graph.evaluators.lint import safe_fixes

    try:
        fixed, rules = await safe_fixes(code)
    except Exception as exc:  # the checks still run on the unfixed code
        log.warning("auto-fix skipped: %s", exc)
        return {}
    if not rules:
        return {}
    messages = list(state.get("messages") or [])
    if messages and isinstance(messages[-1], AIMessage) and isinstance(messages[-1].content, str):
        messages[-1] = messages[-1].model_copy(update={"content": messages[-1].content.replace(code, fixed, 1)})
    record = {"cycle": state.get("cycles", 0), "tool": "ruff", "rules": rules}
    return {
        "code": fixed,
        "response": (state.get("response") or "").replace(code, fixed, 1),
        "messages": messages,
        "autofixes": [*(state.get("autofixes") or []), record],
    }
