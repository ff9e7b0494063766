"""Runs generated Aineko code through Aineko's own code paths; executed INSIDE the sandbox, never imported by the service.

This file is sent as the text of a script (it imports nothing from dream_graph). It reads one JSON request on stdin:
`{"code", "yaml", "examples", "budget_s" (seconds for the node runs), "budget_label", "source_iterations"}`; it writes JSON
lines to the stdout it started with: `{"progress": {"stage": ..., "node": ...}}` as it goes (so a run killed by a
limit still says where it was), then one `{"result": {"findings": [...], "nodes": {...}}}`. Anything the generated
code prints goes to stderr.

The stages, in the order Aineko's runner meets them: `config` (ConfigLoader.load_config: the pydantic schema and the
`{$VAR}` injection), `import` (each dataset built from its config in test mode, which imports its `type`; each node
`class` imported by dotted path), `subclass` (an AbstractNode subclass), `construct` (the runner's constructor
arguments plus `test=True`, and the node's datasets built from the pipeline's declarations), `run` (`setup_test` +
`run_test`, or `run_test_yield` for a node with no inputs) and `examples` (the payloads written equal the expected ones).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

TEST_DATASET_TYPE = "aineko.datasets.kafka.KafkaDataset"
MAX_TEXT = 1500
"""Longest quoted error or value; a pydantic error names every bad field within this."""
SAMPLE_WORDS = "hello world"


class RunTimeout(BaseException):
    """The per-run wall-clock budget ran out (BaseException, so `except Exception` in a node does not swallow it)."""


def _clip(text: str, limit: int = MAX_TEXT) -> str:
    """Quotes stay short enough for a fix request."""
    return text if len(text) <= limit else text[: limit - 15] + " ...[truncated]"


def _show(value: Any) -> str:
    """A payload as the fix request shows it (JSON when it can be)."""
    try:
        return _clip(json.dumps(value, sort_keys=True, default=repr), 600)
    except (TypeError, ValueError):
        return _clip(repr(value), 600)


class Checker:
    """One check of one (code, YAML, examples) request; collects findings in the order Aineko would meet them."""

    def __init__(self, request: dict, out: Any, work: Path) -> None:
        self.code: str = request.get("code") or ""
        self.yaml_text: str = request.get("yaml") or ""
        self.examples: list = request.get("examples") or []
        self.deadline = time.monotonic() + float(request.get("budget_s") or 4.0)
        self.source_iterations = int(request.get("source_iterations") or 3)
        self.budget_label = str(request.get("budget_label") or "the check's time budget")
        self.out = out
        self.work = work
        self.module_files: set[str] = set()
        self.findings: list[dict] = []
        self.nodes: dict[str, dict] = {}

    # ---- reporting -------------------------------------------------------------------------------------------------

    def progress(self, stage: str, node: str | None = None) -> None:
        """Say where the check is, so a run killed by a limit can still be placed."""
        self.out.write(json.dumps({"progress": {"stage": stage, "node": node}}) + "\n")
        self.out.flush()

    def frame_in_code(self, exc: BaseException) -> tuple[int | None, str | None]:
        """The last traceback frame inside the generated module (its line and text), else the SyntaxError's line."""
        if isinstance(exc, SyntaxError) and exc.filename and os.path.realpath(exc.filename) in self.module_files:
            return exc.lineno, (exc.text or "").strip() or None
        line, text = None, None
        for frame in traceback.extract_tb(exc.__traceback__):
            if os.path.realpath(frame.filename) in self.module_files:
                line, text = frame.lineno, (frame.line or "").strip() or None
        return line, text

    def fail(self, stage: str, node: str | None, exc: BaseException, hint: str = "", **extra: Any) -> None:
        """A finding quoting Aineko's (or the node's) own error: its type, its message and the generated line."""
        line, text = self.frame_in_code(exc)
        message = str(exc).strip() + (f" ({hint})" if hint else "")
        self.findings.append(
            {
                "stage": stage,
                "node": node,
                "error_type": type(exc).__name__,
                "error": _clip(f"{type(exc).__name__}: {message}" if message else type(exc).__name__),
                "line": line,
                "source": text,
                **extra,
            }
        )

    def note(self, stage: str, node: str | None, error: str, **extra: Any) -> None:
        """A finding that is not an exception (an output that differs, an example that fits no node)."""
        self.findings.append(
            {
                "stage": stage,
                "node": node,
                "error_type": None,
                "error": _clip(error),
                "line": None,
                "source": None,
                **extra,
            }
        )

    # ---- placing the module ----------------------------------------------------------------------------------------

    def place_modules(self) -> None:
        """Write the code at every module path a node `class` names (`a.b.C` -> a/__init__.py + a/b.py)."""
        import yaml

        try:
            raw = yaml.safe_load(self.yaml_text)
            classes = [str(n.get("class", "")) for n in raw["pipeline"]["nodes"].values() if isinstance(n, dict)]
        except Exception:  # noqa: BLE001 - an unreadable config fails at the config stage with Aineko's own error
            return
        modules = set()
        for path in classes:
            parts = path.split(".")[:-1]
            if parts and parts[0] != "aineko" and all(p.isidentifier() for p in parts):
                modules.add(tuple(parts))
        packages = {m[:i] for m in modules for i in range(1, len(m))}
        for pkg in sorted(packages):
            init = self.work.joinpath(*pkg, "__init__.py")
            init.parent.mkdir(parents=True, exist_ok=True)
            init.write_text(self.code if pkg in modules else "", encoding="utf-8")
            if pkg in modules:
                self.module_files.add(os.path.realpath(init))
        for mod in sorted(modules - packages):
            target = self.work.joinpath(*mod[:-1], f"{mod[-1]}.py")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(self.code, encoding="utf-8")
            self.module_files.add(os.path.realpath(target))
        import importlib

        importlib.invalidate_caches()

    # ---- the stages --------------------------------------------------------------------------------------------------

    def run(self) -> None:
        """Every stage in order; a stage that fails stops the ones that depend on it."""
        config_path = self.work / "_dream_graph_pipeline.yml"
        config_path.write_text(self.yaml_text, encoding="utf-8")
        self.place_modules()

        from aineko.core.config_loader import ConfigLoader
        from aineko.core.dataset import AbstractDataset
        from aineko.core.node import AbstractNode
        from aineko.utils.imports import import_from_string

        self.progress("config")
        try:
            pipeline = ConfigLoader(str(config_path)).load_config().pipeline
        except BaseException as exc:  # noqa: BLE001 - Aineko's own error is the finding
            self.fail("config", None, exc)
            return

        for ds_name, ds_cfg in pipeline.datasets.items():
            self.progress("import", None)
            try:
                AbstractDataset.from_config(ds_name, dict(ds_cfg), test=True)
            except BaseException as exc:  # noqa: BLE001
                self.fail("import", None, exc, dataset=ds_name)
        classes: dict[str, type] = {}
        for node_name, node_cfg in pipeline.nodes.items():
            self.progress("import", node_name)
            try:
                classes[node_name] = import_from_string(node_cfg.class_name, kind="class")
            except AttributeError as exc:  # the runner re-raises this one as a ValueError naming the node
                self.fail(
                    "import",
                    node_name,
                    ValueError(
                        f"Invalid node class name specified in config for node '{node_name}'. Error: {exc}"
                    ).with_traceback(exc.__traceback__),
                )
            except BaseException as exc:  # noqa: BLE001
                self.fail("import", node_name, exc)
        if self.findings:
            return

        for node_name, cls in classes.items():
            if not issubclass(cls, AbstractNode):
                bases = ", ".join(f"{b.__module__}.{b.__qualname__}" for b in cls.__mro__[1:-1]) or "object only"
                self.note(
                    "subclass",
                    node_name,
                    f"TypeError: {cls.__module__}.{cls.__qualname__} is not a subclass of "
                    f"aineko.AbstractNode (its bases: {bases}); Aineko's runner calls the AbstractNode methods "
                    "setup_datasets and execute on it",
                )
        if self.findings:
            return

        datasets = {name: dict(cfg) for name, cfg in pipeline.datasets.items()}
        for node_name, node_cfg in pipeline.nodes.items():
            self.progress("construct", node_name)
            try:
                classes[node_name](node_name=node_name, pipeline_name=pipeline.name, poison_pill=None, test=True)
            except BaseException as exc:  # noqa: BLE001
                self.fail("construct", node_name, exc)
                continue
            for ds in [*(node_cfg.inputs or []), *(node_cfg.outputs or [])]:
                try:
                    AbstractDataset.from_config(name=ds, config=datasets.get(ds, {}), test=True)
                except BaseException as exc:  # noqa: BLE001
                    hint = "" if ds in datasets else f"dataset {ds!r} is not declared under pipeline.datasets"
                    self.fail("construct", node_name, exc, dataset=ds, hint=hint)
        if self.findings:
            return

        self.check_examples_apply(pipeline)
        for node_name, node_cfg in pipeline.nodes.items():
            if time.monotonic() >= self.deadline:
                self.note(
                    "run", node_name, f"TimeoutError: the check's time budget ran out before node {node_name!r} ran"
                )
                break
            self.run_node(classes[node_name], node_name, pipeline.name, node_cfg)

    def check_examples_apply(self, pipeline: Any) -> None:
        """An example that feeds or expects datasets no node reads or writes tests nothing: say so."""
        read = {ds for n in pipeline.nodes.values() for ds in (n.inputs or [])}
        written = {ds for n in pipeline.nodes.values() for ds in (n.outputs or [])}
        for index, example in enumerate(self.examples, start=1):
            fed = set(example.get("inputs") or {})
            wanted = set(example.get("outputs") or {})
            if fed and not fed & read:
                self.note(
                    "examples",
                    None,
                    f"example {index} feeds datasets {sorted(fed)} but no node reads them "
                    f"(nodes read: {sorted(read) or 'nothing'})",
                    example=index,
                )
            missing = sorted(wanted - written)
            if missing:
                self.note(
                    "examples",
                    None,
                    f"example {index} expects output on {missing} but no node writes "
                    f"{'it' if len(missing) == 1 else 'them'} (nodes write: {sorted(written) or 'nothing'})",
                    example=index,
                )

    def examples_for(self, node_cfg: Any) -> list[tuple[int, dict]]:
        """The examples for one node: those feeding one of its inputs; for a source node, those without inputs."""
        inputs, outputs = set(node_cfg.inputs or []), set(node_cfg.outputs or [])
        chosen = []
        for index, example in enumerate(self.examples, start=1):
            fed, wanted = set(example.get("inputs") or {}), set(example.get("outputs") or {})
            if (inputs and fed & inputs) or (not inputs and not fed and wanted & outputs):
                chosen.append((index, example))
        return chosen

    def sample_feeds(self, node_cfg: Any) -> list[tuple[str, list]]:
        """Generic payloads for a node no example covers: numbers, text, and dicts keyed by the strings it indexes."""
        keys = sorted(_subscript_keys(self.code)) or ["value"]
        kinds = [
            ("numbers", [1, 2, 3]),
            ("text", [SAMPLE_WORDS, "the quick brown fox", "42"]),
            ("dicts of text", [{k: SAMPLE_WORDS for k in keys}, {k: "a b c" for k in keys}]),
            ("dicts of numbers", [{k: 1 for k in keys}, {k: 2 for k in keys}]),
        ]
        return [(label, values) for label, values in kinds]

    def run_node(self, cls: type, node_name: str, pipeline_name: str, node_cfg: Any) -> None:
        """`setup_test` + `run_test` (or `run_test_yield`) on each example, or on sample payloads until one runs."""
        inputs, outputs = list(node_cfg.inputs or []), list(node_cfg.outputs or [])
        params = node_cfg.node_params or {}
        info: dict[str, Any] = {
            "class": f"{cls.__module__}.{cls.__qualname__}",
            "inputs": inputs,
            "outputs": outputs,
            "method": "run_test" if inputs else "run_test_yield",
        }
        self.nodes[node_name] = info
        examples = self.examples_for(node_cfg)
        if examples:
            info["examples"] = [i for i, _ in examples]
            for index, example in examples:
                feed = {ds: list((example.get("inputs") or {}).get(ds, [])) for ds in inputs}
                expected = example.get("outputs") or {}
                limit = max([self.source_iterations, *(len(v) for v in expected.values() if isinstance(v, list))])
                self.progress("run", node_name)
                got, error = self.one_run(cls, node_name, pipeline_name, inputs, outputs, params, feed, limit)
                if error is not None:
                    self.fail("run", node_name, error[0], example=index, **error[1])
                    continue
                self.compare(node_name, node_cfg, index, example, got)
            return
        errors = []
        for label, values in self.sample_feeds(node_cfg):
            feed = {ds: list(values) for ds in inputs}
            self.progress("run", node_name)
            got, error = self.one_run(
                cls, node_name, pipeline_name, inputs, outputs, params, feed, self.source_iterations
            )
            if error is None:
                info["sample"] = label if inputs else None
                info["wrote"] = {ds: _show(v[:3]) for ds, v in got.items() if v}
                return
            errors.append((label, error))
            if not inputs or isinstance(error[0], RunTimeout):
                break  # a source node gets no payloads; a hang will hang again
        label, (exc, extra) = _most_telling(errors, self.frame_in_code)
        same = len({(type(e).__name__, self.frame_in_code(e)[0]) for _, (e, _x) in errors}) == 1
        samples = {"sample": label, "samples_tried": [lbl for lbl, _ in errors], "samples_same": same} if inputs else {}
        self.fail("run", node_name, exc, **samples, **extra)

    def one_run(
        self,
        cls: type,
        node_name: str,
        pipeline_name: str,
        inputs: list,
        outputs: list,
        params: dict,
        feed: dict,
        iterations: int,
    ) -> tuple[dict, tuple[BaseException, dict] | None]:
        """One fresh node through Aineko's test harness under the remaining time budget; payloads written by dataset."""
        node = None
        done = 0
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            return {}, (RunTimeout("the check's time budget ran out before this run"), {})
        signal.setitimer(signal.ITIMER_REAL, remaining)
        try:
            node = cls(node_name=node_name, pipeline_name=pipeline_name, poison_pill=None, test=True)
            node.setup_test(dataset_type=TEST_DATASET_TYPE, inputs=feed, outputs=list(outputs), params=dict(params))
            if inputs:
                written = node.run_test()
            else:
                for done, _ in enumerate(node.run_test_yield(), start=1):
                    if done >= iterations:
                        break
                written = {ds: out.get_test_output_values() for ds, out in node.outputs.items()}
        except RunTimeout as exc:
            signal.setitimer(signal.ITIMER_REAL, 0)
            if not inputs and done and node is not None:  # a slow source node that did produce: not a failure
                self.nodes[node_name]["stopped_after"] = done
                return _payloads({ds: out.get_test_output_values() for ds, out in node.outputs.items()}), None
            return {}, (self.timeout_error(exc, node, node_name, inputs, done), {"limit": "time"})
        except BaseException as exc:  # noqa: BLE001 - the node's own error is the finding
            signal.setitimer(signal.ITIMER_REAL, 0)
            extra = {"limit": "memory"} if isinstance(exc, MemoryError) else {}
            return {}, (exc, extra)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        unsendable = _unsendable(written)
        if unsendable is not None:
            return {}, (unsendable, {})
        return _payloads(written), None

    def timeout_error(self, exc: RunTimeout, node: Any, node_name: str, inputs: list, done: int) -> BaseException:
        """A hang, with why Aineko's harness may never stop (inputs never drained) when that is the case."""
        spent = self.budget_note()
        hint = ""
        if inputs and node is not None:
            try:
                left = {ds: len(node.inputs[ds].get_test_input_values()) for ds in inputs if ds in node.inputs}
            except Exception:  # noqa: BLE001 - a node that replaced its inputs
                left = {}
            undrained = sorted(ds for ds, n in left.items() if n)
            drained = sorted(ds for ds, n in left.items() if not n)
            if undrained:
                hint = (
                    f"; run_test stops only when every input is drained and {undrained} still hold messages "
                    "(a node that reads with last() never drains its input)"
                )
            elif drained:
                hint = (
                    "; every input was drained, so the node is blocked reading one (next() and read(block=True) "
                    "wait for a message that never comes)"
                )
        elif not inputs:
            hint = f" after {done} of {self.source_iterations} iterations"
        err = TimeoutError(f"node {node_name!r} still running when the time limit ({spent}) ran out{hint}")
        return err.with_traceback(exc.__traceback__)

    def budget_note(self) -> str:
        """The time budget, as the finding names it."""
        return self.budget_label

    def compare(self, node_name: str, node_cfg: Any, index: int, example: dict, got: dict) -> None:
        """Each expected output dataset of this node against what it wrote (a source node: its first messages)."""
        outputs = set(node_cfg.outputs or [])
        for ds, want in (example.get("outputs") or {}).items():
            if ds not in outputs:
                continue
            have = got.get(ds, [])
            if not node_cfg.inputs and isinstance(want, list):
                have = have[: len(want)]
            if _normalise(want) != have:
                self.note(
                    "examples",
                    node_name,
                    f"example {index}, dataset {ds!r}: expected {_show(want)}, got {_show(have)}",
                    example=index,
                    dataset=ds,
                    expected=_show(want),
                    got=_show(have),
                )


def _most_telling(errors: list, where: Any) -> tuple[str, tuple[BaseException, dict]]:
    """The error most sample payloads met (same type and line); on a tie the richest payload's (dicts come last)."""

    def signature(item: tuple) -> tuple:
        return type(item[1][0]).__name__, where(item[1][0])[0]

    counts: dict[tuple, int] = {}
    for item in errors:
        counts[signature(item)] = counts.get(signature(item), 0) + 1
    return max(reversed(errors), key=lambda item: counts[signature(item)])


def _unsendable(written: dict) -> BaseException | None:
    """Outside test mode KafkaDataset.write sends `json.dumps(message)`: a payload JSON cannot encode fails there."""
    for ds, messages in written.items():
        for message in messages:
            try:
                json.dumps(message)
            except (TypeError, ValueError) as exc:
                payload = message.get("message") if isinstance(message, dict) else message
                return TypeError(
                    f"dataset {ds!r} got a payload Kafka cannot carry ({_show(payload)}): json.dumps raised "
                    f"{type(exc).__name__}: {exc} (KafkaDataset.write sends each message as JSON outside test mode)"
                )
    return None


def _payloads(written: dict) -> dict:
    """The payloads a node wrote, by dataset, without Aineko's envelope and its own `logging` dataset."""
    return {
        ds: [_normalise(m.get("message") if isinstance(m, dict) else m) for m in msgs]
        for ds, msgs in written.items()
        if ds != "logging"
    }


def _normalise(value: Any) -> Any:
    """What a Kafka reader would see: the payload through JSON (tuples become lists); unserialisable stays as is."""
    try:
        return json.loads(json.dumps(value))
    except (TypeError, ValueError):
        return value


def _subscript_keys(code: str) -> set[str]:
    """String keys the code indexes or `.get`s, so sample dict payloads have the fields the node looks for."""
    import ast

    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError):
        return set()
    keys = set()
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Subscript)
            and isinstance(node.slice, ast.Constant)
            and isinstance(node.slice.value, str)
        ):
            keys.add(node.slice.value)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "get"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            keys.add(node.args[0].value)
    envelope = {"message", "timestamp", "dataset", "source_node", "source_pipeline"}
    return {k for k in keys if k not in envelope and len(k) < 64} or set()


def _on_alarm(signum: int, frame: Any) -> None:
    """The per-run budget is over: unwind the node from wherever it is."""
    raise RunTimeout()


def main() -> int:
    """Read the request, run the stages, print the result; the generated code's own prints go to stderr."""
    out = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    request = json.loads(sys.stdin.read() or "{}")
    work = Path(tempfile.mkdtemp(prefix="dg-aineko-", dir=os.getcwd() if os.access(os.getcwd(), os.W_OK) else None))
    sys.path.insert(0, str(work))
    os.chdir(work)
    signal.signal(signal.SIGALRM, _on_alarm)
    started = time.perf_counter()
    checker = Checker(request, out, work)
    try:
        checker.run()
    except BaseException as exc:  # noqa: BLE001 - a harness failure is reported, never a silent pass
        checker.fail("harness", None, exc)
    result = {
        "findings": checker.findings,
        "nodes": checker.nodes,
        "elapsed_ms": round((time.perf_counter() - started) * 1000, 1),
    }
    out.write(json.dumps({"result": result}, default=repr) + "\n")
    out.flush()
    return 0


if __name__ == "__main__":
    main()
    sys.stderr.flush()
    os._exit(0)  # the result is out: skip tearing down an interpreter with Aineko, ray and pydantic loaded
