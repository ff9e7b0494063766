"""Python syntax check with `ast`: the cheapest check, and the one every other check relies on."""

from __future__ import annotations

from dream_graph.evaluators.base import EvalInput, finding, parse_module
from dream_graph.state import Finding

NO_CODE_RULE = "no-code"


def check_syntax(code: str | None) -> list[Finding]:
    """Parse without running; a missing code block is a finding, not a crash."""
    if code is None or not code.strip():
        return [finding(NO_CODE_RULE, "no python code block: the reply must contain a ```python fenced block")]
    try:
        parse_module(code)
    except SyntaxError as exc:
        detail = f"{exc.msg}"
        if exc.text:
            detail += f": {exc.text.strip()}"
        return [finding("E999", f"SyntaxError: {detail}", line=exc.lineno)]
    except ValueError as exc:  # e.g. null bytes in the source
        return [finding("E999", f"source cannot be parsed: {exc}")]
    return []


class SyntaxEvaluator:
    """Runs `ast.parse` on the extracted code."""

    name = "syntax"

    async def evaluate(self, code: str | None, context: EvalInput) -> list[Finding]:
        return check_syntax(code)
