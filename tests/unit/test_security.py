"""Bandit in-process: thresholds, skips, and no silent pass on unparsable code."""

import asyncio

from dream_graph.context import Context
from dream_graph.evaluators import EvalInput
from dream_graph.evaluators.security import NOT_SCANNED_RULE, SecurityEvaluator, scan
from dream_graph.evaluators.syntax import check_syntax

RISKY = "import pickle\nimport subprocess\n\n\ndef f(cmd, blob):\n    assert cmd\n    subprocess.call(cmd, shell=True)\n    return pickle.loads(blob)\n"


def test_findings_carry_rule_line_severity():
    rules = {(f["rule"], f["line"], f["severity"]) for f in scan(RISKY)}
    assert ("B602", 7, "high") in rules
    assert ("B301", 8, "medium") in rules
    assert ("B404", 2, "low") in rules
    assert not any(r == "B101" for r, _, _ in rules), "assert is skipped by default"


def test_threshold_and_skip_are_configurable():
    high_only = {f["rule"] for f in scan(RISKY, severity="HIGH")}
    assert high_only == {"B602"}
    with_assert = {f["rule"] for f in scan(RISKY, skip=())}
    assert "B101" in with_assert


def test_unparsable_code_is_never_clean():
    (only,) = scan("def f(:\n    pass\n")
    assert only["rule"] == NOT_SCANNED_RULE and only["severity"] == "error"


def test_evaluator_uses_run_options_and_handles_no_code():
    ev = SecurityEvaluator()
    opts = Context(bandit_severity="medium", bandit_skip=[])
    found = asyncio.run(ev.evaluate(RISKY, EvalInput(options=opts)))
    assert {f["rule"] for f in found} == {"B602", "B301"}
    assert asyncio.run(ev.evaluate(None, EvalInput()))[0]["rule"] == NOT_SCANNED_RULE


def test_syntax_check():
    assert check_syntax("x = 1\n") == []
    (f,) = check_syntax("x = (\n")
    assert f["rule"] == "E999" and f["line"] == 1
    assert check_syntax("x = '\\x00'") == []
    assert check_syntax("x = 1\x00")[0]["rule"] == "E999"


def test_process_pool_gives_the_same_findings(monkeypatch):
    from dream_graph.settings import get_settings
    from dream_graph.workers import _process_pool, shutdown_pool

    monkeypatch.setenv("DREAM_GRAPH_EVAL_PROCESSES", "1")
    get_settings.cache_clear()
    try:
        found = asyncio.run(SecurityEvaluator().evaluate(RISKY, EvalInput()))
        pool = _process_pool()
        assert pool is not None and pool._max_workers == 1
    finally:
        shutdown_pool()
    assert [f["rule"] for f in found] == [f["rule"] for f in scan(RISKY)]
