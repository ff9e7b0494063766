"""Checks run on every generated reply, each as a parallel branch of the graph."""

from __future__ import annotations

from dream_graph.evaluators.base import (
    EvalInput,
    Evaluator,
    checks_for,
    finding,
    get_evaluator,
    get_registry,
    is_blocking,
    register,
    reset_registry,
)


def builtin_evaluators() -> list[Evaluator]:
    """The evaluators shipped with dream_graph."""
    from dream_graph.evaluators.lint import LintEvaluator
    from dream_graph.evaluators.sandbox import SandboxEvaluator
    from dream_graph.evaluators.security import SecurityEvaluator
    from dream_graph.evaluators.syntax import SyntaxEvaluator
    from dream_graph.targets import get_target

    return [SyntaxEvaluator(), SecurityEvaluator(), LintEvaluator(), *get_target().evaluators(), SandboxEvaluator()]


__all__ = [
    "EvalInput",
    "Evaluator",
    "builtin_evaluators",
    "checks_for",
    "finding",
    "get_evaluator",
    "get_registry",
    "is_blocking",
    "register",
    "reset_registry",
]
