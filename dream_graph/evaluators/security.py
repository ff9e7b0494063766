"""Security check with Bandit's own manager, in-process, in a worker thread."""

from __future__ import annotations

import logging
import os
import tempfile
from functools import lru_cache

from dream_graph.evaluators.base import AST_LOCK, EvalInput, finding
from dream_graph.state import Finding
from dream_graph.workers import run_cpu

log = logging.getLogger(__name__)

NOT_SCANNED_RULE = "not-scanned"
_RANK = ("LOW", "MEDIUM", "HIGH")


@lru_cache(maxsize=1)
def _bandit_config():
    """Bandit's config object is read-only after start-up; build it once (importing Bandit costs ~0.1 s)."""
    from bandit.core import config as b_config

    logging.getLogger("bandit").setLevel(logging.ERROR)
    return b_config.BanditConfig()


def scan(
    code: str,
    severity: str = "LOW",
    confidence: str = "LOW",
    skip: tuple[str, ...] | list[str] = ("B101",),
) -> list[Finding]:
    """Run Bandit's tests on `code`; refuse to call unparsable code clean (Bandit would skip it silently)."""
    from bandit.core import manager as b_manager

    manager = b_manager.BanditManager(_bandit_config(), "file", profile={"exclude": list(skip)})
    fd, path = tempfile.mkstemp(suffix=".py", prefix="dream_graph_")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", errors="surrogateescape") as fh:
            fh.write(code)
        manager.discover_files([path])
        with AST_LOCK:  # Bandit parses the file; see AST_LOCK
            manager.run_tests()
    finally:
        os.unlink(path)
    if manager.skipped:
        reasons = "; ".join(reason for _, reason in manager.skipped)
        return [finding(NOT_SCANNED_RULE, f"Bandit could not scan the code ({reasons}); fix the syntax first")]
    results = manager.get_issue_list(sev_level=severity.upper(), conf_level=confidence.upper())
    return [
        finding(
            issue.test_id,
            f"{issue.text} (severity {issue.severity}, confidence {issue.confidence})",
            line=issue.lineno,
            severity=issue.severity.lower(),
        )
        for issue in sorted(results, key=lambda i: (i.lineno, i.test_id))
    ]


class SecurityEvaluator:
    """Bandit at a configurable severity/confidence threshold (LOW/LOW, B101 skipped, by default)."""

    name = "security"

    async def evaluate(self, code: str | None, context: EvalInput) -> list[Finding]:
        if code is None or not code.strip():
            return [finding(NOT_SCANNED_RULE, "no python code to scan")]
        opts = context.options
        if opts is None:
            return await run_cpu(scan, code)
        return await run_cpu(scan, code, opts.bandit_severity, opts.bandit_confidence, tuple(opts.bandit_skip))
