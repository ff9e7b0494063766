"""The repair loop: compact fix requests, a bounded conversation, the token budget, stop reasons and auto-fixes."""

from __future__ import annotations

from typing import Any

from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

from dream_graph import build_graph
from dream_graph.evaluators import finding
from dream_graph.repair import (
    attempt_history,
    call_cost,
    findings_signature,
    format_findings,
    next_conversation,
    repair_step,
    tokens_of,
)

NODE = '''from aineko import AbstractNode


class Counter(AbstractNode):
    def _execute(self, params=None):
        return {body}
'''
PIPELINE = """```yaml
pipeline:
  name: counter
  nodes:
    counter:
      class: generated.Counter
  datasets: {}
```
"""


def reply(body: str = "None", prefix: str = "") -> str:
    return f"```python\n{prefix}{NODE.format(body=body)}```\n\n{PIPELINE}"


def undefined(i: int) -> str:
    return reply(body=f"missing_{i}")  # lint F821, a different name each time


class Recording(GenericFakeChatModel):
    """Keeps the conversation of every call, to see what was resent."""

    calls: list = []

    def _generate(self, messages, *args: Any, **kwargs: Any):
        self.calls.append(list(messages))
        return super()._generate(messages, *args, **kwargs)


def model(*replies: str) -> Recording:
    return Recording(messages=iter([AIMessage(r) for r in replies]), calls=[])


def ev(name: str, cycle: int, *findings: dict) -> dict:
    return {"cycle": cycle, "evaluator": name, "passed": not findings, "findings": list(findings)}


CODE = "import subprocess\n\nsubprocess.call(cmd, shell=True)\n"


def test_findings_are_grouped_deduplicated_quoted_and_info_is_left_out():
    evaluations = [
        ev("security", 1, finding("B602", "shell=True", 3), finding("B602", "shell=True", 3)),
        ev("lint", 1, finding("F821", "undefined name `cmd`", 3), finding("F401", "unused", 1, severity="info"),
           finding("S602", "shell", 3, severity="warning")),
    ]
    text = format_findings(evaluations, CODE)
    assert text.index("lint check failed") < text.index("security check failed")
    assert text.count("[B602] line 3") == 1
    assert "> subprocess.call(cmd, shell=True)" in text
    assert "F401" not in text  # info findings are reported in the state, not sent back
    assert "S602" not in text  # Ruff's copy of a Bandit finding on the same line


def test_findings_text_is_capped():
    many = [finding("F821", f"undefined name `n{i}` " + "x" * 80, i) for i in range(1, 19)]
    text = format_findings([ev("lint", 1, *many)], None, limit=600)
    assert len(text) < 800
    assert "more findings not shown" in text


def test_signature_ignores_moved_lines_but_counts_repeats():
    a = [ev("lint", 1, finding("F821", "undefined name `x`", 3))]
    moved = [ev("lint", 2, finding("F821", "undefined name `x`", 9))]
    twice = [ev("lint", 2, finding("F821", "undefined name `x`", 3), finding("F821", "undefined name `x`", 4))]
    assert findings_signature(a) == findings_signature(moved)
    assert findings_signature(a) != findings_signature(twice)


def test_history_summarises_older_attempts_by_their_rules():
    evaluations = [ev("lint", 1, finding("F821", "a", 1), finding("F821", "b", 2)), ev("syntax", 1),
                   ev("syntax", 2, finding("E999", "bad", 1)), ev("lint", 3, finding("F401", "c", 1))]
    text = attempt_history(evaluations, 3)
    assert "- attempt 1: lint F821 x2" in text and "- attempt 2: syntax E999" in text
    assert "attempt 3" not in text
    assert attempt_history(evaluations, 1) == ""


def test_next_conversation_keeps_the_first_request_and_only_the_latest_reply():
    first = [SystemMessage("sys"), HumanMessage("docs + request")]
    messages = [*first, AIMessage("reply 1"), HumanMessage("fix 1"), AIMessage("reply 2")]
    assert [m.content for m in next_conversation(messages, "fix 2")] == ["sys", "docs + request", "reply 2", "fix 2"]


def test_conversation_stays_bounded_over_many_cycles():
    llm = model(*(undefined(i) for i in range(5)))
    checks = ["syntax", "security", "lint", "config"]  # the loop's mechanics; the sandboxed aineko check adds nothing
    state = build_graph(chat_model=llm).invoke({"prompt": "count"}, context={"max_cycles": 5, "evaluators": checks})
    assert (state["status"], state["stop_reason"], state["cycles"]) == ("failed", "max_cycles", 5)
    for call in llm.calls:
        assert len(call) <= 4 and sum(isinstance(m, AIMessage) for m in call) <= 1
        assert sum("Write code for this request" in str(m.content) for m in call) == 1  # docs sent once
    last_fix = llm.calls[-1][-1].content
    assert "- attempt 1: lint F821" in last_fix and "- attempt 3: lint F821" in last_fix
    assert "missing_4" in last_fix or "missing_3" in last_fix
    sizes = [sum(len(str(m.content)) for m in call) for call in llm.calls]
    assert max(sizes[1:]) - min(sizes[1:]) < 400  # no growth with every retry
    assert state["tokens_used"] > 0


def test_token_budget_stops_the_loop():
    one = build_graph(chat_model=model(undefined(0))).invoke({"prompt": "count"}, context={"max_cycles": 1})
    spent_on_one_call = one["tokens_used"]
    llm = model(undefined(0), undefined(1), reply())
    state = build_graph(chat_model=llm).invoke(
        {"prompt": "count"}, context={"max_cycles": 3, "token_budget": spent_on_one_call + 50}
    )
    assert (state["status"], state["stop_reason"], state["cycles"]) == ("failed", "budget", 1)
    assert len(llm.calls) == 1
    assert state["tokens_used"] == spent_on_one_call


def test_same_findings_stop_with_no_progress():
    state = build_graph(chat_model=model(undefined(0), undefined(0), reply())).invoke(
        {"prompt": "count"}, context={"max_cycles": 5}
    )
    assert (state["status"], state["stop_reason"], state["cycles"]) == ("failed", "no_progress", 2)


def test_autofix_spares_an_llm_call_and_is_recorded():
    dirty = reply(prefix="import os\nimport subprocess\n")  # Bandit B404 on an unused import
    llm = model(dirty)
    state = build_graph(chat_model=llm).invoke({"prompt": "count"}, context={"max_cycles": 1})
    assert (state["status"], state["cycles"]) == ("passed", 1)
    assert state["autofixes"] == [{"cycle": 1, "tool": "ruff", "rules": ["F401"]}]
    assert "import subprocess" not in state["code"] and "import subprocess" not in state["response"]
    assert state["response"] == state["messages"][-1].content
    assert state["code"] in state["response"]


def test_without_autofix_the_unused_import_fails_the_checks():
    dirty = reply(prefix="import subprocess\n")
    state = build_graph(chat_model=model(dirty)).invoke(
        {"prompt": "count"}, context={"max_cycles": 1, "autofix": False}
    )
    assert (state["status"], state["autofixes"]) == ("failed", [])
    security = next(e for e in state["evaluations"] if e["evaluator"] == "security")
    assert "B404" in {f["rule"] for f in security["findings"]}


async def test_async_run_autofixes_too():
    dirty = reply(prefix="import os\n")
    state = await build_graph(chat_model=model(dirty)).ainvoke({"prompt": "count"}, context={"lint_strictness": "all"})
    assert state["status"] == "passed" and state["autofixes"][0]["rules"] == ["F401"]


# ---------------------------------------------------------------- the token budget, at its edges

FAST = ["syntax", "lint"]
"""Checks enough to fail an undefined name (lint F821) without a sandbox: these tests are about the loop."""


def usage(total_in: int, total_out: int) -> dict:
    return {"input_tokens": total_in, "output_tokens": total_out, "total_tokens": total_in + total_out}


def billed(*replies: tuple[str, int, int]) -> Recording:
    """A model whose replies carry the provider's token counts, so `tokens_used` has exact expected values."""
    return Recording(messages=iter([AIMessage(text, usage_metadata=usage(i, o)) for text, i, o in replies]), calls=[])


def cycle_two_state(tokens_used: int) -> dict:
    """The state `decide` sees after a failed second cycle: two replies in the conversation, the second billed."""
    first = AIMessage(undefined(0) + "\n" + "padding " * 200)  # a long old reply: it must not count as the next one's
    second = AIMessage(undefined(1), usage_metadata=usage(1000, 200))
    return {
        "cycles": 2,
        "tokens_used": tokens_used,
        "code": NODE.format(body="missing_1"),
        "evaluations": [ev("lint", 1, finding("F821", "undefined name `missing_0`", 6)),
                        ev("lint", 2, finding("F821", "undefined name `missing_1`", 6))],
        "messages": [SystemMessage("sys"), HumanMessage("docs + request"), first, HumanMessage("fix 1"), second],
    }


def test_budget_check_counts_the_next_call_and_the_reply_it_expects_at_the_exact_limit():
    state = cycle_two_state(tokens_used=500)
    unlimited = repair_step(state, max_cycles=5, token_budget=10**9)
    assert unlimited["tokens_used"] == 500 + 1200, "earlier cycles plus the provider's count for this call"
    conversation = unlimited["messages"]
    expected_reply = tokens_of([state["messages"][-1]])
    assert expected_reply < tokens_of(state["messages"][2:3])  # so counting the old reply instead would show
    need = 1700 + tokens_of(conversation) + expected_reply
    at_limit = repair_step(state, max_cycles=5, token_budget=need)
    assert at_limit.get("stop_reason") is None and at_limit["messages"] == conversation, "exactly at the budget: go on"
    over = repair_step(state, max_cycles=5, token_budget=need - 1)
    assert (over["status"], over["stop_reason"], over["tokens_used"]) == ("failed", "budget", 1700)
    assert "messages" not in over, "a stopped run sends nothing more"


def test_call_cost_prefers_the_providers_count_and_falls_back_to_an_estimate():
    messages = [HumanMessage("hello there"), AIMessage("a reply", usage_metadata=usage(30, 7))]
    assert call_cost(messages) == 37
    no_usage = [HumanMessage("hello there"), AIMessage("a reply")]
    assert call_cost(no_usage) == tokens_of(no_usage) > 0
    half = [HumanMessage("hello there"), AIMessage("a reply", usage_metadata=usage(30, 0))]
    assert call_cost(half) == tokens_of(half), "a count missing one side is not trusted"


REPLIES = [(undefined(0), 1000, 100), (undefined(1), 2000, 200), (undefined(2), 3000, 300), (reply(), 4000, 400)]


def needs(llm: Recording, cycle: int, spent: int) -> int:
    """Tokens `decide` must see room for after `cycle`: spent so far + the next call's conversation + the reply."""
    return spent + tokens_of(llm.calls[cycle]) + tokens_of([AIMessage(REPLIES[cycle - 1][0])])


def test_tokens_used_is_the_sum_over_every_cycle():
    llm = billed(*REPLIES)
    state = build_graph(chat_model=llm).invoke({"prompt": "count"}, context={"max_cycles": 4, "evaluators": FAST})
    assert (state["status"], state["cycles"]) == ("passed", 4)
    assert state["tokens_used"] == 1100 + 2200 + 3300 + 4400


def test_budget_stops_after_cycle_one_just_over_and_allows_cycle_two_exactly_at():
    probe = billed(*REPLIES)
    build_graph(chat_model=probe).invoke({"prompt": "count"}, context={"max_cycles": 4, "evaluators": FAST})
    need = needs(probe, 1, 1100)
    llm = billed(*REPLIES)
    state = build_graph(chat_model=llm).invoke(
        {"prompt": "count"}, context={"max_cycles": 4, "evaluators": FAST, "token_budget": need - 1}
    )
    assert (state["status"], state["stop_reason"], state["cycles"], len(llm.calls)) == ("failed", "budget", 1, 1)
    assert state["tokens_used"] == 1100
    llm = billed(*REPLIES)
    state = build_graph(chat_model=llm).invoke(
        {"prompt": "count"}, context={"max_cycles": 4, "evaluators": FAST, "token_budget": need}
    )
    assert len(llm.calls) >= 2 and state["cycles"] >= 2


def test_budget_stops_after_cycle_two_with_both_cycles_counted():
    probe = billed(*REPLIES)
    build_graph(chat_model=probe).invoke({"prompt": "count"}, context={"max_cycles": 4, "evaluators": FAST})
    need = needs(probe, 2, 1100 + 2200)
    assert need - 1 >= needs(probe, 1, 1100), "the budget lets cycle 1 through"
    llm = billed(*REPLIES)
    state = build_graph(chat_model=llm).invoke(
        {"prompt": "count"}, context={"max_cycles": 4, "evaluators": FAST, "token_budget": need - 1}
    )
    assert (state["status"], state["stop_reason"], state["cycles"], len(llm.calls)) == ("failed", "budget", 2, 2)
    assert state["tokens_used"] == 1100 + 2200
    llm = billed(*REPLIES)
    state = build_graph(chat_model=llm).invoke(
        {"prompt": "count"}, context={"max_cycles": 4, "evaluators": FAST, "token_budget": need}
    )
    assert len(llm.calls) >= 3


def test_a_stop_for_no_progress_still_reports_the_tokens_used():
    state = cycle_two_state(tokens_used=500)
    state["evaluations"][1] = ev("lint", 2, finding("F821", "undefined name `missing_0`", 9))  # the same, moved
    stopped = repair_step(state, max_cycles=5, token_budget=10**9)
    assert stopped == {"status": "failed", "stop_reason": "no_progress", "tokens_used": 1700}


def test_the_fix_request_repair_step_sends_names_this_attempt_and_the_earlier_ones():
    state = cycle_two_state(tokens_used=0)
    fix = repair_step(state, max_cycles=5, token_budget=10**9)["messages"][-1].content
    assert fix.startswith("Your previous response did not pass the automatic checks (attempt 2 of 5).")
    assert "- [F821] line 6: undefined name `missing_1`" in fix
    assert "Earlier attempts failed with (their replies are not repeated here):\n- attempt 1: lint F821\n\n" in fix


def test_a_budget_stop_is_logged_with_the_figures(caplog):
    state = cycle_two_state(tokens_used=500)
    conversation = repair_step(state, max_cycles=5, token_budget=10**9)["messages"]
    needed = tokens_of(conversation) + tokens_of([state["messages"][-1]])
    with caplog.at_level("INFO", logger="dream_graph.repair"):
        repair_step(state, max_cycles=5, token_budget=1700 + needed - 1)
    assert caplog.messages == [f"repair stopped: 1700 tokens used, next call needs ~{needed}, budget {1700 + needed - 1}"]


def test_an_empty_conversation_costs_nothing():
    assert call_cost([]) == 0
