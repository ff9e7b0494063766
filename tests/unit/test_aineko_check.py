"""The `aineko` evaluator: the harness's report -> findings mapping, and each stage failing under real Aineko 0.4.0
inside the real bubblewrap sandbox."""

from __future__ import annotations

import ast
import asyncio
import json
from importlib.util import find_spec

import pytest
import yaml

from dream_graph.context import Context, default_evaluators
from dream_graph.evaluators.base import EvalInput, get_registry, is_blocking
from dream_graph.sandbox import Limits, Result, backend_status
from dream_graph.targets.aineko import runtime_check
from dream_graph.targets.aineko.runtime_check import (
    AinekoEvaluator,
    finding_from,
    findings_from,
    harness_request,
    limits_for,
    parse_output,
)

LIMITS = Limits(timeout_s=5.0, cpu_s=2.0, memory_mb=512, processes=16)


def result(stdout: str, *, limit: str | None = None, returncode: int | None = 0, stderr: str = "") -> Result:
    """A sandbox Result as run_python returns it (the mapping tests need no sandbox)."""
    return Result(returncode, stdout.encode(), stderr, limit == "wall", limit, "test")


def report(*findings: dict) -> str:
    """Harness stdout: two progress lines, then the result line."""
    lines = [{"progress": {"stage": "config", "node": None}}, {"progress": {"stage": "run", "node": "doubler"}}]
    return "\n".join(json.dumps(x) for x in [*lines, {"result": {"findings": list(findings), "nodes": {}}}]) + "\n"


# ----------------------------------------------------------------------------------------------- mapping (no sandbox)


def test_each_stage_maps_to_its_rule_with_the_quoted_error_and_line():
    for stage in ("config", "import", "subclass", "construct", "run", "examples"):
        item = {"stage": stage, "node": "doubler", "error": f"ValueError: broke at {stage}", "line": 7}
        got = finding_from(item, LIMITS)
        assert got["rule"] == f"aineko-{stage}"
        assert got["line"] == 7 and got["severity"] == "error"
        assert got["message"].startswith(f"[{stage}] node 'doubler'")
        assert f"ValueError: broke at {stage}" in got["message"]


def test_config_finding_has_no_node_and_a_non_integer_line_is_dropped():
    got = finding_from({"stage": "config", "node": None, "error": "KeyError: 'name'", "line": "7"}, LIMITS)
    assert got["message"].startswith("[config] Aineko's ConfigLoader")
    assert "node" not in got["message"].split(":")[0]
    assert got["line"] is None


def test_03_api_hint_only_for_consumers_or_producers_attribute_errors():
    def message(error_type: str, error: str) -> str:
        return finding_from({"stage": "run", "node": "n", "error_type": error_type, "error": error}, LIMITS)["message"]

    hinted = message("AttributeError", "AttributeError: 'Upper' object has no attribute 'consumers'")
    assert "self.inputs[name].next()" in hinted and "self.outputs[name].write(payload)" in hinted
    assert "self.outputs[name].write" in message(
        "AttributeError", "AttributeError: 'Upper' object has no attribute 'producers'"
    )
    assert "0.3 API" not in message("AttributeError", "AttributeError: 'Upper' object has no attribute 'count'")
    assert "0.3 API" not in message("KeyError", "KeyError: 'consumers'")


def test_run_finding_says_how_the_node_was_run():
    base = {"stage": "run", "node": "n", "error": "TypeError: x"}
    assert "on example 2 raised" in finding_from({**base, "example": 2}, LIMITS)["message"]
    same = finding_from({**base, "samples_tried": ["numbers", "text"], "samples_same": True}, LIMITS)["message"]
    assert "on every sample payload tried (numbers, text):" in same
    differ = {**base, "samples_tried": ["numbers", "text"], "samples_same": False, "sample": "text"}
    assert "(numbers, text); on text:" in finding_from(differ, LIMITS)["message"]
    assert "run_test_yield (a node with no inputs)" in finding_from(base, LIMITS)["message"]


def test_memory_error_names_the_memory_limit_option():
    item = {"stage": "run", "node": "n", "error": "MemoryError", "limit": "memory"}
    assert "sandbox_memory_mb, 300 MB" in finding_from(item, Limits(memory_mb=300))["message"]
    assert "memory limit" not in finding_from({**item, "limit": None}, LIMITS)["message"]


def test_a_finished_report_wins_over_a_limit_hit_after_it():
    out = report({"stage": "examples", "node": "doubler", "error": "example 1, dataset 'd': expected [3], got [2]"})
    findings = findings_from(result(out, limit="cpu", returncode=-9), LIMITS)
    assert [f["rule"] for f in findings] == ["aineko-examples"]
    assert findings_from(result(report(), limit="cpu", returncode=-9), LIMITS) == []


def test_no_report_and_a_limit_names_the_limit_and_where_it_was():
    progress = json.dumps({"progress": {"stage": "run", "node": "spin"}}) + "\n"
    (wall,) = findings_from(result(progress, limit="wall", returncode=None), Limits(timeout_s=1.5))
    assert wall["rule"] == "aineko-limit"
    assert wall["message"].startswith("[run] node 'spin'") and "sandbox_timeout, 1.5 s" in wall["message"]
    (cpu,) = findings_from(result("", limit="cpu", returncode=-24), Limits(cpu_s=1))
    assert cpu["message"].startswith("[startup]") and "sandbox_cpu_seconds, 1 s" in cpu["message"]


def test_no_report_and_no_limit_is_a_harness_finding_with_the_stderr_tail():
    stderr = "line 1\nline 2\nTraceback\nSystemExit: 3\n"
    (f,) = findings_from(result("garbage\n{not json\n", returncode=3, stderr=stderr), LIMITS)
    assert f["rule"] == "aineko-harness" and is_blocking(f)
    assert "exit 3" in f["message"] and "SystemExit: 3" in f["message"] and "line 1" not in f["message"]


def test_parse_output_keeps_the_last_progress_and_ignores_other_lines():
    out = '{"progress": {"stage": "import", "node": "a"}}\nnoise\n[1]\n{"progress": {"stage": "run", "node": "b"}}\n'
    assert parse_output(out.encode()) == (None, {"stage": "run", "node": "b"})


def test_harness_request_gives_the_node_runs_part_of_the_wall_limit():
    request = json.loads(harness_request("code", "yaml", None, Limits(timeout_s=2.5)))
    assert request["budget_s"] == pytest.approx(2.0)
    assert request["examples"] == [] and request["budget_label"] == "sandbox_timeout 2.5 s"


def test_the_harness_request_carries_everything_the_harness_reads():
    limits = Limits(timeout_s=1.2345)
    request = json.loads(harness_request("CODE", "YAML", [{"inputs": {}}], limits))
    assert request == {"code": "CODE", "yaml": "YAML", "examples": [{"inputs": {}}], "budget_s": 0.988,
                       "budget_label": "sandbox_timeout 1.2345 s", "source_iterations": 3}


def test_output_that_is_not_utf8_is_read_around_not_fatal():
    out = b'\xff\xfe garbage\n{"result": {"findings": []}}\n'
    assert parse_output(out) == ({"findings": []}, None)


def test_every_limit_is_named_with_its_option_and_value():
    from dream_graph.targets.aineko.runtime_check import limit_name

    limits = Limits(timeout_s=7, cpu_s=5, memory_mb=512, processes=16, file_mb=8, output_kb=256)
    assert [limit_name(kind, limits) for kind in ("wall", "cpu", "memory", "processes", "file", "output")] == [
        "the time limit (sandbox_timeout, 7 s)",
        "the CPU limit (sandbox_cpu_seconds, 5 s)",
        "the memory limit (sandbox_memory_mb, 512 MB)",
        "the process limit (sandbox_processes, 16)",
        "the file size limit (8 MB)",
        "the output limit (256 KB of stdout/stderr)",
    ]
    assert limit_name("swap", limits) == "a sandbox limit (swap)"
    assert limit_name(None, limits) == "a sandbox limit (None)"


def test_where_and_how_a_run_failed_read_plainly():
    from dream_graph.targets.aineko.runtime_check import _run_how, _where

    assert _where(None, None) == "[?]" and _where("run", "doubler") == "[run] node 'doubler'"
    assert _run_how({}) == "setup_test + run_test_yield (a node with no inputs) raised"


EXACT = Limits(timeout_s=7, cpu_s=5, memory_mb=512, processes=16)


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ({"stage": "config", "error": "KeyError: 'name'"},
         "[config] Aineko's ConfigLoader(path).load_config() rejected the pipeline YAML: KeyError: 'name'"),
        ({"stage": "import", "node": "d", "dataset": "numbers", "error": "E1"},
         "[import] node 'd' dataset 'numbers': importing its `type` failed: E1"),
        ({"stage": "import", "node": "d", "error": "E2"},
         "[import] node 'd' importing the node `class` by its dotted path failed: E2"),
        ({"stage": "construct", "node": "d", "error": "E3"},
         "[construct] node 'd' constructing it as Aineko's runner does (with test=True) failed: E3"),
        ({"stage": "run", "node": "d", "error": "E4", "example": 2}, "[run] node 'd' setup_test + run_test on example 2 raised E4"),
        ({"stage": "harness", "error": "E5"}, "[harness] the check itself failed: E5"),
        ({"error": "E7"}, "[harness] the check itself failed: E7"),
        ({"stage": "harness"}, "[harness] the check itself failed:"),
        ({"stage": "run", "node": "d", "error": "MemoryError", "limit": "memory"},
         ("[run] node 'd' setup_test + run_test_yield (a node with no inputs) raised MemoryError "
          "(the node hit the memory limit (sandbox_memory_mb, 512 MB))")),
        ({"stage": "run", "node": "d", "error_type": "AttributeError",
          "error": "AttributeError: 'N' object has no attribute 'consumers'"},
         ("[run] node 'd' setup_test + run_test_yield (a node with no inputs) raised "
          "AttributeError: 'N' object has no attribute 'consumers' (that is the Aineko 0.3 API; 0.4.0 nodes read with "
          "self.inputs[name].next(), .last(timeout) or .read(how=..., timeout=..., block=...) and write with "
          "self.outputs[name].write(payload))")),
    ],
)
def test_each_finding_reads_exactly(item, message):
    assert finding_from(item, EXACT)["message"] == message


def test_a_check_that_never_reported_says_where_it_was_and_why_exactly():
    progress = b'{"progress": {"stage": "run", "node": "spin"}}\n'
    assert findings_from(Result(None, progress, "", True, "wall", "bwrap"), EXACT) == [
        {"rule": "aineko-limit", "line": None, "severity": "error",
         "message": "[run] node 'spin' the check was stopped by the time limit (sandbox_timeout, 7 s) before it finished"}]
    crashed = findings_from(Result(3, b"", "a\nb\nc\nd\n", False, None, "bwrap"), EXACT)
    assert crashed == [{"rule": "aineko-harness", "line": None, "severity": "error",
                        "message": "[startup] the check process ended (exit 3) without a result: b | c | d"}]
    long_tail = "x" * 900
    (cut,) = findings_from(Result(3, b"", long_tail, False, None, "bwrap"), EXACT)
    assert cut["message"].endswith(": " + "x" * 800), "the stderr tail is cut to its last 800 characters"
    silent = findings_from(Result(3, b"", "", False, None, "bwrap"), EXACT)
    assert silent[0]["message"] == "[startup] the check process ended (exit 3) without a result: no output"
    assert findings_from(Result(0, b'{"result": {"findings": ["not a dict"]}}\n', "", False, None, "bwrap"), EXACT) == []


def test_the_evaluator_sends_the_harness_its_request_under_the_runs_limits(monkeypatch):
    from dream_graph.targets.aineko import runtime_check

    sent = {}

    async def fake_run_python(script, *, stdin, limits, preload):
        sent.update(script=script, stdin=stdin, limits=limits, preload=preload)
        item = {"stage": "run", "node": "d", "error": "MemoryError", "example": 1, "limit": "memory"}
        return Result(0, json.dumps({"result": {"findings": [item]}}).encode() + b"\n", "", False, None, "bwrap")

    monkeypatch.setattr(runtime_check, "run_python", fake_run_python)
    monkeypatch.setattr(runtime_check, "find_spec", lambda name: object())
    options = Context(sandbox_timeout=3, sandbox_cpu_seconds=1)
    examples = [{"inputs": {"numbers": [1]}, "outputs": {"doubled": [2]}}]
    found = asyncio.run(AinekoEvaluator().evaluate("x = 1\n", EvalInput(config_yaml="pipeline: {}", options=options,
                                                                          examples=examples)))
    limits = limits_for(options)
    assert sent == {"script": runtime_check.harness_source(), "preload": runtime_check.PRELOAD, "limits": limits,
                    "stdin": harness_request("x = 1\n", "pipeline: {}", examples, limits)}
    assert found == [finding_from({"stage": "run", "node": "d", "error": "MemoryError", "example": 1, "limit": "memory"},
                                  limits)]
    assert found[0]["message"].endswith("(the node hit the memory limit (sandbox_memory_mb, 512 MB))")


def test_without_aineko_installed_the_check_says_how_to_install_it(monkeypatch):
    from dream_graph.targets.aineko import runtime_check

    monkeypatch.setattr(runtime_check, "find_spec", lambda name: None)
    (f,) = asyncio.run(AinekoEvaluator().evaluate("x = 1\n", EvalInput(config_yaml="pipeline: {}")))
    assert f == {"rule": "aineko-missing", "line": None, "severity": "error",
                 "message": "Aineko is not installed where dream_graph runs, so the code was not run with it: "
                            "pip install 'dream_graph[aineko]' (aineko==0.4.0)"}


def test_limits_come_from_the_run_options_else_the_settings(monkeypatch):
    monkeypatch.setenv("DREAM_GRAPH_SANDBOX_TIMEOUT", "7")
    from dream_graph.settings import get_settings

    get_settings.cache_clear()
    assert limits_for(None).timeout_s == 7.0
    limits = limits_for(Context(sandbox_timeout=3, sandbox_cpu_seconds=1, sandbox_memory_mb=256, sandbox_processes=4))
    assert (limits.timeout_s, limits.cpu_s, limits.memory_mb, limits.processes) == (3.0, 1.0, 256, 4)


@pytest.mark.parametrize(
    ("code", "config", "needle"),
    [("", "pipeline: {}", "no ```python block"), ("x = 1", "  ", "no ```yaml block"), ("x = 1", None, "no ```yaml block")],
)
def test_missing_code_or_yaml_is_a_clear_finding_before_any_sandbox(monkeypatch, code, config, needle):
    monkeypatch.setenv("DREAM_GRAPH_EXECUTE_CODE", "false")  # reaching the sandbox would say "code execution is off"
    (f,) = asyncio.run(AinekoEvaluator().evaluate(code, EvalInput(config_yaml=config)))
    assert f["rule"] == "aineko-input" and needle in f["message"] and is_blocking(f)
    assert f["message"] in (
        "no ```python block in the reply: Aineko has no node class to run",
        "no ```yaml block in the reply: Aineko needs the pipeline config to know which node classes and datasets to run",
    )


@pytest.mark.parametrize(
    ("code", "line", "needle"),
    [("x = 1\ndef f(:\n    pass\n", 2, "SyntaxError: "), ("x = (\n", 1, "SyntaxError: "), ("x = 1\x00\n", None, "Error: ")],
)
def test_code_that_does_not_parse_is_an_import_finding_without_a_sandbox(monkeypatch, code, line, needle):
    """Importing it in the sandbox could only say SyntaxError: a burst of broken first replies costs no sandboxes."""
    from dream_graph.targets.aineko import runtime_check

    async def no_sandbox(*_a, **_k):
        raise AssertionError("a sandbox was started for code that does not parse")

    monkeypatch.setattr(runtime_check, "run_python", no_sandbox)
    (f,) = asyncio.run(AinekoEvaluator().evaluate(code, EvalInput(config_yaml="pipeline: {}")))
    assert f["rule"] == "aineko-import" and is_blocking(f) and f["line"] == line
    assert f["message"].startswith("[import] the module does not parse, so Aineko cannot import it: ")
    assert needle in f["message"]


def test_sandbox_unavailable_is_an_error_finding_never_a_pass(monkeypatch):
    monkeypatch.setenv("DREAM_GRAPH_EXECUTE_CODE", "false")
    (f,) = asyncio.run(AinekoEvaluator().evaluate("x = 1", EvalInput(config_yaml="pipeline: {}")))
    assert f["rule"] == "aineko-sandbox" and is_blocking(f)
    assert "DREAM_GRAPH_EXECUTE_CODE=false" in f["message"]


def test_aineko_is_registered_and_in_the_defaults_exactly_when_installed():
    assert get_registry()["aineko"].name == "aineko"
    assert ("aineko" in default_evaluators()) == (find_spec("aineko") is not None)
    assert default_evaluators()[:3] == ("syntax", "security", "lint") and "config" in default_evaluators()
    assert Context().evaluators == list(default_evaluators())


def test_harness_source_imports_nothing_from_dream_graph():
    tree = ast.parse(runtime_check.harness_source())
    imported = {alias.name for n in ast.walk(tree) if isinstance(n, ast.Import) for alias in n.names}
    imported |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert "aineko.core.config_loader" in imported  # the walk sees the function-level imports too
    assert not {name for name in imported if name.split(".")[0] == "dream_graph"}


# ------------------------------------------------------------------------------------------- real Aineko in bwrap

KAFKA = "aineko.datasets.kafka.KafkaDataset"
HEADER = "from typing import Optional\n\nfrom aineko import AbstractNode\n\n\n"
DOUBLER = (
    HEADER
    + """class Doubler(AbstractNode):
    def _execute(self, params: Optional[dict] = None) -> Optional[bool]:
        msg = self.inputs["numbers"].next()
        self.outputs["doubled"].write(msg["message"] * 2)
        return True
"""
)
OLD_API = (
    HEADER
    + """class Doubler(AbstractNode):
    def _execute(self, params: Optional[dict] = None) -> Optional[bool]:
        msg = self.consumers["numbers"].consume()
        self.producers["doubled"].produce(msg["message"] * 2)
"""
)
PLAIN = """class Doubler:
    def _execute(self, params=None):
        return None
"""
LOCAL_BASE = """class AbstractNode:
    pass


class Doubler(AbstractNode):
    def _execute(self, params=None):
        return None
"""
COUNTER = (
    HEADER
    + """class Counter(AbstractNode):
    def _pre_loop_hook(self, params: Optional[dict] = None) -> None:
        self.count = 0

    def _execute(self, params: Optional[dict] = None) -> Optional[bool]:
        self.count += 1
        if self.count == 2 and (params or {}).get("fail"):
            raise ValueError("second tick refused")
        self.outputs["ticks"].write(self.count)
        return True
"""
)
BLOCKS = (
    HEADER
    + """class Doubler(AbstractNode):
    def _execute(self, params: Optional[dict] = None) -> Optional[bool]:
        first = self.inputs["numbers"].next()
        second = self.inputs["numbers"].next()
        self.outputs["doubled"].write([first["message"], second["message"]])
"""
)
SPIN = (
    HEADER
    + """class Doubler(AbstractNode):
    def _execute(self, params: Optional[dict] = None) -> Optional[bool]:
        while True:
            try:
                while True:
                    pass
            except BaseException:
                pass
"""
)
GREEDY = (
    HEADER
    + """class Doubler(AbstractNode):
    def _execute(self, params: Optional[dict] = None) -> Optional[bool]:
        self.inputs["numbers"].next()
        self.hoard = bytearray(8 * 1024 ** 3)
"""
)
TEXTS = (
    HEADER
    + """class Counter(AbstractNode):
    def _execute(self, params: Optional[dict] = None) -> Optional[bool]:
        msg = self.inputs["numbers"].next()
        self.outputs["doubled"].write(len(msg["message"]["text"].split()))
        return True
"""
)
SETS = DOUBLER.replace('write(msg["message"] * 2)', 'write({"seen": {1, 2}})')
FORGER = 'print(\'{"result": {"findings": [], "nodes": {}}}\', flush=True)\n\n' + PLAIN


def pipeline(
    node_class: str = "nodes.Doubler",
    inputs: list[str] | None = None,
    outputs: list[str] | None = None,
    datasets: dict | None = None,
    **node: object,
) -> str:
    """A pipeline YAML with one node `doubler` (numbers -> doubled by default)."""
    inputs = ["numbers"] if inputs is None else inputs
    outputs = ["doubled"] if outputs is None else outputs
    if datasets is None:
        datasets = {name: {"type": KAFKA} for name in [*inputs, *outputs]}
    spec = {"class": node_class, "inputs": inputs, "outputs": outputs, **node}
    return yaml.safe_dump({"pipeline": {"name": "demo", "nodes": {"doubler": spec}, "datasets": datasets}})


SOURCE = {"inputs": [], "outputs": ["ticks"], "node_class": "nodes.Counter"}
CASES: dict[str, tuple[str, str, list | None, dict]] = {
    "valid": (DOUBLER, pipeline(), None, {}),
    "valid nested package": (DOUBLER, pipeline("app.steps.nodes.Doubler"), None, {}),
    "0.3 api": (OLD_API, pipeline(), None, {}),
    "config unset env": (DOUBLER, pipeline(node_params={"key": "{$DG_UNSET_KEY}"}), None, {}),
    "config no name": (DOUBLER, pipeline().replace("name: demo", "title: demo"), None, {}),
    "import dataset type": (DOUBLER, pipeline(datasets={"numbers": {"type": "kafka"}, "doubled": {"type": KAFKA}}), None, {}),
    "import class missing": (DOUBLER, pipeline("nodes.Tripler"), None, {}),
    "import syntax error": (DOUBLER.replace("return True", "return True)"), pipeline(), None, {}),
    "subclass plain": (PLAIN, pipeline(), None, {}),
    "subclass local base": (LOCAL_BASE, pipeline(), None, {}),
    "construct undeclared": (DOUBLER, pipeline(datasets={"numbers": {"type": KAFKA}}), None, {}),
    "examples mismatch": (DOUBLER, pipeline(), [{"inputs": {"numbers": [1, 2]}, "outputs": {"doubled": [3, 6]}}], {}),
    "examples match": (DOUBLER, pipeline(), [{"inputs": {"numbers": [1, 2]}, "outputs": {"doubled": [2, 4]}}], {}),
    "examples fit no node": (DOUBLER, pipeline(), [{"inputs": {"values": [1]}, "outputs": {"tripled": [3]}}], {}),
    "source ok": (COUNTER, pipeline(**SOURCE), [{"outputs": {"ticks": [1, 2]}}], {}),
    "source mismatch": (COUNTER, pipeline(**SOURCE), [{"outputs": {"ticks": [0, 1]}}], {}),
    "source crash": (COUNTER, pipeline(**SOURCE, node_params={"fail": True}), None, {}),
    "blocked read": (BLOCKS, pipeline(), [{"inputs": {"numbers": [1]}, "outputs": {"doubled": [[1, 1]]}}],
                     {"sandbox_timeout": 1.5}),
    "spin past the harness": (SPIN, pipeline(), None, {"sandbox_timeout": 1.5}),
    "memory": (GREEDY, pipeline(), None, {"sandbox_memory_mb": 256}),
    "stdout forgery": (FORGER, pipeline(), None, {}),
    "dict samples": (TEXTS, pipeline("nodes.Counter"), None, {}),
    "unsendable payload": (SETS, pipeline(), None, {}),
}  # fmt: skip


def _skip_reason() -> str | None:
    """Only a missing Aineko or a missing/unusable bubblewrap skips these (CI has both)."""
    if find_spec("aineko") is None:
        return "aineko is not installed (pip install -e '.[aineko]')"
    status = backend_status()
    return None if status["available"] else f"no usable bubblewrap here: {status['detail']}"


@pytest.fixture(scope="module")
def checked() -> dict[str, list[dict]]:
    """Every case through the real evaluator, four sandboxes at a time (each is a fresh single-use sandbox)."""
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    evaluator = AinekoEvaluator()

    async def one(gate: asyncio.Semaphore, code: str, config: str, examples: list | None, options: dict) -> list:
        async with gate:
            ctx = Context(**options)
            return await evaluator.evaluate(code, EvalInput(config_yaml=config, examples=examples, options=ctx))

    async def run_all() -> dict[str, list[dict]]:
        gate = asyncio.Semaphore(4)
        found = await asyncio.gather(*(one(gate, *case) for case in CASES.values()))
        return dict(zip(CASES, found, strict=True))

    return asyncio.run(run_all())


def line_of(code: str, text: str) -> int:
    """The 1-based line of the first line containing `text`."""
    return next(i for i, line in enumerate(code.splitlines(), start=1) if text in line)


def only(findings: list[dict]) -> dict:
    """The one blocking finding (fails loudly with all of them otherwise)."""
    blocking = [f for f in findings if is_blocking(f)]
    assert len(blocking) == 1, blocking
    return blocking[0]


@pytest.mark.slow
@pytest.mark.parametrize("case", ["valid", "valid nested package", "examples match", "source ok", "dict samples"])
def test_valid_code_passes(checked, case):
    assert checked[case] == []


@pytest.mark.slow
def test_03_api_quotes_aineko_attribute_error_at_its_line(checked):
    f = only(checked["0.3 api"])
    assert f["rule"] == "aineko-run"
    assert "AttributeError: 'Doubler' object has no attribute 'consumers'" in f["message"]
    assert f["line"] == line_of(OLD_API, "self.consumers")
    assert "every sample payload tried (numbers, text, dicts of text, dicts of numbers)" in f["message"]


@pytest.mark.slow
def test_config_stage_quotes_the_config_loader(checked):
    unset = only(checked["config unset env"])
    assert unset["rule"] == "aineko-config"
    assert "ValueError: Failed to inject environment variable. DG_UNSET_KEY was not found." in unset["message"]
    assert only(checked["config no name"])["message"].endswith("KeyError: 'name'")


@pytest.mark.slow
def test_import_stage_names_the_dataset_or_node(checked):
    dataset = only(checked["import dataset type"])
    assert dataset["rule"] == "aineko-import" and "dataset 'numbers'" in dataset["message"]
    assert "Attribute kafka must be in the format ...module.function or ...module.Class" in dataset["message"]
    missing = only(checked["import class missing"])
    assert missing["rule"] == "aineko-import" and missing["message"].startswith("[import] node 'doubler'")
    assert "Invalid node class name specified in config for node 'doubler'" in missing["message"]
    assert "has no attribute 'Tripler'" in missing["message"]
    syntax = only(checked["import syntax error"])
    assert syntax["rule"] == "aineko-import" and "SyntaxError" in syntax["message"]
    assert syntax["line"] == line_of(DOUBLER, "return True")


@pytest.mark.slow
@pytest.mark.parametrize("case", ["subclass plain", "subclass local base"])
def test_subclass_stage(checked, case):
    f = only(checked[case])
    assert f["rule"] == "aineko-subclass"
    assert "nodes.Doubler is not a subclass of aineko.AbstractNode" in f["message"]


@pytest.mark.slow
def test_construct_stage_names_an_undeclared_dataset(checked):
    f = only(checked["construct undeclared"])
    assert f["rule"] == "aineko-construct" and "ValidationError" in f["message"]
    assert "dataset 'doubled' is not declared under pipeline.datasets" in f["message"]


@pytest.mark.slow
def test_examples_mismatch_shows_expected_and_got(checked):
    f = only(checked["examples mismatch"])
    assert f["rule"] == "aineko-examples"
    assert f["message"] == "[examples] node 'doubler' example 1, dataset 'doubled': expected [3, 6], got [2, 4]"
    unused = [f["message"] for f in checked["examples fit no node"]]
    assert any("feeds datasets ['values'] but no node reads them (nodes read: ['numbers'])" in m for m in unused)
    assert any("expects output on ['tripled'] but no node writes it" in m for m in unused)


@pytest.mark.slow
def test_source_node_runs_through_run_test_yield(checked):
    mismatch = only(checked["source mismatch"])
    assert mismatch["message"].endswith("dataset 'ticks': expected [0, 1], got [1, 2]")  # the first two it wrote
    crash = only(checked["source crash"])
    assert crash["rule"] == "aineko-run" and "run_test_yield" in crash["message"]
    assert "ValueError: second tick refused" in crash["message"]
    assert crash["line"] == line_of(COUNTER, "raise ValueError")


@pytest.mark.slow
def test_a_blocked_read_is_a_timeout_at_the_blocking_line(checked):
    f = only(checked["blocked read"])
    assert f["rule"] == "aineko-run"
    assert (
        "TimeoutError: node 'doubler' still running when the time limit (sandbox_timeout 1.5 s) ran out" in f["message"]
    )
    assert "every input was drained, so the node is blocked reading one" in f["message"]
    assert f["line"] == line_of(BLOCKS, "second = ")


@pytest.mark.slow
def test_code_that_swallows_the_harness_timeout_is_killed_at_the_wall_limit(checked):
    f = only(checked["spin past the harness"])
    assert f["rule"] == "aineko-limit"
    assert f["message"].startswith("[run] node 'doubler'") and "sandbox_timeout, 1.5 s" in f["message"]


@pytest.mark.slow
def test_memory_limit_is_named(checked):
    f = only(checked["memory"])
    assert f["rule"] == "aineko-run" and "MemoryError" in f["message"]
    assert "sandbox_memory_mb, 256 MB" in f["message"]
    assert f["line"] == line_of(GREEDY, "bytearray")


@pytest.mark.slow
def test_the_generated_code_cannot_print_a_result_line(checked):
    assert only(checked["stdout forgery"])["rule"] == "aineko-subclass"


@pytest.mark.slow
def test_a_payload_json_cannot_encode_is_a_run_finding(checked):
    f = only(checked["unsendable payload"])
    assert f["rule"] == "aineko-run"
    assert "dataset 'doubled' got a payload Kafka cannot carry" in f["message"]
    assert "Object of type set is not JSON serializable" in f["message"]


# ------------------------------------------------------------------------------------------------ request examples


def _sized(total: int) -> list[dict]:
    """One example whose compact JSON (as check_size measures it) is exactly `total` bytes."""
    base = [{"inputs": {}, "outputs": {"d": [""]}}]
    overhead = len(json.dumps(base, separators=(",", ":")))
    return [{"inputs": {}, "outputs": {"d": ["x" * (total - overhead)]}}]


def test_examples_bounds_are_exact():
    from dream_graph.errors import PromptError
    from dream_graph.examples import MAX_EXAMPLES, MAX_EXAMPLES_BYTES, MAX_PAYLOADS, validate_examples

    one = {"inputs": {"numbers": [1]}, "outputs": {"doubled": [2]}}
    assert len(validate_examples([one] * MAX_EXAMPLES)) == MAX_EXAMPLES
    with pytest.raises(PromptError, match=f"at most {MAX_EXAMPLES} items"):
        validate_examples([one] * (MAX_EXAMPLES + 1))
    assert validate_examples([{"inputs": {"n": [0] * MAX_PAYLOADS}}])[0]["inputs"]["n"] == [0] * MAX_PAYLOADS
    with pytest.raises(PromptError, match=r"examples\[0\]\.inputs\.n: List should have at most 100 items"):
        validate_examples([{"inputs": {"n": [0] * (MAX_PAYLOADS + 1)}}])
    assert validate_examples(_sized(MAX_EXAMPLES_BYTES))
    with pytest.raises(PromptError, match=f"{MAX_EXAMPLES_BYTES + 1} bytes as JSON; the limit is {MAX_EXAMPLES_BYTES}"):
        validate_examples(_sized(MAX_EXAMPLES_BYTES + 1))


@pytest.mark.parametrize(
    ("raw", "where"),
    [
        ({"inputs": {}}, "examples: Input should be a valid list"),
        ([{}], "examples[0]: an example needs `inputs` or `outputs`"),
        ([{"inputs": {"a": [1]}, "expected": {}}], "examples[0].expected: Extra inputs are not permitted"),
        ([{"inputs": {"": [1]}}], "examples[0].inputs[''] (a dataset name): String should have at least 1 character"),
        ([{"outputs": {"my-ds": "x"}}], "examples[0].outputs['my-ds']: Input should be a valid list"),
    ],
)
def test_malformed_examples_name_the_place_and_the_shape(raw, where):
    from dream_graph.errors import PromptError
    from dream_graph.examples import validate_examples

    with pytest.raises(PromptError) as caught:
        validate_examples(raw)
    assert str(caught.value).startswith(f"invalid examples: {where}")
    assert str(caught.value).endswith('"outputs": {"<dataset>": [payload, ...]}}')


def test_no_examples_add_nothing_to_the_prompt_and_some_are_shown_compactly():
    from dream_graph.examples import examples_prompt, validate_examples

    assert validate_examples(None) is None and examples_prompt(None) == [] and examples_prompt([]) == []
    (part,) = examples_prompt([{"inputs": {"numbers": [1, 2]}, "outputs": {"doubled": [2, 4]}}])
    assert part.endswith('```json\n{"inputs": {"numbers": [1, 2]}, "outputs": {"doubled": [2, 4]}}\n```')
