"""Python syntax check with `ast`: the cheapest check, and the one every other check relies on."""

from __future__ import annotations

import codecs
import io
import tokenize

from dream_graph.evaluators.base import EvalInput, finding, parse_module
from dream_graph.state import Finding

NO_CODE_RULE = "no-code"
ENCODING_RULE = "encoding"


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
    return encoding_findings(code)


def encoding_findings(code: str) -> list[Finding]:
    """The checks read the code as text, but a file of it is decoded by its `# coding:` line: another encoding than
    UTF-8 (say utf-7, where `+AAo-` in a comment is a line break) would run code that no check has seen."""
    head = code.split("\n", 2)[:2]  # the two lines a decoder reads for the declaration (split at LF only, as it does)
    if not any("coding" in line for line in head):
        return []
    try:  # (code that parsed has no lone surrogates to encode, nor a BOM)
        declared, read = tokenize.detect_encoding(io.BytesIO("\n".join(head).encode("utf-8")).readline)
        if codecs.lookup(declared).name == "utf-8":  # also `UTF8`, `utf_8`
            return []
        line = len(read)  # the declaration is on the last line it read
    except SyntaxError as exc:  # an unknown encoding
        declared, line = str(exc), next(i for i, text in enumerate(head, start=1) if "coding" in text)
    return [
        finding(
            ENCODING_RULE,
            f"the code declares its encoding as {declared!r}; dream_graph checks and runs code as UTF-8, so remove "
            "the `# coding:` line or declare utf-8",
            line=line,
        )
    ]


class SyntaxEvaluator:
    """Runs `ast.parse` on the extracted code."""

    name = "syntax"

    async def evaluate(self, code: str | None, context: EvalInput) -> list[Finding]:
        return check_syntax(code)
