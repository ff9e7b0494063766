"""Bandit in-process: thresholds, skips, and no silent pass on unparsable code."""

import asyncio

from dream_graph.context import Context
from dream_graph.evaluators import EvalInput
from dream_graph.evaluators.security import CHUNK_MIN_LINES, NOT_SCANNED_RULE, SecurityEvaluator, scan, split_for_workers
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


SPREAD = (
    "import pickle\nimport subprocess as sp\n\nPASSWORD = 'hunter2'\n\n\n@decorator\ndef f(cmd, blob):\n"
    "    sp.call(cmd, shell=True)\n    return pickle.loads(blob)\n\n\nclass A:\n    def g(self):\n"
    "        eval(input())  # nosec B307\n        eval(input())\n\n\nx = __import__('os').system('ls')\n"
)


def test_split_parts_keep_imports_and_line_numbers_and_add_up_to_the_whole():
    parts = split_for_workers(SPREAD, 2)
    assert len(parts) == 2
    assert all(p.count("\n") == SPREAD.count("\n") for p in parts)
    assert all("import subprocess as sp" in p for p in parts)
    assert "class A" not in parts[0] and "class A" in parts[1]
    merged = {(f["rule"], f["line"]) for p in parts for f in scan(p)}
    assert merged == {(f["rule"], f["line"]) for f in scan(SPREAD)}
    assert ("B602", 9) in merged and ("B307", 16) in merged and ("B307", 15) not in merged
    assert split_for_workers("def f(:\n", 2) == ["def f(:\n"]


def test_big_module_spread_over_two_processes_gives_the_same_findings(monkeypatch):
    from dream_graph.settings import get_settings
    from dream_graph.workers import shutdown_pool

    big = SPREAD + "".join(f"\n\ndef filler_{i}(x):\n    return x + {i}\n" for i in range(60))
    assert big.count("\n") >= CHUNK_MIN_LINES
    monkeypatch.setenv("DREAM_GRAPH_EVAL_PROCESSES", "2")
    get_settings.cache_clear()
    try:
        found = asyncio.run(SecurityEvaluator().evaluate(big, EvalInput()))
    finally:
        shutdown_pool()
    assert found == scan(big)


def test_a_cycles_evaluators_share_one_parse():
    from dream_graph.evaluators import get_registry
    from dream_graph.evaluators.base import parse_module

    code = "from aineko import AbstractNode\n\n\nclass N(AbstractNode):\n    def _execute(self, params=None):\n        return None\n"
    yaml_text = "pipeline:\n  name: p\n  nodes:\n    n:\n      class: x.N\n  datasets: {}\n"
    parse_module.cache_clear()
    ctx = EvalInput(config_yaml=yaml_text, options=Context())

    async def cycle():
        reg = get_registry()
        return await asyncio.gather(*(reg[n].evaluate(code, ctx) for n in ("syntax", "lint", "config")))

    asyncio.run(cycle())
    info = parse_module.cache_info()
    assert info.misses == 1 and info.hits >= 2
