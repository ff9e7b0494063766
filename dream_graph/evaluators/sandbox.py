"""The opt-in `sandbox` evaluator: does the generated module import cleanly? Run only inside bubblewrap.

The module is written as `generated.py` into the run's private work dir and imported there by `run_python`
(dream_graph/sandbox.py); the service process never executes it. Every result says which backend ran it.
"""

from __future__ import annotations

import importlib.util
import re
from functools import lru_cache

from dream_graph.evaluators.base import EvalInput, finding
from dream_graph.sandbox import Limits, Result, SandboxUnavailable, limits_for, run_python
from dream_graph.state import Finding

MODULE_NAME = "generated"
"""The generated code is imported as this module (the offline model's pipelines say `generated.<Class>`)."""
TRACEBACK_LINES = 8
IMPORT_SCRIPT = f"import {MODULE_NAME}\n"
_FRAME = re.compile(rf'File "[^"]*{MODULE_NAME}\.py", line (\d+)')
_LIMIT_TEXT = {
    "wall": "did not finish within {timeout_s:g} s (the whole sandbox was killed)",
    "cpu": "used more than its {cpu_s:g} s of CPU and was stopped by the kernel",
    "memory": "ran out of its {memory_mb} MB of memory",
    "processes": "tried to run more than {processes} processes or threads at once (the kernel refused the fork)",
    "file": "tried to write a file larger than {file_mb} MB",
    "output": "wrote more than {output_kb} KB to stdout or stderr (the sandbox was killed)",
}


@lru_cache(maxsize=1)
def _preload() -> tuple[str, ...]:
    """The `aineko` check's preload when Aineko is installed: generated nodes import it, and sharing the key shares
    the warm spares (one interpreter with Aineko imported, not two)."""
    if importlib.util.find_spec("aineko") is None:
        return ()
    try:
        from dream_graph.targets.aineko.runtime_check import PRELOAD
    except ImportError:
        return ("aineko",)
    return tuple(PRELOAD)


def limits_from(context: EvalInput) -> Limits:
    """This run's sandbox limits (the server's caps outside a graph run)."""
    return limits_for(context.options)


def _last_lines(text: str, n: int = TRACEBACK_LINES, width: int = 300) -> str:
    lines = [line if len(line) <= width else line[:width] + "..." for line in text.strip().splitlines() if line.strip()]
    return "\n".join(lines[-n:])


def to_findings(result: Result, limits: Limits) -> list[Finding]:
    """The import's outcome as findings: always which backend ran it (info), then what went wrong, quoted."""
    found = [finding("sandbox-backend", f"imported in {result.backend}", severity="info")]
    if result.limit_hit:
        what = _LIMIT_TEXT.get(result.limit_hit, result.limit_hit).format(**vars(limits))
        tail = _last_lines(result.stderr, 3)
        found.append(
            finding(f"sandbox-{result.limit_hit}", f"importing the module {what}" + (f":\n{tail}" if tail else ""))
        )
    elif result.returncode != 0:
        frames = _FRAME.findall(result.stderr)
        detail = _last_lines(result.stderr) or f"no output, exit status {result.returncode}"
        found.append(
            finding(
                "sandbox-import-error",
                f"importing the module raised:\n{detail}",
                line=int(frames[-1]) if frames else None,
            )
        )
    return found


class SandboxEvaluator:
    """Opt-in: does the module import cleanly in a fresh bubblewrap sandbox (never in the service process)?"""

    name = "sandbox"
    needs_parse = True

    async def evaluate(self, code: str | None, context: EvalInput) -> list[Finding]:
        if code is None or not code.strip():
            return [finding("not-run", "no python code to import")]
        limits = limits_from(context)
        try:
            result = await run_python(
                IMPORT_SCRIPT, files={f"{MODULE_NAME}.py": code}, limits=limits, preload=_preload()
            )
        except SandboxUnavailable as exc:
            return [finding("sandbox-unavailable", f"the module was not imported: {exc}")]
        return to_findings(result, limits)
