"""The `lint` evaluator and Ruff's safe auto-fixes, each test both through the Ruff language server and the CLI."""

from __future__ import annotations

import pytest

from dream_graph.context import Context
from dream_graph.evaluators import EvalInput, is_blocking
from dream_graph.evaluators.lint import LintEvaluator, rule_class, safe_fixes, severity_for

CLEAN = "def add(a: int, b: int) -> int:\n    return a + b\n"
UNDEFINED = "def f():\n    return undefined_name\n"
UNUSED_IMPORT = "import os\nimport sys\n\nprint(sys.argv)\n"
SHELL = "import subprocess\n\nsubprocess.call('ls', shell=True)\n"
ASSERT = "def f(x):\n    assert x\n    return x\n"


@pytest.fixture(autouse=True, params=["server", "cli"])
def ruff_path(request, monkeypatch):
    """Every test runs against the long-lived `ruff server` and against a Ruff process per check."""
    from dream_graph.evaluators.ruff_server import live_server, shutdown_server
    from dream_graph.settings import get_settings

    monkeypatch.setenv("DREAM_GRAPH_RUFF_SERVER", "true" if request.param == "server" else "false")
    get_settings.cache_clear()
    shutdown_server()  # a server an earlier test file left running would make the `cli` check below meaningless
    yield request.param
    if request.param == "cli":
        assert live_server() is None  # switched off means no server was started
    shutdown_server()


async def lint(code: str | None, **options) -> list[dict]:
    return await LintEvaluator().evaluate(code, EvalInput(options=Context(**options)))


def failing(findings: list[dict]) -> list[dict]:
    return [f for f in findings if is_blocking(f)]


async def test_clean_code_has_no_findings():
    assert await lint(CLEAN) == []


async def test_undefined_name_fails_with_its_line():
    (found,) = await lint(UNDEFINED)
    assert (found["rule"], found["line"], found["severity"]) == ("F821", 2, "error")
    assert "undefined_name" in found["message"]


@pytest.mark.parametrize(
    "comment", ["# noqa", "# noqa: F821", "#NOQA:F821", "# ruff: noqa", "# ruff: noqa: F821", "# flake8: noqa"]
)
async def test_the_code_under_check_cannot_silence_ruff_with_its_own_comments(comment):
    """Ruff obeys `# noqa` and file-level `# ruff: noqa`: a reply could have switched its own lint check off."""
    (found,) = await lint(UNDEFINED.replace("undefined_name\n", f"undefined_name  {comment}\n") + f"{comment}\n")
    assert (found["rule"], found["line"], found["severity"]) == ("F821", 2, "error")


@pytest.mark.parametrize(
    ("code", "line"),
    [
        ("\rprint(undefined_name)  # noqa\n", 2),  # a lone CR breaks the line for Python and Ruff, not for tokenize
        ("x = 1\n\r# ruff: noqa\nprint(undefined_name)\n", 4),
        ("# noqa\rprint(undefined_name)\n", 2),  # read as one comment by tokenize, blanking would erase the code
        ("# ruff:\rprint(undefined_name)\n", 2),
    ],
)
async def test_a_lone_carriage_return_cannot_hide_code_or_a_suppression_from_the_check(code, line):
    (found,) = await lint(code)
    assert (found["rule"], found["line"], found["severity"]) == ("F821", line, "error")


async def test_code_whose_comments_cannot_be_read_apart_is_not_linted_rather_than_passed(monkeypatch):
    import tokenize

    from dream_graph.evaluators import lint as lint_module

    def unreadable(_readline):
        raise tokenize.TokenError("EOF in multi-line statement", (1, 0))

    monkeypatch.setattr(lint_module.tokenize, "generate_tokens", unreadable)
    (found,) = await lint(UNDEFINED.replace("undefined_name\n", "undefined_name  # noqa\n"))
    assert found == {"rule": "not-linted", "line": None, "severity": "error", "message": lint_module.UNREADABLE_COMMENTS}
    assert [f["rule"] for f in await lint(UNDEFINED)] == ["F821"]  # no such comment: never tokenized


def test_blanking_that_would_change_a_statement_is_refused(monkeypatch):
    import tokenize

    from dream_graph.evaluators import lint as lint_module

    code = "x = 1  # noqa\ny = 2\n"
    real = tokenize.generate_tokens

    def misread(readline):  # a tokenizer that takes the whole first line, `x = 1` included, for the comment
        for token in real(readline):
            yield token._replace(start=(1, 0)) if token.type == tokenize.COMMENT else token

    monkeypatch.setattr(lint_module.tokenize, "generate_tokens", misread)
    assert lint_module.without_suppressions(code) is None  # `x = 1` blanked: another statement

    def misread_mid_statement(readline):  # from just after `x =`: what is left does not parse
        for token in real(readline):
            yield token._replace(start=(1, 3)) if token.type == tokenize.COMMENT else token

    monkeypatch.setattr(lint_module.tokenize, "generate_tokens", misread_mid_statement)
    assert lint_module.without_suppressions(code) is None


def test_suppression_comments_are_blanked_in_place_and_nothing_else_changes():
    from dream_graph.evaluators.lint import without_suppressions

    code = 'x = "# noqa"  # noqa: F401 keep\r\ny = 1  # an ordinary comment\n# ruff: noqa\nz = """\n# noqa\n"""\n'
    blanked = without_suppressions(code)
    assert blanked == 'x = "# noqa"  #                \r\ny = 1  # an ordinary comment\n#           \nz = """\n# noqa\n"""\n'
    assert [len(line) for line in blanked.split("\n")] == [len(line) for line in code.split("\n")]
    plain = "import os  # os is used below\n"
    assert without_suppressions(plain) is plain  # no such word: not even tokenized
    tricky = "s = 'a\u2028b'  # noqa\nt = 1  # noqa\n"  # \u2028 is a line break to str.splitlines, not to tokenize
    assert without_suppressions(tricky) == "s = 'a\u2028b'  #     \nt = 1  #     \n"


async def test_unused_import_is_reported_but_not_failing_by_default():
    (found,) = await lint(UNUSED_IMPORT)
    assert (found["rule"], found["line"], found["severity"]) == ("F401", 1, "info")
    assert "auto-fixable" in found["message"]
    assert failing([found]) == []


async def test_strict_mode_fails_on_style():
    (found,) = await lint(UNUSED_IMPORT, lint_strictness="all")
    assert found["rule"] == "F401" and is_blocking(found)


async def test_security_rules_are_a_second_opinion_that_fails_only_when_asked():
    default = {f["rule"]: f for f in await lint(SHELL)}
    assert "S602" in default and default["S602"]["severity"] == "info"
    strict = {f["rule"]: f for f in await lint(SHELL, lint_strictness="security")}
    assert strict["S602"]["line"] == 3 and is_blocking(strict["S602"])


async def test_bandit_skips_apply_to_their_ruff_twins():
    assert await lint(ASSERT, lint_strictness="all") == []  # B101 skipped by default -> S101 too
    rules = {f["rule"] for f in await lint(ASSERT, lint_strictness="all", bandit_skip=[])}
    assert rules == {"S101"}


async def test_unparsable_or_missing_code_is_one_not_linted_finding():
    (found,) = await lint("def f(:\n    pass\n")
    assert found["rule"] == "not-linted" and is_blocking(found)
    (missing,) = await lint(None)
    assert missing["rule"] == "not-linted"


async def test_without_options_the_defaults_apply():
    findings = await LintEvaluator().evaluate(UNDEFINED, EvalInput())
    assert [f["rule"] for f in findings] == ["F821"]


@pytest.mark.parametrize(
    ("code", "cls", "errors", "all_"),
    [("F821", "error", "error", "error"), ("S602", "security", "info", "warning"), ("F401", "style", "info", "warning"),
     ("PLE1142", "error", "error", "error"), ("F632", "error", "error", "error")],
)
def test_rule_to_severity_map(code, cls, errors, all_):
    assert rule_class(code) == cls
    assert severity_for(code, "errors") == errors
    assert severity_for(code, "all") == all_


async def test_safe_fixes_remove_unused_imports_and_say_which_rules():
    fixed, rules = await safe_fixes(UNUSED_IMPORT)
    assert rules == ["F401"]
    assert fixed == "import sys\n\nprint(sys.argv)\n"


async def test_safe_fixes_leave_clean_or_unparsable_code_alone():
    assert await safe_fixes(CLEAN) == (CLEAN, [])
    broken = "import os\ndef f(:\n"
    assert await safe_fixes(broken) == (broken, [])


async def test_is_literal_is_fixed_safely():
    fixed, rules = await safe_fixes("x = 'a'\nif x is 'a':\n    print(x)\n")
    assert rules == ["F632"] and "x == 'a'" in fixed


def test_unknown_strictness_is_refused():
    with pytest.raises(ValueError, match="lint_strictness must be one of errors, security, all"):
        Context(lint_strictness="pedantic")
