"""The fix request's text, exactly (which findings it lists, how it quotes them, where its caps cut), and the safe
fixes applied before it."""

from __future__ import annotations

from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

from dream_graph.evaluators import finding
from dream_graph.repair import (
    MAX_FINDINGS_PER_EVALUATOR,
    attempt_history,
    autofix,
    fix_message,
    format_findings,
    initial_messages,
    summarize_attempt,
)

CODE = "import subprocess\n\nsubprocess.call(cmd, shell=True)\nprint(total)\n"


def ev(name: str, cycle: int, *findings: dict) -> dict:
    return {"cycle": cycle, "evaluator": name, "passed": not findings, "findings": list(findings)}


def test_the_findings_text_is_exactly_grouped_quoted_and_deduplicated():
    evaluations = [
        ev("lint", 1,
           finding("F821", "undefined name `cmd`", 3),
           finding("F821", "undefined name `cmd`", 3),  # a duplicate: listed once...
           finding("F821", "undefined name `total`", 4),  # ...and what follows a duplicate is still listed
           finding("F821", "undefined name `cmd`", 4),  # same rule and message on another line: its own item
           finding("PLE0001", "no line to point at"),
           finding("F999", "a line past the end", 99)),
        ev("syntax", 1),
    ]
    assert format_findings(evaluations, CODE) == (
        "lint check failed:\n"
        "- [F821] line 3: undefined name `cmd`\n    > subprocess.call(cmd, shell=True)\n"
        "- [F821] line 4: undefined name `total`\n    > print(total)\n"
        "- [F821] line 4: undefined name `cmd`\n    > print(total)\n"
        "- [PLE0001]: no line to point at\n"
        "- [F999] line 99: a line past the end"
    )
    assert format_findings(evaluations, None).splitlines()[1] == "- [F821] line 3: undefined name `cmd`"


def test_each_check_lists_at_most_its_cap_and_counts_the_rest():
    def lint_with(n: int) -> list[dict]:
        return [ev("lint", 1, *(finding("F821", f"undefined name `n{i}`", None) for i in range(n)))]

    at_cap = format_findings(lint_with(MAX_FINDINGS_PER_EVALUATOR), None, limit=10**6).splitlines()
    assert len(at_cap) == 1 + MAX_FINDINGS_PER_EVALUATOR and "more" not in at_cap[-1]
    over = format_findings(lint_with(MAX_FINDINGS_PER_EVALUATOR + 1), None, limit=10**6).splitlines()
    assert len(over) == 2 + MAX_FINDINGS_PER_EVALUATOR
    assert over[-1] == "- ... and 1 more from this check"


def test_the_character_cap_keeps_a_finding_exactly_at_the_limit_and_counts_the_ones_over_it():
    first, second, third = (finding("F821", f"undefined name `{c * 30}`") for c in "abc")
    items = [f"- [F821]: {f['message']}" for f in (first, second, third)]
    header = "lint check failed:"
    exact = len(items[0]) + 1 + len(items[1]) + len(header)  # the second item just fits
    fits = format_findings([ev("lint", 1, first, second)], None, limit=exact)
    assert fits == header + "\n" + items[0] + "\n" + items[1]
    cut = format_findings([ev("lint", 1, first, second, third)], None, limit=exact - 1)
    assert cut == f"{header}\n{items[0]}\n\n(2 more findings not shown; fix the ones above first)"


def test_the_character_cap_counts_each_earlier_check_with_its_header():
    lint = ev("lint", 1, finding("F821", "undefined name `x`"))
    syntax = ev("syntax", 1, finding("E999", "invalid syntax"))
    lint_block = "lint check failed:\n- [F821]: undefined name `x`"
    syntax_item, syntax_header = "- [E999]: invalid syntax", "syntax check failed:"
    # used after the lint block: its item + 1, its header + 2; the syntax item fits when used + item + header <= limit
    exact = (len("- [F821]: undefined name `x`") + 1) + (len("lint check failed:") + 2) + len(syntax_item) + len(
        syntax_header
    )
    assert format_findings([lint, syntax], None, limit=exact) == f"{lint_block}\n\n{syntax_header}\n{syntax_item}"
    assert format_findings([lint, syntax], None, limit=exact - 1) == (
        f"{lint_block}\n\n(1 more findings not shown; fix the ones above first)"
    )


def test_one_attempt_summarised_exactly():
    evaluations = [
        ev("syntax", 1, finding("E999", "bad")),
        ev("lint", 1, finding("F821", "a", 1), finding("F401", "b", 2), finding("F821", "c", 3),
           finding("S101", "info only", 4, severity="info")),
        ev("lint", 2, finding("F821", "later", 1)),
    ]
    assert summarize_attempt(1, evaluations) == "- attempt 1: lint F821 x2, F401; syntax E999"
    assert summarize_attempt(3, evaluations) == "- attempt 3: passed"


def test_history_keeps_the_newest_attempts_that_fit_in_order_at_the_exact_limit():
    evaluations = [ev("lint", c, finding(f"F82{c}", "x")) for c in (1, 2, 3)]
    lines = [f"- attempt {c}: lint F82{c}" for c in (1, 2, 3)]
    prefix = "Earlier attempts failed with (their replies are not repeated here):\n"
    every = len(lines[0]) + 1 + len(lines[1]) + 1 + len(lines[2])
    assert attempt_history(evaluations, 4, limit=every) == prefix + "\n".join(lines) + "\n\n"
    assert attempt_history(evaluations, 4, limit=every - 1) == prefix + "\n".join(lines[1:]) + "\n\n"
    assert attempt_history(evaluations, 4, limit=len(lines[2])) == prefix + lines[2] + "\n\n"
    assert attempt_history(evaluations, 4, limit=len(lines[2]) - 1) == ""


def test_the_fix_request_names_the_attempt_and_adds_only_the_history_given():
    evaluations = [ev("syntax", 2, finding("E999", "invalid syntax", 1))]
    text = fix_message(evaluations, "x = (\n", 2, 3)
    assert text.startswith("Your previous response did not pass the automatic checks (attempt 2 of 3).\n\n")
    assert "syntax check failed:\n- [E999] line 1: invalid syntax\n    > x = (\n\nRestate your full response" in text
    with_history = fix_message(evaluations, None, 2, 3, history="- attempt 1: lint F821\n\n")
    assert "invalid syntax\n\n- attempt 1: lint F821\n\nRestate" in with_history


def test_initial_messages_without_a_reply_are_the_whole_conversation():
    first = [SystemMessage("system"), HumanMessage("request")]
    assert initial_messages(first) == first and initial_messages(first) is not first


# ---------------------------------------------------------------- autofix: Ruff's safe fixes applied to the state

UNUSED = "import os\nimport sys\n\nprint(sys.argv)\n"
FIXED = "import sys\n\nprint(sys.argv)\n"


def fixable_state(**extra) -> dict:
    block = f"```python\n{UNUSED}```"
    response = f"{block}\n\nThe same code again, for reference:\n\n{block}\n"
    messages = [SystemMessage("system"), HumanMessage("ask"), AIMessage(response)]
    return {"code": UNUSED, "response": response, "cycles": 2, "messages": messages, **extra}


async def test_autofix_rewrites_the_first_copy_of_the_code_in_the_reply_and_records_the_rules():
    state = fixable_state()
    update = await autofix(state)  # on unless switched off
    assert update["code"] == FIXED
    first, second = update["response"].split("The same code again")
    assert first == f"```python\n{FIXED}```\n\n" and second.count("import os") == 1, "only the checked block changes"
    assert update["messages"][:2] == state["messages"][:2] and isinstance(update["messages"][-1], AIMessage)
    assert update["messages"][-1].content == update["response"] and state["messages"][-1].content != update["response"]
    assert update["autofixes"] == [{"cycle": 2, "tool": "ruff", "rules": ["F401"]}]
    assert await autofix(state, enabled=False) == {}


async def test_autofix_keeps_earlier_records_and_leaves_a_conversation_not_ending_in_a_reply_alone():
    earlier = {"cycle": 1, "tool": "ruff", "rules": ["F541"]}
    request = HumanMessage(f"please fix:\n{UNUSED}")
    state = fixable_state(autofixes=[earlier], messages=[AIMessage("old reply"), request])
    update = await autofix(state)
    assert update["autofixes"] == [earlier, {"cycle": 2, "tool": "ruff", "rules": ["F401"]}]
    assert update["messages"] == [AIMessage("old reply"), request], "only a reply at the end is rewritten"
    bare = await autofix({"code": UNUSED})
    assert bare["response"] == "" and bare["messages"] == [] and bare["autofixes"][0]["cycle"] == 0


async def test_a_failing_autofix_is_logged_and_changes_nothing(monkeypatch, caplog):
    from dream_graph.evaluators import lint

    async def broken(code):
        raise RuntimeError("ruff is gone")

    monkeypatch.setattr(lint, "safe_fixes", broken)
    with caplog.at_level("WARNING", logger="dream_graph.repair"):
        assert await autofix(fixable_state()) == {}
    assert caplog.messages == ["auto-fix skipped: ruff is gone"]
