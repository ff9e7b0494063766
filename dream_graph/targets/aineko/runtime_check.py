"""The `aineko` evaluator: generated code run through real Aineko 0.4.0's own code paths, inside bubblewrap.

The service never imports or runs the generated module: `harness.py` is sent as a script to a sandbox whose
interpreter already has Aineko imported (`PRELOAD`, started ahead of time by dream_graph.sandbox, single-use), so a
check costs the harness and a sandbox hand-over, not Aineko's ~0.5 s import. The harness reports JSON; this module
turns it into findings that name the stage, the node and Aineko's own error, with the generated line where it happened.
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib.resources import files
from importlib.util import find_spec

from dream_graph.evaluators.base import EvalInput, finding, parse_module
from dream_graph.sandbox import Limits, Result, SandboxUnavailable, limits_for, run_python
from dream_graph.state import Finding

PRELOAD: tuple[str, ...] = ("aineko", "aineko.datasets.kafka")
"""Imported in the warm sandbox before the job arrives: Aineko (~0.45 s) and its Kafka dataset (~0.1 s)."""
SOURCE_ITERATIONS = 3
"""`_execute` calls for a node with no inputs (more when an example expects more messages)."""
RUN_SHARE = 0.8
"""Share of the wall-clock limit the harness gives its node runs, so a hang is reported by the harness (with the
generated line it hung on) before the sandbox is killed from outside."""
API_03_HINT = (
    "(that is the Aineko 0.3 API; 0.4.0 nodes read with self.inputs[name].next(), .last(timeout) or "
    ".read(how=..., timeout=..., block=...) and write with self.outputs[name].write(payload))"
)
LIMIT_NAMES = {
    "wall": "the time limit (sandbox_timeout, {timeout:g} s)",
    "cpu": "the CPU limit (sandbox_cpu_seconds, {cpu:g} s)",
    "memory": "the memory limit (sandbox_memory_mb, {memory} MB)",
    "processes": "the process limit (sandbox_processes, {processes})",
    "file": "the file size limit ({file} MB)",
    "output": "the output limit ({output} KB of stdout/stderr)",
}


@lru_cache(maxsize=1)
def harness_source() -> str:
    """The script run inside the sandbox (read once; it imports nothing from dream_graph)."""
    return files(__package__).joinpath("harness.py").read_text(encoding="utf-8")


def limit_name(kind: str | None, limits: Limits) -> str:
    """A limit as a finding names it: which option sets it and its value."""
    template = LIMIT_NAMES.get(kind or "", "a sandbox limit ({kind})")
    return template.format(
        timeout=limits.timeout_s,
        cpu=limits.cpu_s,
        memory=limits.memory_mb,
        processes=limits.processes,
        file=limits.file_mb,
        output=limits.output_kb,
        kind=kind,
    )


def harness_request(code: str, config_yaml: str, examples: list | None, limits: Limits) -> bytes:
    """What the harness reads on stdin."""
    return json.dumps(
        {
            "code": code,
            "yaml": config_yaml,
            "examples": examples or [],
            "budget_s": round(limits.timeout_s * RUN_SHARE, 3),
            "budget_label": f"sandbox_timeout {limits.timeout_s:g} s",
            "source_iterations": SOURCE_ITERATIONS,
        }
    ).encode()


def parse_output(stdout: bytes) -> tuple[dict | None, dict | None]:
    """The harness's result and its last progress report (where it was when it stopped)."""
    result, progress = None, None
    for line in stdout.decode("utf-8", "replace").splitlines():
        try:
            item = json.loads(line)
        except ValueError:
            continue
        if isinstance(item, dict) and isinstance(item.get("result"), dict):
            result = item["result"]
        elif isinstance(item, dict) and isinstance(item.get("progress"), dict):
            progress = item["progress"]
    return result, progress


def _where(stage: str | None, node: str | None) -> str:
    """`[run] node 'doubler'`: the stage and the node, as every message starts."""
    return f"[{stage or '?'}]" + (f" node {node!r}" if node else "")


def _run_how(item: dict) -> str:
    """How the node was run when it failed: on which example, or on which sample payloads."""
    if item.get("example"):
        return f"setup_test + run_test on example {item['example']} raised"
    tried = [str(t) for t in item.get("samples_tried") or []]
    if not tried:
        return "setup_test + run_test_yield (a node with no inputs) raised"
    if item.get("samples_same") or len(tried) == 1:
        return f"setup_test + run_test raised, on every sample payload tried ({', '.join(tried)}):"
    return f"setup_test + run_test raised on every sample payload tried ({', '.join(tried)}); on {item.get('sample')}:"


def finding_from(item: dict, limits: Limits) -> Finding:
    """One harness finding as the contract's finding: rule `aineko-<stage>`, the quoted error, the generated line."""
    stage = str(item.get("stage") or "harness")
    error = str(item.get("error") or "")
    parts = [_where(stage, item.get("node"))]
    if stage == "config":
        parts.append("Aineko's ConfigLoader(path).load_config() rejected the pipeline YAML:")
    elif stage == "import" and item.get("dataset"):
        parts.append(f"dataset {item['dataset']!r}: importing its `type` failed:")
    elif stage == "import":
        parts.append("importing the node `class` by its dotted path failed:")
    elif stage == "construct":
        parts.append("constructing it as Aineko's runner does (with test=True) failed:")
    elif stage == "run":
        parts.append(_run_how(item))
    elif stage == "harness":
        parts.append("the check itself failed:")
    parts.append(error)
    if item.get("limit") == "memory":
        parts.append(f"(the node hit {limit_name('memory', limits)})")
    if item.get("error_type") == "AttributeError" and ("'consumers'" in error or "'producers'" in error):
        parts.append(API_03_HINT)
    line = item.get("line") if isinstance(item.get("line"), int) else None
    return finding(f"aineko-{stage}", " ".join(p for p in parts if p), line=line)


def findings_from(result: Result, limits: Limits) -> list[Finding]:
    """The harness's findings, or, when it never reported, the limit that stopped it or its crash."""
    report, progress = parse_output(result.stdout)
    if report is not None:  # finished: a limit hit afterwards (interpreter shutdown) changes nothing it found
        return [finding_from(item, limits) for item in report.get("findings") or [] if isinstance(item, dict)]
    where = _where((progress or {}).get("stage"), (progress or {}).get("node")) if progress else "[startup]"
    if result.limit_hit:
        return [
            finding(
                "aineko-limit",
                f"{where} the check was stopped by {limit_name(result.limit_hit, limits)} before it finished",
                severity="error",
            )
        ]
    tail = " | ".join(result.stderr.strip().splitlines()[-3:]) or "no output"
    return [
        finding(
            "aineko-harness",
            f"{where} the check process ended (exit {result.returncode}) without a result: {tail[-800:]}",
        )
    ]


class AinekoEvaluator:
    """Runs the code with real Aineko 0.4.0 in the sandbox: config, imports, subclass, construction, test runs."""

    name = "aineko"
    needs_parse = True

    async def evaluate(self, code: str | None, context: EvalInput) -> list[Finding]:
        """Findings from the real framework, or one finding saying why it could not check (never a silent pass)."""
        if not (code or "").strip():
            return [finding("aineko-input", "no ```python block in the reply: Aineko has no node class to run")]
        if not (context.config_yaml or "").strip():
            return [
                finding(
                    "aineko-input",
                    "no ```yaml block in the reply: Aineko needs the pipeline config to "
                    "know which node classes and datasets to run",
                )
            ]
        try:
            parse_module(code)
        except (SyntaxError, ValueError) as exc:  # what importing it in the sandbox would say, without a sandbox
            line = exc.lineno if isinstance(exc, SyntaxError) else None
            detail = f"SyntaxError: {exc.msg}" if isinstance(exc, SyntaxError) else f"ValueError: {exc}"
            return [finding("aineko-import", f"[import] the module does not parse, so Aineko cannot import it: {detail}",
                            line=line)]
        if find_spec("aineko") is None:
            return [
                finding(
                    "aineko-missing",
                    "Aineko is not installed where dream_graph runs, so the code was not run "
                    "with it: pip install 'dream_graph[aineko]' (aineko==0.4.0)",
                )
            ]
        limits = limits_for(context.options)
        request = harness_request(code, context.config_yaml, context.examples, limits)
        try:
            result = await run_python(harness_source(), stdin=request, limits=limits, preload=PRELOAD)
        except SandboxUnavailable as exc:
            return [finding("aineko-sandbox", f"the code was not run with Aineko: {exc}")]
        return findings_from(result, limits)
