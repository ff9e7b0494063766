"""The `lint` evaluator's exact findings, and which Ruff answers when: the language server for the evaluator's own
rules, the CLI for anything else or when the server fails, and neither reading a config file where it runs."""

from __future__ import annotations

import logging

import pytest

from dream_graph.context import Context
from dream_graph.evaluators import EvalInput
from dream_graph.evaluators import lint as lint_module
from dream_graph.evaluators.lint import (
    NOT_LINTED_MESSAGE,
    NOT_LINTED_RULE,
    LintEvaluator,
    diagnostics_for,
    ignored_for,
    lint,
    parses,
    ruff_diagnostics,
    safe_fixes,
    severity_for,
    to_findings,
)
from dream_graph.evaluators.ruff_server import RuffServerError, shutdown_server
from dream_graph.settings import get_settings

UNDEFINED = "def f():\n    return undefined_name\n"
TWICE = "import os\nimport os\nprint(undefined_name)\n"  # F811 + F401 (both safely fixable) and F821
NOT_LINTED = {"rule": NOT_LINTED_RULE, "line": None, "severity": "error", "message": NOT_LINTED_MESSAGE}


@pytest.fixture
def server_on(monkeypatch):
    monkeypatch.setenv("DREAM_GRAPH_RUFF_SERVER", "true")
    get_settings.cache_clear()
    shutdown_server()
    yield
    shutdown_server()


@pytest.fixture
def no_cli(monkeypatch):
    """The CLI must not run: any call fails the test."""

    async def refuse(*_a, **_k):
        raise AssertionError("the Ruff CLI ran where the server should have answered")

    monkeypatch.setattr(lint_module, "run_ruff", refuse)


async def test_findings_are_exact_for_no_code_unparsable_code_and_each_rule_class(server_on):
    no_code = {**NOT_LINTED, "message": "no python code to lint"}
    assert await LintEvaluator().evaluate(None, EvalInput()) == [no_code]
    assert await LintEvaluator().evaluate("  \n", EvalInput()) == [no_code]
    assert await lint("def f(:\n") == [NOT_LINTED]
    assert await lint(UNDEFINED) == [
        {"rule": "F821", "line": 2, "severity": "error", "message": "Undefined name `undefined_name` [error]"}
    ]
    assert await lint("import os\n") == [
        {"rule": "F401", "line": 1, "severity": "info", "message": "`os` imported but unused [style] (auto-fixable)"}
    ]


async def test_lint_defaults_skip_asserts_and_fail_only_code_that_breaks(server_on):
    found = await lint("def f(x):\n    assert x\n    eval(x)\n")
    assert [(f["rule"], f["severity"]) for f in found] == [("S307", "info")]  # S101 ignored, S rules only info
    assert severity_for("F821") == "error" and severity_for("S307") == "info" and severity_for("F401") == "info"


def test_a_syntax_error_in_any_of_ruffs_spellings_is_one_not_linted_finding():
    for code in (None, "invalid-syntax", "E999"):
        diagnostics = [{"code": "F401", "message": "x", "location": {"row": 1}}, {"code": code, "message": "bad"}]
        assert to_findings(diagnostics) == [NOT_LINTED]
    assert to_findings([{"code": "invalid_syntax", "message": "m", "location": {"row": 1}}])[0]["rule"] != NOT_LINTED_RULE


def test_only_a_safe_fix_of_an_auto_fix_rule_is_labelled_auto_fixable():
    def message(code: str, fix: dict | None) -> str:
        (found,) = to_findings([{"code": code, "message": "m", "location": {"row": 3}, "fix": fix}])
        return found["message"]

    safe, unsafe = {"applicability": "safe"}, {"applicability": "unsafe"}
    assert message("F401", safe) == "m [style] (auto-fixable)"
    assert message("F401", unsafe) == message("F401", None) == "m [style]"
    assert message("F841", safe) == "m [style]"  # a safe fix, but not one auto-fix applies


def test_bandit_skips_map_to_their_ruff_twins_only_for_well_formed_ids():
    assert ignored_for(["B101", "b602", "X123", "Bx1", "B1x", "B", "S101"]) == ("S101", "S602")


def test_parses_says_whether_ruff_can_read_the_code():
    assert parses("x = 1\n") is True
    assert parses("def f(:\n") is False
    assert parses("x = 1\x00") is False


async def test_the_server_answers_the_evaluators_own_rules_and_fixes_without_the_cli(server_on, no_cli):
    assert [f["rule"] for f in await lint(UNDEFINED)] == ["F821"]
    fixed, rules = await safe_fixes(TWICE)
    assert (fixed, rules) == ("print(undefined_name)\n", ["F401", "F811"])  # what is left (F821) is not "fixed"


async def test_rules_outside_the_servers_set_go_to_the_cli(server_on):
    long_line = 'y = "' + "a" * 130 + '"\n'
    assert [d["code"] for d in await diagnostics_for(long_line, ("E501",))] == ["E501"]
    # A fix limited to F401 is the CLI's (the server's fix-all would fix F811 too).
    assert await safe_fixes(TWICE, ("F401",)) == ("print(undefined_name)\n", ["F401"])


async def test_a_fix_limited_to_some_rules_fixes_only_those(server_on):
    code = 'import os\nx = f"a"\nprint(x)\n'  # F401 and F541, both safely fixable
    assert await safe_fixes(code, ("F401",)) == ('x = f"a"\nprint(x)\n', ["F401"])  # the CLI, with --select F401
    assert await safe_fixes(code) == ('x = "a"\nprint(x)\n', ["F401", "F541"])  # the server's fix-all


async def test_a_live_server_is_reused_not_asked_for_again(server_on, monkeypatch):
    assert [f["rule"] for f in await lint(UNDEFINED)] == ["F821"]  # starts it

    def no_new_server(*_a, **_k):
        raise AssertionError("get_server called although a server is live")

    monkeypatch.setattr(lint_module, "get_server", no_new_server)
    assert [f["rule"] for f in await lint(UNDEFINED + "x = 1\n")] == ["F821"]


async def test_the_cli_fixes_several_rules_at_once(monkeypatch):
    monkeypatch.setenv("DREAM_GRAPH_RUFF_SERVER", "false")
    get_settings.cache_clear()
    assert await safe_fixes(TWICE, ("F401", "F811", "F821")) == ("print(undefined_name)\n", ["F401", "F811"])


async def test_a_failing_server_is_logged_and_the_cli_answers_the_same(server_on, monkeypatch, caplog):
    from dream_graph.evaluators.ruff_server import RuffServer

    expected_lint, expected_fix = await lint(UNDEFINED), await safe_fixes(TWICE)

    async def broken(self, code, fix=False):
        raise RuffServerError("pipe closed")

    monkeypatch.setattr(RuffServer, "check", broken)
    with caplog.at_level(logging.WARNING, logger="dream_graph.evaluators.lint"):
        assert await lint(UNDEFINED + "\n") == expected_lint
        assert await safe_fixes(TWICE + "\n") == (expected_fix[0] + "\n", expected_fix[1])
    assert [r.getMessage() for r in caplog.records] == [
        "ruff server check failed, using the CLI: pipe closed",
        "ruff server fix failed, using the CLI: pipe closed",
    ]


async def test_the_cli_reads_no_config_file_and_writes_no_cache_where_it_runs(monkeypatch, tmp_path):
    """A ruff.toml in the service's working directory must not change what counts as broken."""
    monkeypatch.setenv("DREAM_GRAPH_RUFF_SERVER", "false")
    get_settings.cache_clear()
    (tmp_path / "ruff.toml").write_text('[lint.per-file-ignores]\n"gen.py" = ["F821"]\n', encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    assert [f["rule"] for f in await lint(UNDEFINED)] == ["F821"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ruff.toml"]


async def test_the_cli_itself_obeys_no_noqa_comment():
    """A second guard behind the blanking: the CLI runs with --ignore-noqa."""
    found = await ruff_diagnostics("print(undefined_name)  # noqa: F821\n", ("F",))
    assert [d["code"] for d in found] == ["F821"]


async def test_two_ignored_rules_reach_the_cli_and_a_failing_ruff_says_why(monkeypatch):
    monkeypatch.setenv("DREAM_GRAPH_RUFF_SERVER", "false")
    get_settings.cache_clear()
    risky = "import subprocess\n\n\ndef f(x):\n    assert x\n    subprocess.call(x, shell=True)\n    eval(x)\n"
    assert {f["rule"] for f in await lint(risky)} == {"S307", "S602"}  # S101 ignored by default
    found = await LintEvaluator().evaluate(risky, EvalInput(options=Context(bandit_skip=["B101", "B602"])))
    assert {f["rule"] for f in found} == {"S307"}  # S101 and S602 both ignored
    with pytest.raises(RuntimeError) as failed:
        await ruff_diagnostics("x = 1\n", ("NOPE1",))
    assert str(failed.value).startswith("ruff exited with status 2: ") and "NOPE1" in str(failed.value)


async def test_a_ruff_that_does_not_finish_in_time_is_a_timeout_naming_the_limit():
    from dream_graph.evaluators.lint import run_ruff

    with pytest.raises(TimeoutError) as slow:
        await run_ruff("x = 1\n", timeout=0.0001)  # no process starts, let alone finishes, in 0.1 ms
    assert str(slow.value) == "ruff did not finish within 0.0001 s"
    status, out, _ = await run_ruff("x = 1\n", "--output-format", "json")
    assert (status, out.strip()) == (0, "[]")
