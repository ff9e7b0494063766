"""Bandit in-process: thresholds, skips, and no silent pass on unparsable code."""

import asyncio
from pathlib import Path

import pytest

from dream_graph.context import Context
from dream_graph.evaluators import EvalInput
from dream_graph.evaluators.security import (
    CHUNK_MIN_LINES,
    NOT_SCANNED_RULE,
    SecurityEvaluator,
    scan,
    split_for_workers,
)
from dream_graph.evaluators.syntax import check_syntax

RISKY = "import pickle\nimport subprocess\n\n\ndef f(cmd, blob):\n    assert cmd\n    subprocess.call(cmd, shell=True)\n    return pickle.loads(blob)\n"


def test_findings_carry_rule_line_severity():
    rules = {(f["rule"], f["line"], f["severity"]) for f in scan(RISKY)}
    assert ("B602", 7, "high") in rules
    assert ("B301", 8, "medium") in rules
    assert ("B404", 2, "low") in rules
    assert not any(r == "B101" for r, _, _ in rules), "assert is skipped by default"


@pytest.mark.parametrize("comment", ["# nosec", "# nosec B602", "#nosec: B602, B404", "# NOSEC"])
def test_the_code_under_check_cannot_silence_bandit_with_nosec_comments(comment):
    """Bandit obeys `# nosec` by default: a reply could have switched its own security check off."""
    silenced = RISKY.replace("import subprocess\n", f"import subprocess  {comment}\n").replace(
        "shell=True)\n", f"shell=True)  {comment}\n"
    )
    assert silenced.count(comment) == 2
    assert scan(silenced) == scan(RISKY)


def test_threshold_and_skip_are_configurable():
    high_only = {f["rule"] for f in scan(RISKY, severity="HIGH")}
    assert high_only == {"B602"}
    with_assert = {f["rule"] for f in scan(RISKY, skip=())}
    assert "B101" in with_assert


@pytest.mark.parametrize(
    ("code", "reason"),
    [("def f(:\n    pass\n", "syntax error"), ("x = 1\x00\n", "null bytes"), ("x = (\n", "syntax error")],
)
def test_unparsable_code_is_never_clean_and_never_reaches_bandit(monkeypatch, code, reason):
    from bandit.core import manager as b_manager

    def no_bandit(*_a, **_k):
        raise AssertionError("Bandit ran on code that does not parse")

    monkeypatch.setattr(b_manager, "BanditManager", no_bandit)
    (only,) = scan(code)
    assert only["rule"] == NOT_SCANNED_RULE and only["severity"] == "error"
    assert reason in only["message"] and "fix the syntax first" in only["message"]


def test_bandit_skipping_a_parsable_file_is_still_not_clean(monkeypatch):
    """If Bandit skips a file our parse accepted (it reads bytes, we parse text), the skip is still a finding."""
    from bandit.core import manager as b_manager

    real = b_manager.BanditManager._parse_file

    def skip(self, fname, fdata, new_files_list):
        self.skipped.append((fname, "exception while scanning file"))

    monkeypatch.setattr(b_manager.BanditManager, "_parse_file", skip)
    (only,) = scan("x = 1\n")
    assert only == {
        "rule": NOT_SCANNED_RULE, "line": None, "severity": "error",
        "message": "Bandit could not scan the code (exception while scanning file); fix the syntax first",
    }
    monkeypatch.setattr(b_manager.BanditManager, "_parse_file", real)
    assert scan("x = 1\n") == []


def test_scans_rewrite_one_private_scratch_file_per_thread():
    import os
    import stat
    import threading

    from dream_graph.evaluators.security import _scratch_dir

    folder = _scratch_dir()
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700, "only this process's user may read the code"
    if os.access("/dev/shm", os.W_OK):
        assert folder.parent == Path("/dev/shm"), "on tmpfs where there is one"
    before = set(folder.iterdir())
    for _ in range(5):
        scan(RISKY)
    mine = set(folder.iterdir()) - before
    assert len(mine) <= 1, "a file per thread, rewritten, not one per scan"
    results: dict[int, list] = {}

    def worker(i: int) -> None:  # threads scanning different code at once each get their own findings
        code = RISKY if i % 2 else "x = 1\n"
        results[i] = [scan(code) for _ in range(10)]

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert all(r == [scan(RISKY)] * 10 for i, r in results.items() if i % 2)
    assert all(r == [[]] * 10 for i, r in results.items() if not i % 2)
    assert len(results) == 4


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


def test_syntax_findings_say_exactly_what_is_wrong():
    assert check_syntax("def f(:\n    pass\n") == [
        {"rule": "E999", "line": 1, "severity": "error", "message": "SyntaxError: invalid syntax: def f(:"}
    ]
    assert check_syntax("  \n") == check_syntax(None) == [
        {"rule": "no-code", "line": None, "severity": "error",
         "message": "no python code block: the reply must contain a ```python fenced block"}
    ]
    # A lone surrogate (JSON can carry one) cannot be encoded to parse: a ValueError, not a SyntaxError.
    assert check_syntax("x = '\udcff'\n") == [
        {"rule": "E999", "line": None, "severity": "error", "message": "source cannot be parsed: 'utf-8' codec can't "
         "encode character '\\udcff' in position 5: surrogates not allowed"}
    ]


ENCODING_MESSAGE = (
    "the code declares its encoding as {!r}; dream_graph checks and runs code as UTF-8, so remove the `# coding:` "
    "line or declare utf-8"
)


@pytest.mark.parametrize(
    ("code", "line", "declared"),
    [
        # utf-7 reads `+AAo-` as a line break: the checks would see a comment, Python would run the call
        ("# coding: utf-7\nx = 1  # +AAo-print(undefined_name)\n", 1, "utf-7"),
        ("#!/usr/bin/env python\n# -*- coding: latin-1 -*-\nx = 1\n", 2, "iso-8859-1"),
        ("#\u2028\u2028\n# coding=utf-7\nx = 1\n", 2, "utf-7"),  # a decoder splits lines at LF only
        ("# coding: no-such-codec\nx = 1\n", 1, "unknown encoding: no-such-codec"),
        ("# coding is easy\n# coding: utf-7\nx = 1\n", 2, "utf-7"),  # the line that declares it, not the first
        ("#!/usr/bin/env python\n# coding: no-such-codec\nx = 1\ny = 2\nz = 3\n", 2, "unknown encoding: no-such-codec"),
    ],
)
def test_code_declaring_another_encoding_than_utf8_fails_the_syntax_check(code, line, declared):
    assert check_syntax(code) == [
        {"rule": "encoding", "line": line, "severity": "error", "message": ENCODING_MESSAGE.format(declared)}
    ]


@pytest.mark.parametrize(
    "code",
    ["# -*- coding: utf-8 -*-\nx = 1\n", "# coding=UTF8\nx = 1\n", "x = 1\n# coding: utf-7\n",  # line 2 counts only
     "x = 1\ny = 2\n# coding: utf-7\n", 'x = "coding: utf-7"\n', "# vim: set fileencoding=utf-8 :\nx = 1\n"],
)
def test_utf8_declarations_and_lines_a_decoder_never_reads_for_one_pass(code):
    assert check_syntax(code) == []


def test_bandits_not_scanned_finding_quotes_the_parse_error():
    assert scan("def f(:\n    pass\n") == [
        {"rule": NOT_SCANNED_RULE, "line": None, "severity": "error",
         "message": "Bandit could not scan the code (syntax error: invalid syntax); fix the syntax first"}
    ]
    (surrogate,) = scan("x = '\udcff'\n")  # a ValueError has no `msg`: its text is quoted
    assert "(syntax error: 'utf-8' codec can't encode character '\\udcff' in position 5" in surrogate["message"]


@pytest.mark.parametrize(
    ("args", "kept"),
    [(("sarif",), False), (("sarif", "No module named 'sarif_om'"), False), (("json",), True),
     (("SARIF",), True), ((), True), (None, True), ({"sarif": 1}, True)],
)
def test_only_the_sarif_plugins_load_failure_is_silenced(args, kept):
    import logging

    from dream_graph.evaluators.security import _not_sarif

    record = logging.LogRecord("stevedore.extension", logging.ERROR, __file__, 1, "Could not load %r: %s", None, None)
    record.args = args
    assert _not_sarif(record) is kept


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
    assert ("B602", 9) in merged and ("B307", 16) in merged and ("B307", 15) in merged  # its `# nosec` not obeyed
    assert split_for_workers("def f(:\n", 2) == ["def f(:\n"]


SPLIT_TWO = (
    "import os\n"  # 1
    "def f():\n    x = os.getcwd()\n    return x\n"  # 2-4: 3 lines
    "import sys\n"  # 5
    "y = 1\n"  # 6: 1 line
    "# a comment\n"  # 7: in no statement
    "@decorator\ndef g():\n    return sys.argv\n"  # 8-10: 3 lines, from the decorator
)
SPLIT_THREE = "a = (\n    1,\n)\ndef b():\n    pass\nc = 3\nclass D:\n    e = 1\n    f = 2\n"  # 3, 2, 1, 3 lines


def keep(code: str, lines: set[int]) -> str:
    return "".join(line if n in lines else "\n" for n, line in enumerate(code.splitlines(True), start=1))


def test_split_parts_are_contiguous_runs_of_about_equal_size_with_every_import():
    # 7 statement lines over 2 parts: a part closes once it holds 3.5; the imports (1, 5) go to both.
    assert split_for_workers(SPLIT_TWO, 2) == [keep(SPLIT_TWO, {1, 2, 3, 4, 5, 6}), keep(SPLIT_TWO, {1, 5, 8, 9, 10})]
    # 9 lines over 3 parts of 3: 3 | 2 + 1 | 3.
    assert split_for_workers(SPLIT_THREE, 3) == [
        keep(SPLIT_THREE, {1, 2, 3}), keep(SPLIT_THREE, {4, 5, 6}), keep(SPLIT_THREE, {7, 8, 9})
    ]
    assert split_for_workers("x = 1\ny = 2\n", 2) == ["x = 1\n\n", "\ny = 2\n"]  # as many statements as parts
    assert split_for_workers("x = 1\n# note\n", 2) == ["x = 1\n# note\n"]  # fewer: the code whole
    # Python's lines, not str.splitlines': a form feed is no line break, a lone CR is one.
    assert split_for_workers("x = 1\ry = 2\r\nz = 3", 2) == ["x = 1\ry = 2\r\n\n", "\n\nz = 3"]


def test_form_feeds_cannot_shift_a_split_part_away_from_the_code_it_holds():
    code = "#" + "\x0c" * 40 + "\nimport os\n" + "".join(f"x{i} = {i}\n" for i in range(130)) + "os.system(input())\n"
    assert [f["rule"] for f in scan(code)] == ["B605"]
    parts = split_for_workers(code, 2)
    assert len(parts) == 2 and [f["rule"] for p in parts for f in scan(p)] == ["B605"]
    assert split_for_workers(SPLIT_TWO, 1) == [SPLIT_TWO]


def test_the_evaluator_spreads_only_big_modules_over_two_or_more_workers_and_merges_their_findings(monkeypatch):
    from dream_graph.evaluators import security

    big = SPREAD + "\n" * (CHUNK_MIN_LINES - SPREAD.count("\n"))
    small = big[:-1]
    assert big.count("\n") == CHUNK_MIN_LINES
    sent: list[tuple[str, tuple]] = []

    async def inline(fn, code, *args):
        sent.append((code, args))
        return fn(code, *args)

    monkeypatch.setattr(security, "run_cpu", inline)
    options = Context(bandit_severity="medium", bandit_confidence="low", bandit_skip=["B105"])
    for workers, code, calls in ((2, big, 2), (3, big, 3), (1, big, 1), (2, small, 1), (0, big, 1)):
        monkeypatch.setattr(security, "pool_size", lambda workers=workers: workers)
        sent.clear()
        found = asyncio.run(SecurityEvaluator().evaluate(code, EvalInput(options=options)))
        assert len(sent) == calls, (workers, code.count("\n"))
        assert all(args == ("MEDIUM", "LOW", ("B105",)) for _, args in sent)
        assert found == scan(code, "MEDIUM", "LOW", ("B105",)) and found  # merged: each import's finding once
        assert [f["line"] for f in found] == sorted(f["line"] for f in found)
    sent.clear()
    asyncio.run(SecurityEvaluator().evaluate(RISKY, EvalInput()))
    assert sent == [(RISKY, ())]  # no run options: scan's own defaults
    assert asyncio.run(SecurityEvaluator().evaluate(" \n", EvalInput())) == [
        {"rule": NOT_SCANNED_RULE, "line": None, "severity": "error", "message": "no python code to scan"}
    ]


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
    from dream_graph.evaluators.base import _parsed as parse_module

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


def test_a_source_that_does_not_parse_is_parsed_once_and_each_caller_gets_its_own_equal_error(monkeypatch):
    import ast
    import types

    from dream_graph.evaluators import base

    calls = []
    counting = types.SimpleNamespace(parse=lambda code: calls.append(code) or ast.parse(code), Module=ast.Module)
    monkeypatch.setattr(base, "ast", counting)  # this module's `ast` only: pytest itself uses ast.parse
    base.forget_parses()
    broken = "def f(:\n    pass\n"
    errors = []
    for _ in range(3):
        with pytest.raises(SyntaxError) as caught:
            base.parse_module(broken)
        errors.append(caught.value)
    assert calls == [broken]
    assert len({id(e) for e in errors}) == 3  # a fresh exception each time: no traceback shared across threads
    assert {(e.msg, e.lineno, e.offset, e.text, e.end_lineno, e.end_offset) for e in errors} == {
        ("invalid syntax", 1, 7, "def f(:\n", 1, 8)
    }
    nul = (SyntaxError, ValueError)  # 3.11.7 says SyntaxError, some versions ValueError: the same one each time
    with pytest.raises(nul, match="null bytes") as first:
        base.parse_module("x = 1\x00")
    with pytest.raises(nul, match="null bytes") as again:
        base.parse_module("x = 1\x00")
    assert type(again.value) is type(first.value) and again.value.args == first.value.args
    assert calls == [broken, "x = 1\x00"]
    assert isinstance(base.parse_module("x = 1\n"), ast.Module)
    for i in range(base.PARSES_KEPT - 3):  # exactly PARSES_KEPT sources kept now: `broken` is the oldest, still there
        with pytest.raises(SyntaxError):
            base.parse_module(f"x = ({i}\n")
    with pytest.raises(SyntaxError):
        base.parse_module(broken)
    assert calls.count(broken) == 1  # still kept: used again, it is now the newest
    with pytest.raises(SyntaxError):
        base.parse_module("y = (\n")  # one more: the oldest, the NUL source, goes
    with pytest.raises(nul):
        base.parse_module("x = 1\x00")
    assert calls.count("x = 1\x00") == 2 and base._parsed.cache_info().currsize == base.PARSES_KEPT
    base.forget_parses()
    assert base._parsed.cache_info().currsize == 0


# One finding at each Bandit confidence level (and three severities), to pin both thresholds at their edges.
GRADED = '''import subprocess

PASSWORD = "hunter2"


def q(uid, cmd):
    query = "SELECT * FROM users WHERE id = " + uid
    subprocess.call(cmd, shell=True)
    open("/tmp/x.txt").read()
    return query
'''
# rule -> (severity, confidence) as Bandit rates it
GRADES = {"B404": ("LOW", "HIGH"), "B105": ("LOW", "MEDIUM"), "B608": ("MEDIUM", "LOW"), "B602": ("HIGH", "HIGH"),
          "B108": ("MEDIUM", "MEDIUM")}
LEVELS = ("LOW", "MEDIUM", "HIGH")


def at_least(level: str, threshold: str) -> bool:
    return LEVELS.index(level) >= LEVELS.index(threshold)


def test_the_samples_cover_every_confidence_level():
    found = {f["rule"]: f for f in scan(GRADED)}
    assert set(found) == set(GRADES)
    for rule, (severity, confidence) in GRADES.items():
        assert found[rule]["severity"] == severity.lower()
        assert f"(severity {severity}, confidence {confidence})" in found[rule]["message"]
    assert {c for _, c in GRADES.values()} == set(LEVELS)


@pytest.mark.parametrize("severity", LEVELS)
@pytest.mark.parametrize("confidence", LEVELS)
def test_confidence_and_severity_thresholds_keep_exactly_the_findings_at_or_above_them(severity, confidence):
    expected = {r for r, (s, c) in GRADES.items() if at_least(s, severity) and at_least(c, confidence)}
    assert {f["rule"] for f in scan(GRADED, severity=severity, confidence=confidence)} == expected


def test_a_low_confidence_finding_is_dropped_at_medium_and_a_medium_one_kept():
    at_medium = {f["rule"] for f in scan(GRADED, confidence="MEDIUM")}
    assert "B608" not in at_medium  # LOW confidence: just under the threshold
    assert {"B105", "B108"} <= at_medium  # MEDIUM confidence: exactly at it
    at_high = {f["rule"] for f in scan(GRADED, confidence="high")}  # lower case is accepted
    assert at_high == {"B404", "B602"}


def test_the_evaluator_passes_severity_and_confidence_each_to_its_own_threshold():
    ev = SecurityEvaluator()
    confident = asyncio.run(ev.evaluate(GRADED, EvalInput(options=Context(bandit_severity="low", bandit_confidence="high"))))
    assert {f["rule"] for f in confident} == {"B404", "B602"}
    severe = asyncio.run(ev.evaluate(GRADED, EvalInput(options=Context(bandit_severity="high", bandit_confidence="low"))))
    assert {f["rule"] for f in severe} == {"B602"}
    medium = asyncio.run(ev.evaluate(GRADED, EvalInput(options=Context(bandit_confidence="medium"))))
    assert {f["rule"] for f in medium} == {"B404", "B105", "B602", "B108"}
