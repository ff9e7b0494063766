"""Ruff on the generated code (pyflakes errors plus Ruff's `S` rules), through a long-lived `ruff server` or the CLI."""

from __future__ import annotations

import ast
import asyncio
import io
import json
import logging
import re
import subprocess
import tokenize
from functools import lru_cache
from typing import Literal

from dream_graph.evaluators.base import EvalInput, finding, parse_module, parses, python_lines
from dream_graph.evaluators.ruff_server import RuffServer, RuffServerError, get_server, live_server
from dream_graph.settings import get_settings
from dream_graph.state import Finding

log = logging.getLogger(__name__)

LINT_RULES = ("F", "S", "PLE")
"""Pyflakes, Bandit-as-Ruff (a second opinion on the `security` evaluator) and pylint's error class."""

AUTOFIX_RULES = ("F401", "F541", "F632", "F811", "F901")
"""Rules whose Ruff fix is safe and mechanical: unused/redefined imports, empty f-strings, `is` on literals."""

NOT_LINTED_RULE = "not-linted"
NOT_LINTED_MESSAGE = "Ruff cannot lint code that does not parse; fix the syntax first"
RUFF_TIMEOUT_S = 20.0

# Rules whose findings mean the code breaks when imported or run (or a SyntaxError/runtime error is certain).
BREAKING_RULES = frozenset(
    {
        "F404", "F407",  # late `from __future__`, unknown future feature: SyntaxError
        "F501", "F502", "F503", "F506", "F507", "F508", "F509",  # %-format that raises
        "F521", "F524", "F525",  # str.format that raises
        "F621", "F622",  # starred assignment errors
        "F631", "F632", "F633", "F634",  # assert on tuple, `is` on a literal, print >>, if on tuple
        "F701", "F702", "F704", "F706", "F707", "F722",  # break/continue/yield/return misplaced, bad annotation
        "F821", "F822", "F823",  # undefined names
        "F901",  # raise NotImplemented
    }
)
RuleClass = Literal["error", "security", "style"]
"""What a finding means: code that breaks, a security smell, or style (everything else)."""


def rule_class(code: str) -> RuleClass:
    """The rule-to-severity map: what a Ruff rule means for the generated code."""
    if code in BREAKING_RULES or code.startswith("PLE"):
        return "error"
    if code.startswith("S"):
        return "security"
    return "style"


def severity_for(code: str, strictness: str = "errors") -> str:
    """Only classes at or below the strictness level fail; the rest are reported as "info"."""
    cls = rule_class(code)
    if cls == "error":
        return "error"
    if cls == "security":
        return "warning" if strictness in ("security", "all") else "info"
    return "warning" if strictness == "all" else "info"


@lru_cache(maxsize=1)
def ruff_binary() -> str:
    """Ruff ships its binary inside its wheel; find it once."""
    import ruff

    return str(ruff.find_ruff_bin())


async def run_ruff(code: str, *args: str, timeout: float = RUFF_TIMEOUT_S) -> tuple[int, str, str]:
    """`ruff check --isolated <args> -` on `code` via stdin, in a worker thread: starting a process blocks the caller
    until the child has exec'd (5-20 ms under load), which on the event loop would stall every other request."""
    cmd = [ruff_binary(), "check", "--isolated", "--no-cache", "--stdin-filename", "gen.py", *args, "-"]
    try:
        done = await asyncio.to_thread(
            subprocess.run, cmd, input=code.encode("utf-8"), capture_output=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:  # subprocess.run has killed and reaped the child
        raise TimeoutError(f"ruff did not finish within {timeout:g} s") from None
    return done.returncode, done.stdout.decode("utf-8", "replace"), done.stderr.decode("utf-8", "replace")


async def ruff_diagnostics(code: str, select: tuple[str, ...], ignore: tuple[str, ...] = ()) -> list[dict]:
    """Ruff's JSON diagnostics for `code`; exit status 2 (Ruff itself failed) raises with its message."""
    args = ["--output-format", "json", "--ignore-noqa", "--select", ",".join(select)]
    if ignore:
        args += ["--ignore", ",".join(ignore)]
    status, out, err = await run_ruff(code, *args)
    if status not in (0, 1):
        raise RuntimeError(f"ruff exited with status {status}: {err.strip()[-500:]}")
    return json.loads(out or "[]")


def _within(code: str, selectors: tuple[str, ...]) -> bool:
    """Ruff selectors are code prefixes: "F" selects F401."""
    return any(code.startswith(s) for s in selectors)


async def _server() -> RuffServer | None:
    """The language server (started off the event loop on first use), or None: off, or unavailable."""
    if not get_settings().ruff_server:
        return None
    server = live_server()
    if server is None:
        try:
            server = await asyncio.to_thread(get_server, ruff_binary(), LINT_RULES, AUTOFIX_RULES)
        except RuffServerError:
            return None
    return server


async def diagnostics_for(code: str, select: tuple[str, ...], ignore: tuple[str, ...] = ()) -> list[dict]:
    """Ruff's diagnostics for `code` with `select` on and `ignore` off: from the server when its rules cover
    `select`, else (or when it fails) from the CLI."""
    server = await _server() if all(_within(s, LINT_RULES) for s in select) else None
    if server is not None:
        try:
            found, _ = await server.check(code)
        except RuffServerError as exc:
            log.warning("ruff server check failed, using the CLI: %s", exc)
        else:
            return [
                d for d in found
                if _is_syntax_error(d) or (_within(d["code"], select) and not _within(d["code"], ignore))
            ]
    return await ruff_diagnostics(code, select, ignore)


def _is_syntax_error(diag: dict) -> bool:
    return diag.get("code") in (None, "invalid-syntax", "E999")


def to_findings(diagnostics: list[dict], strictness: str = "errors") -> list[Finding]:
    """Ruff diagnostics as findings; a syntax error becomes one "not-linted" finding (the syntax check owns it)."""
    if any(_is_syntax_error(d) for d in diagnostics):
        return [finding(NOT_LINTED_RULE, NOT_LINTED_MESSAGE)]
    found = []
    for d in sorted(diagnostics, key=lambda d: (d["location"]["row"], d["code"])):
        # Only the safe fixes auto-fix applies are labelled (the language server offers no others).
        safe = (d.get("fix") or {}).get("applicability") == "safe" and d["code"] in AUTOFIX_RULES
        fixable = " (auto-fixable)" if safe else ""
        found.append(
            finding(
                d["code"],
                f"{d['message']} [{rule_class(d['code'])}]{fixable}",
                line=d["location"]["row"],
                severity=severity_for(d["code"], strictness),
            )
        )
    return found


def ignored_for(bandit_skip: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """Bandit tests the run skips are skipped as their Ruff twins too (B101 -> S101)."""
    return tuple(f"S{b[1:]}" for b in bandit_skip if b[:1].upper() == "B" and b[1:].isdigit())


SUPPRESSION = re.compile(r"noqa|(?:ruff|flake8)\s*:", re.IGNORECASE)
"""What makes a comment one Ruff obeys: `# noqa[: F821]`, `# ruff: noqa`, `# flake8: noqa`, `# ruff: ignore[...]`."""
LONE_CR = re.compile(r"\r(?!\n)")
UNREADABLE_COMMENTS = "Ruff was not run: the code's comments could not be read apart from its statements"


def without_suppressions(code: str) -> str | None:
    """`code` with every comment Ruff would obey blanked to `#` and spaces, so the code under check cannot switch its
    own check off; None when its comments cannot be told apart from its statements. Lines and columns are Ruff's:
    a lone CR, a line break to Python and Ruff but not to `tokenize`, becomes LF first. Code without such a word is
    returned as is, untokenized."""
    if not SUPPRESSION.search(code):
        return code
    text = LONE_CR.sub("\n", code)
    lines = python_lines(text)  # with no lone CR left, also the lines tokenize counts
    try:
        comments = [t for t in tokenize.generate_tokens(io.StringIO(text).readline) if t.type == tokenize.COMMENT]
    except (tokenize.TokenError, SyntaxError):
        return None
    for token in comments:
        if SUPPRESSION.search(token.string):
            (row, start), (_, end) = token.start, token.end
            line = lines[row - 1]
            lines[row - 1] = line[:start] + "#" + " " * (end - start - 1) + line[end:]
    blanked = "".join(lines)
    try:  # blanking comments changes no statement: else the comments were misread
        same = ast.dump(parse_module(blanked)) == ast.dump(parse_module(code))
    except (SyntaxError, ValueError):
        return None
    return blanked if same else None


async def lint(code: str, strictness: str = "errors", ignore: tuple[str, ...] = ("S101",)) -> list[Finding]:
    """Lint `code` with the evaluator's rule set and severity map; its own `noqa` comments are not obeyed."""
    if not parses(code):
        return [finding(NOT_LINTED_RULE, NOT_LINTED_MESSAGE)]
    checked = without_suppressions(code)
    if checked is None:
        return [finding(NOT_LINTED_RULE, UNREADABLE_COMMENTS)]
    return to_findings(await diagnostics_for(checked, LINT_RULES, ignore), strictness)


async def safe_fixes(code: str, rules: tuple[str, ...] = AUTOFIX_RULES) -> tuple[str, list[str]]:
    """Apply Ruff's safe fixes for `rules`; return the fixed code and the rule codes fixed (none: code unchanged)."""
    if not parses(code):
        return code, []
    server = await _server() if tuple(rules) == AUTOFIX_RULES else None
    if server is not None:
        try:
            return await _server_fixes(server, code, rules)
        except RuffServerError as exc:
            log.warning("ruff server fix failed, using the CLI: %s", exc)
    diagnostics = await ruff_diagnostics(code, rules)
    fixable = sorted(
        {d["code"] for d in diagnostics if not _is_syntax_error(d) and (d.get("fix") or {}).get("applicability") == "safe"}
    )
    if not fixable:
        return code, []
    status, out, err = await run_ruff(code, "--fix-only", "--select", ",".join(fixable))
    if status != 0 or out == code:
        return code, []
    return out, fixable


async def _server_fixes(server: RuffServer, code: str, rules: tuple[str, ...]) -> tuple[str, list[str]]:
    """The server's fix-all (limited to `rules` by its `fixable` setting); the rules fixed are those whose findings
    the fix removed."""
    found, fixed = await server.check(code, fix=True)
    if fixed == code or not parses(fixed):
        return code, []
    before = {d["code"] for d in found if d["code"] in rules}
    after, _ = await server.check(fixed)
    return fixed, sorted(before - {d["code"] for d in after})


class LintEvaluator:
    """Ruff (F, S, PLE rules): code-breaking errors fail, style and security are "info" unless the run is stricter."""

    name = "lint"
    needs_parse = True

    async def evaluate(self, code: str | None, context: EvalInput) -> list[Finding]:
        if code is None or not code.strip():
            return [finding(NOT_LINTED_RULE, "no python code to lint")]
        opts = context.options
        if opts is None:
            return await lint(code)
        return await lint(code, opts.lint_strictness, ignored_for(opts.bandit_skip))
