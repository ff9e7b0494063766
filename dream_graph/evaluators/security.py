"""Security check with Bandit's own manager: in a worker thread, or split across a process pool for big modules."""

from __future__ import annotations

import ast
import asyncio
import atexit
import logging
import os
import shutil
import tempfile
import threading
from functools import lru_cache
from pathlib import Path

from dream_graph.evaluators.base import AST_LOCK, EvalInput, finding, parse_module, python_lines
from dream_graph.state import Finding
from dream_graph.workers import pool_size, run_cpu

log = logging.getLogger(__name__)

NOT_SCANNED_RULE = "not-scanned"
CHUNK_MIN_LINES = 120
"""Below this many lines a split costs more in process hand-offs than it saves."""


@lru_cache(maxsize=1)
def _bandit_config():
    """Bandit's config object is read-only after start-up; build it once (importing Bandit costs ~0.1 s)."""
    from bandit.core import config as b_config

    logging.getLogger("bandit").setLevel(logging.ERROR)
    return b_config.BanditConfig()


def _not_sarif(record: logging.LogRecord) -> bool:
    """Bandit's SARIF output plugin needs `sarif_om`, which dream_graph never uses: its failing to load is noise."""
    return not (isinstance(record.args, tuple) and record.args[:1] == ("sarif",))


logging.getLogger("stevedore.extension").addFilter(_not_sarif)  # before any Bandit import, which loads the plugins


@lru_cache(maxsize=1)
def _scratch_dir() -> Path:
    """A private directory (0700) for the files Bandit reads, on tmpfs where there is one: a file per thread,
    rewritten per scan, costs a fraction of a temp file made and unlinked per scan on a journalled disk."""
    shm = Path("/dev/shm")
    base = str(shm) if shm.is_dir() and os.access(shm, os.W_OK | os.X_OK) else None
    path = Path(tempfile.mkdtemp(prefix="dream_graph_bandit_", dir=base))
    atexit.register(_remove_scratch_dir, path, os.getpid())
    return path


def _remove_scratch_dir(path: Path, owner: int) -> None:
    """At exit of the process that made it (a forked child that inherited it leaves it alone)."""
    if os.getpid() == owner:
        shutil.rmtree(path, ignore_errors=True)


def _scratch_file(code: str) -> str:
    """Write `code` to this thread's scratch file (one per process and thread, so no two scans share one)."""
    path = _scratch_dir() / f"{os.getpid()}-{threading.get_ident()}.py"
    path.write_bytes(code.encode("utf-8"))  # code that reaches here parsed, so it has no lone surrogates
    return str(path)


def _not_scanned(reason: str) -> list[Finding]:
    return [finding(NOT_SCANNED_RULE, f"Bandit could not scan the code ({reason}); fix the syntax first")]


def scan(
    code: str,
    severity: str = "LOW",
    confidence: str = "LOW",
    skip: tuple[str, ...] | list[str] = ("B101",),
) -> list[Finding]:
    """Run Bandit's tests on `code`; refuse to call unparsable code clean (Bandit would skip it silently)."""
    from bandit.core import manager as b_manager

    try:
        parse_module(code)
    except (SyntaxError, ValueError) as exc:  # Bandit cannot scan it either: say so without writing a file
        return _not_scanned(f"syntax error: {exc.msg if isinstance(exc, SyntaxError) else exc}")
    # ignore_nosec: the code under check must not switch its own check off with `# nosec` (and Bandit then skips
    # tokenizing the file to find such comments: a fifth of a small scan)
    manager = b_manager.BanditManager(_bandit_config(), "file", profile={"exclude": list(skip)}, ignore_nosec=True)
    manager.discover_files([_scratch_file(code)])
    with AST_LOCK:  # Bandit parses the file; see AST_LOCK
        manager.run_tests()
    if manager.skipped:  # one file, so at most one reason
        return _not_scanned(manager.skipped[0][1])
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


def split_for_workers(code: str, parts: int) -> list[str]:
    """Split a module into `parts` sources that Bandit can scan apart and whose findings add up to the whole's.

    Each part keeps every top-level import (Bandit resolves call names through them) plus a contiguous run
    of the other top-level statements; every other line is blanked, so line numbers stay those of `code`.
    Returns `[code]` when the module does not parse or has too few statements to split.
    """
    try:
        tree = parse_module(code)
    except (SyntaxError, ValueError):
        return [code]
    spans: list[tuple[int, int]] = []
    imports: set[int] = set()
    for node in tree.body:
        first = min([node.lineno, *(d.lineno for d in getattr(node, "decorator_list", []))])
        last = node.end_lineno or node.lineno
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            imports.update(range(first, last + 1))
        else:
            spans.append((first, last))
    if len(spans) < parts or parts < 2:
        return [code]
    lines = python_lines(code)
    target = sum(b - a + 1 for a, b in spans) / parts
    groups: list[list[tuple[int, int]]] = [[]]
    size = 0
    for span in spans:
        if size >= target and len(groups) < parts:
            groups.append([])
            size = 0
        groups[-1].append(span)
        size += span[1] - span[0] + 1
    sources = []
    for group in groups:
        keep = set(imports)
        for a, b in group:
            keep.update(range(a, b + 1))
        sources.append("".join(line if n in keep else "\n" for n, line in enumerate(lines, start=1)))
    return sources


class SecurityEvaluator:
    """Bandit at a configurable severity/confidence threshold (LOW/LOW, B101 skipped, by default)."""

    name = "security"
    needs_parse = True

    async def evaluate(self, code: str | None, context: EvalInput) -> list[Finding]:
        if code is None or not code.strip():
            return [finding(NOT_SCANNED_RULE, "no python code to scan")]
        opts = context.options
        args = () if opts is None else (opts.bandit_severity, opts.bandit_confidence, tuple(opts.bandit_skip))
        workers = pool_size()
        if workers < 2 or code.count("\n") < CHUNK_MIN_LINES:
            return await run_cpu(scan, code, *args)
        parts = await asyncio.gather(*(run_cpu(scan, part, *args) for part in split_for_workers(code, workers)))
        merged = {(f["rule"], f["line"], f["message"]): f for found in parts for f in found}
        return sorted(merged.values(), key=lambda f: (f["line"] or 0, f["rule"]))
