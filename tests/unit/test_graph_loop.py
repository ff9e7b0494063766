"""The QA loop driven by LangChain's fake chat models: routes, cycles, statuses and fix messages."""

from __future__ import annotations

import asyncio

import pytest
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, HumanMessage

from dream_graph import build_graph
from dream_graph.context import default_evaluators
from dream_graph.errors import PromptError
from dream_graph.evaluators import finding, register, reset_registry

CLEAN = '''```python
from aineko import AbstractNode


def add(a: int, b: int) -> int:
    return a + b


class Adder(AbstractNode):
    def _execute(self, params=None):
        return None
```

```yaml
pipeline:
  name: adder
  nodes:
    adder:
      class: generated.Adder
  datasets: {}
```
'''
SYNTAX_ERROR = "```python\ndef add(a, b)\n    return a + b\n```\n"
BANDIT = "```python\nimport subprocess\n\n\ndef run(cmd):\n    return subprocess.call(cmd, shell=True)\n```\n"
NO_CODE = "I cannot help with that, but here is some prose without any code block."


def fake(*replies: str) -> GenericFakeChatModel:
    return GenericFakeChatModel(messages=iter([AIMessage(r) for r in replies]))


def run(model, prompt: str = "write an adder", **context):
    graph = build_graph(chat_model=model)
    return graph.invoke({"prompt": prompt}, context=context or None)


def fix_messages(state) -> list[str]:
    return [m.content for m in state["messages"] if isinstance(m, HumanMessage)][1:]


def test_passes_at_once():
    state = run(fake(CLEAN))
    assert state["status"] == "passed"
    assert state["stop_reason"] == "passed"
    assert state["cycles"] == 1
    assert "def add" in state["code"]
    assert "name: adder" in state["config_yaml"]
    assert {e["evaluator"] for e in state["evaluations"]} == set(default_evaluators())
    assert {"syntax", "security", "lint", "config"} <= set(default_evaluators())
    assert all(e["passed"] and e["cycle"] == 1 for e in state["evaluations"])
    assert fix_messages(state) == []
    assert state["model"].startswith("generic-fake-chat-model")


def test_syntax_error_then_pass_sends_fix_with_line_and_rule():
    state = run(fake(SYNTAX_ERROR, CLEAN))
    assert (state["status"], state["cycles"]) == ("passed", 2)
    first = [e for e in state["evaluations"] if e["cycle"] == 1]
    syntax = next(e for e in first if e["evaluator"] == "syntax")
    assert not syntax["passed"] and syntax["findings"][0]["rule"] == "E999"
    assert syntax["findings"][0]["line"] == 1
    # the checks that need a parse are not run on it (each would only restate E999): none of them passed it
    assert sorted(e["evaluator"] for e in first) == ["config", "syntax"]
    assert {e["evaluator"] for e in state["evaluations"] if e["cycle"] == 2} == set(default_evaluators())
    (fix,) = fix_messages(state)
    assert "[E999] line 1" in fix and "def add(a, b)" in fix
    assert "not-scanned" not in fix and "not-linted" not in fix
    assert "full response" in fix.lower() or "restate" in fix.lower()


def test_bandit_finding_then_pass():
    state = run(fake(BANDIT, CLEAN))
    assert (state["status"], state["cycles"]) == ("passed", 2)
    security = next(e for e in state["evaluations"] if e["cycle"] == 1 and e["evaluator"] == "security")
    rules = {f["rule"] for f in security["findings"]}
    assert "B602" in rules
    b602 = next(f for f in security["findings"] if f["rule"] == "B602")
    assert b602["line"] == 5 and b602["severity"] == "high"
    (fix,) = fix_messages(state)
    assert "[B602] line 5" in fix
    assert "subprocess.call(cmd, shell=True)" in fix


def test_fails_every_time_until_max_cycles():
    bad = [f"```python\ndef f{i}(:\n    pass\n```" for i in range(3)]  # different lines, so progress is seen
    state = run(fake(*bad, CLEAN), max_cycles=3, evaluators=["syntax", "security", "lint", "config"])
    assert state["status"] == "failed"
    assert state["stop_reason"] == "max_cycles"
    assert state["cycles"] == 3
    (fix,) = fix_messages(state)  # older attempts are summarised in the latest fix request, not resent
    assert "attempt 1: config config-missing; syntax E999\n" in fix
    assert {e["cycle"] for e in state["evaluations"]} == {1, 2, 3}


def test_identical_findings_stop_early():
    state = run(fake(SYNTAX_ERROR, SYNTAX_ERROR, CLEAN), max_cycles=5)
    assert state["status"] == "failed"
    assert state["stop_reason"] == "no_progress"
    assert state["cycles"] == 2


def test_reply_without_code_is_a_syntax_finding():
    state = run(fake(NO_CODE, CLEAN))
    assert state["status"] == "passed" and state["cycles"] == 2
    syntax = next(e for e in state["evaluations"] if e["cycle"] == 1 and e["evaluator"] == "syntax")
    assert syntax["findings"][0]["rule"] == "no-code"
    assert "no python code block" in syntax["findings"][0]["message"]
    assert "no python code block" in fix_messages(state)[0]


def test_options_through_configurable():
    graph = build_graph(chat_model=fake(SYNTAX_ERROR, BANDIT, CLEAN))
    state = graph.invoke({"prompt": "x"}, config={"configurable": {"max_cycles": 2, "evaluators": ["syntax"]}})
    # only syntax runs, so the Bandit-flagged second reply passes
    assert state["cycles"] == 2 and state["status"] == "passed"
    assert {e["evaluator"] for e in state["evaluations"]} == {"syntax"}
    assert "shell=True" in state["code"]


def test_route_taken_and_evaluators_in_one_parallel_step():
    graph = build_graph(chat_model=fake(SYNTAX_ERROR, CLEAN))
    steps: dict[str, list[int]] = {}
    for event in graph.stream({"prompt": "x"}, stream_mode="debug"):
        if event["type"] == "task":
            steps.setdefault(event["payload"]["name"], []).append(event["step"])
    order = sorted(steps, key=lambda n: steps[n][0])
    assert order[:3] == ["retrieve_docs", "build_prompt", "generate"]
    # generate also splits the reply into code and config: the checks run in the very next step
    assert steps["generate"] == [3, 6] and steps["decide"] == [5, 8] and steps["record"] == [9]
    assert steps["evaluate_syntax"] == steps["evaluate_config"] == [4, 7]
    assert steps["evaluate_security"] == steps["evaluate_lint"] == [7], "not on the reply that does not parse"
    assert len(steps) == 4 + 1 + len(default_evaluators()), "docs, prompt, generate, the checks, decide, record"


def test_async_invoke_matches_sync():
    graph = build_graph(chat_model=fake(BANDIT, CLEAN))
    state = asyncio.run(graph.ainvoke({"prompt": "x"}))
    assert (state["status"], state["cycles"]) == ("passed", 2)


@pytest.mark.parametrize("prompt", ["", "   ", "x" * 8001])
def test_bad_prompts_are_refused_with_a_reason(prompt):
    with pytest.raises(PromptError, match="prompt is (empty|8001 characters)"):
        run(fake(CLEAN), prompt=prompt)


def test_unknown_evaluator_is_named():
    with pytest.raises(Exception, match="unknown evaluator.*nope"):
        run(fake(CLEAN), evaluators=["syntax", "nope"])


def test_provider_failure_ends_as_error_and_keeps_state():
    class Boom(GenericFakeChatModel):
        def _generate(self, *a, **k):
            raise ConnectionError("provider unreachable")

    state = run(Boom(messages=iter([])))
    assert state["status"] == "error"
    assert "provider unreachable" in state["error"]
    assert state["cycles"] == 1
    assert len(state["messages"]) == 2  # the prompt is kept


class Noting:
    """A plugin check that reports the given findings on every cycle."""

    def __init__(self, name: str, *severities: str) -> None:
        self.name, self.severities = name, severities

    async def evaluate(self, code, context):
        return [finding(f"N{i}", f"note {i} ({s})", line=1, severity=s) for i, s in enumerate(self.severities)]


@pytest.fixture
def plugins():
    """Register plugin checks for one test, and forget them afterwards."""
    yield register
    reset_registry()


def test_info_findings_never_fail_a_check_in_the_graph(plugins):
    plugins(Noting("notes", "info", "info"))
    state = run(fake(CLEAN), evaluators=["syntax", "notes"])
    notes = next(e for e in state["evaluations"] if e["evaluator"] == "notes")
    assert notes["passed"] is True and [f["severity"] for f in notes["findings"]] == ["info", "info"]
    assert (state["status"], state["stop_reason"], state["cycles"]) == ("passed", "passed", 1)


@pytest.mark.parametrize("severity", ["warning", "low", "error", ""])
def test_one_non_info_finding_fails_the_check_and_only_it_is_sent_back(plugins, severity):
    plugins(Noting("notes", "info", severity))
    state = run(fake(CLEAN, CLEAN, CLEAN), evaluators=["syntax", "notes"], max_cycles=3)
    first = next(e for e in state["evaluations"] if e["evaluator"] == "notes" and e["cycle"] == 1)
    assert first["passed"] is False and len(first["findings"]) == 2, "the info finding is kept in the state"
    assert (state["status"], state["stop_reason"], state["cycles"]) == ("failed", "no_progress", 2)
    (fix,) = fix_messages(state)
    assert "[N1] line 1" in fix and "[N0]" not in fix


def test_a_registration_that_replaces_a_built_in_stays_in_place(plugins):
    from dream_graph.evaluators import get_registry

    get_registry()  # built-ins loaded once
    quiet = plugins(Noting("syntax", "info"))
    assert get_registry()["syntax"] is quiet and get_registry()["syntax"] is quiet, "not reloaded over on every lookup"
    state = run(fake(NO_CODE), evaluators=["syntax"])
    assert state["status"] == "passed", "the replacement, not the built-in no-code check, ran"


class Parsing:
    """A plugin check that needs a parse (or, with needs_parse False, one that does not) and fails every reply."""

    def __init__(self, name: str, needs_parse: bool | None) -> None:
        self.name = name
        if needs_parse is not None:
            self.needs_parse = needs_parse
        self.seen: list[str | None] = []

    async def evaluate(self, code, context):
        self.seen.append(code)
        return [finding("P1", f"{self.name} saw the code")]


@pytest.mark.parametrize(
    ("code", "parsed"),
    [
        (None, False),
        ("", False),
        ("  \n", False),
        ("def f(:\n", False),
        ("x = 1\x00", False),  # NUL byte: a ValueError, not a SyntaxError
        ("x = 1\n", True),
        ("\n", False),
    ],
)
def test_checks_that_need_a_parse_run_only_on_code_that_parses(plugins, code, parsed):
    from dream_graph.evaluators import checks_for, get_registry

    plugins(Parsing("needy", True))
    plugins(Parsing("plain", False))
    plugins(Parsing("unmarked", None))
    names = ["plain", "security", "syntax", "needy", "lint", "unmarked", "config"]
    kept = checks_for(names, code, get_registry())
    assert kept == (names if parsed else ["plain", "syntax", "unmarked", "config"]), "order kept, others dropped"
    assert checks_for([n for n in names if n != "syntax"], code, get_registry()) == [n for n in names if n != "syntax"]


def test_without_the_syntax_check_unparsable_code_still_fails_every_check_that_needs_a_parse():
    state = run(fake(SYNTAX_ERROR, CLEAN), evaluators=["security", "lint"])
    first = {e["evaluator"]: e for e in state["evaluations"] if e["cycle"] == 1}
    assert set(first) == {"security", "lint"}, "no syntax check to say it, so they run and say it themselves"
    assert not first["security"]["passed"] and first["security"]["findings"][0]["rule"] == "not-scanned"
    assert not first["lint"]["passed"] and first["lint"]["findings"][0]["rule"] == "not-linted"
    assert (state["status"], state["cycles"]) == ("passed", 2)


def test_a_run_of_only_checks_that_need_a_parse_is_not_passed_by_an_unparsable_reply(plugins):
    needy = plugins(Parsing("needy", True))
    state = run(fake(SYNTAX_ERROR, SYNTAX_ERROR.replace("b)", "c)")), evaluators=["syntax", "needy"], max_cycles=2)
    assert needy.seen == [], "never shown code that does not parse"
    assert (state["status"], state["stop_reason"]) == ("failed", "max_cycles")
    assert {e["evaluator"] for e in state["evaluations"]} == {"syntax"}


def test_a_plugin_in_place_of_the_syntax_check_does_not_switch_the_parse_gate_on(plugins):
    from dream_graph.evaluators import checks_for, get_registry

    get_registry()
    plugins(Noting("syntax", "info"))  # passes everything, code that does not parse included
    needy = plugins(Parsing("needy", True))
    assert checks_for(["syntax", "needy"], "def f(:\n", get_registry()) == ["syntax", "needy"]
    state = run(fake(SYNTAX_ERROR, SYNTAX_ERROR.replace("b)", "c)")), evaluators=["syntax", "needy"], max_cycles=2)
    assert needy.seen and state["status"] == "failed", "the check that needs a parse ran and failed it"


def test_a_subclass_of_the_syntax_check_in_its_place_does_not_switch_the_parse_gate_on(plugins):
    from dream_graph.evaluators import checks_for, get_registry
    from dream_graph.evaluators.syntax import SyntaxEvaluator, check_syntax

    class Lenient(SyntaxEvaluator):  # E999 reported as info: it passes code that does not parse
        async def evaluate(self, code, context):
            return [{**f, "severity": "info"} for f in check_syntax(code)]

    get_registry()
    plugins(Lenient())
    assert checks_for(["syntax", "security"], "def f(:\n", get_registry()) == ["syntax", "security"]
    state = run(fake(SYNTAX_ERROR, CLEAN), evaluators=["syntax", "security", "lint"])
    first = {e["evaluator"]: e["passed"] for e in state["evaluations"] if e["cycle"] == 1}
    assert first == {"syntax": True, "security": False, "lint": False}, "security and lint ran and failed it"
    assert state["cycles"] == 2


def test_the_parse_gate_follows_the_checks_the_graph_was_built_with_not_later_registrations(plugins):
    from dream_graph.evaluators import get_registry

    get_registry()
    plugins(Noting("syntax", "info"))  # a syntax check that passes everything
    graph = build_graph(chat_model=fake(SYNTAX_ERROR, CLEAN))
    reset_registry()  # the built-in syntax check is registered again; the graph's node still runs the plugin
    state = graph.invoke({"prompt": "x"}, context={"evaluators": ["syntax", "security", "lint"]})
    first = {e["evaluator"]: e["passed"] for e in state["evaluations"] if e["cycle"] == 1}
    assert first == {"syntax": True, "security": False, "lint": False}
    assert (state["status"], state["cycles"]) == ("passed", 2)


DEEP = ["x = " + "[1," * 200, "x = " + "-" * 3000 + "1"]  # the parser gives up: MemoryError, RecursionError


@pytest.mark.parametrize("code", DEEP)
def test_code_the_parser_gives_up_on_goes_to_every_check_and_fails_them(code):
    import ast

    from dream_graph.evaluators import checks_for, get_registry

    with pytest.raises((MemoryError, RecursionError)):  # not a SyntaxError: the case under test
        ast.parse(code)
    names = ["syntax", "security", "lint"]
    assert checks_for(names, code, get_registry()) == names
    state = run(fake(f"```python\n{code}\n```\n", CLEAN), evaluators=names)
    first = {e["evaluator"]: e for e in state["evaluations"] if e["cycle"] == 1}
    assert set(first) == set(names) and not any(e["passed"] for e in first.values())
    assert first["syntax"]["findings"][0]["rule"] == "evaluator-error"
    assert (state["status"], state["cycles"]) == ("passed", 2), "the run went on to the repair"
