"""The evaluator plugin protocol and its registry (built-ins plus `dream_graph.evaluators` entry points)."""

from __future__ import annotations

import ast
import logging
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from dream_graph.state import Finding

if TYPE_CHECKING:
    from dream_graph.context import Context

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "dream_graph.evaluators"

AST_LOCK = threading.Lock()
"""Held around every `ast.parse` in evaluators: CPython 3.11 can fail two parses racing in threads with
"SystemError: AST constructor recursion depth mismatch" (seen with Bandit and the config check in parallel)."""


PYTHON_LINES = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+\Z")


def python_lines(code: str) -> list[str]:
    """The lines Python numbers, endings kept: LF, CRLF or a lone CR end one (`str.splitlines` also breaks at \x0c,
    \x85, \u2028, ..., which would move every later line number)."""
    return PYTHON_LINES.findall(code)


PARSES_KEPT = 16
"""Sources whose parse (tree or error) is kept: a cycle's evaluators, auto-fix and the next cycle's share them."""


def parse_module(code: str) -> ast.Module:
    """One parse per source shared by the evaluators of a cycle (treat the tree as read-only); raises SyntaxError
    or ValueError (NUL bytes) like `ast.parse`, a new exception each time from the first parse's arguments (a
    reply that does not parse was parsed again by each check that looks at it: ~40 us a time)."""
    parsed = _parsed(code)
    if isinstance(parsed, ast.Module):
        return parsed
    error, args = parsed
    raise error(*args)


@lru_cache(maxsize=PARSES_KEPT)
def _parsed(code: str) -> ast.Module | tuple[type[Exception], tuple]:
    """The tree, or the parse error's type and arguments (an exception object is not shared between callers)."""
    try:
        with AST_LOCK:
            return ast.parse(code)
    except (SyntaxError, ValueError) as exc:
        return type(exc), exc.args


def forget_parses() -> None:
    """Drop every kept parse, tree or error (benchmarks that time a cycle from scratch)."""
    _parsed.cache_clear()


@dataclass
class EvalInput:
    """What an evaluator may look at besides the code: the rest of the reply and the run options."""

    response: str = ""
    config_yaml: str | None = None
    options: Context | None = None
    extra: dict = field(default_factory=dict)
    examples: list | None = None
    """The request's examples ({"inputs": {dataset: [payload, ...]}, "outputs": {...}}), for checks that run code."""


@runtime_checkable
class Evaluator(Protocol):
    """A check on generated code; an empty list of findings (or only "info" ones) means it passed.

    An evaluator may also set `needs_parse = True`: on code that does not parse it can only repeat the syntax
    check's finding, so a run that has the built-in syntax check skips it for that cycle (`checks_for`).
    """

    name: str

    async def evaluate(self, code: str | None, context: EvalInput) -> list[Finding]: ...


def finding(rule: str, message: str, line: int | None = None, severity: str = "error") -> Finding:
    """Build a finding with the contract's four keys."""
    return {"rule": rule, "line": line, "severity": severity, "message": message}


def parses(code: str) -> bool:
    """Whether `code` parses (the parse is shared with the checks that come next)."""
    try:
        parse_module(code)
    except (SyntaxError, ValueError):  # ValueError: NUL bytes in the source
        return False
    return True


def checks_for(names: list[str], code: str | None, evaluators: Mapping[str, Evaluator]) -> list[str]:
    """The checks a cycle runs: all of `names`, but when the built-in syntax check is among them and the code is
    missing or does not parse, not those that need a parse (each would only restate the syntax check's finding, at
    the cost of a graph step, and for `sandbox` a sandbox). `evaluators` are the ones the graph's nodes run."""
    from dream_graph.evaluators.syntax import SyntaxEvaluator  # it imports this module

    if "syntax" not in names or type(evaluators["syntax"]) is not SyntaxEvaluator:
        return names  # a plugin in its place, a subclass included, may pass such code: the others must say it
    try:
        if (code or "").strip() and parses(code):
            return names
    except (MemoryError, RecursionError):  # the parser gave up (deep nesting): each check reports it, as before
        return names
    return [n for n in names if not getattr(evaluators[n], "needs_parse", False)]


def is_blocking(f: Finding) -> bool:
    """Findings of severity "info" are reported but never fail a check."""
    return f.get("severity") != "info"


_REGISTRY: dict[str, Evaluator] = {}
_LOADED = False


def register(evaluator: Evaluator) -> Evaluator:
    """Add an evaluator under its name (a later registration replaces an earlier one)."""
    if not isinstance(evaluator, Evaluator):
        raise TypeError(f"{evaluator!r} is not an evaluator: it needs `name` and `async evaluate(code, context)`")
    _REGISTRY[evaluator.name] = evaluator
    return evaluator


def _load() -> None:
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    from dream_graph.evaluators import builtin_evaluators

    for ev in builtin_evaluators():
        register(ev)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            obj = ep.load()
            register(obj() if isinstance(obj, type) else obj)
        except Exception as exc:  # a broken plugin must not take the service down
            log.warning("evaluator plugin %s could not be loaded: %s", ep.name, exc)


def reset_registry() -> None:
    """Forget every registration so the next lookup reloads built-ins and entry points (tests, plugin installs)."""
    global _LOADED
    _REGISTRY.clear()
    _LOADED = False


def get_registry() -> dict[str, Evaluator]:
    """Every evaluator known to this process, by name."""
    _load()
    return dict(_REGISTRY)


def get_evaluator(name: str) -> Evaluator:
    """Look an evaluator up by name, with the known names in the error."""
    registry = get_registry()
    try:
        return registry[name]
    except KeyError:
        raise KeyError(f"unknown evaluator {name!r}; known: {', '.join(sorted(registry))}") from None
