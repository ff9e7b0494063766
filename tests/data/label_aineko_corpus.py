"""Label the Aineko corpus by running real Aineko 0.4.0 on each (node.py, pipeline.yml[, examples.json]) pair.

Usage (with the project's virtualenv, where `aineko==0.4.0` is installed):

    python tests/data/label_aineko_corpus.py            # (re)label every pair, write <pair>/label.json
    python tests/data/label_aineko_corpus.py NAME ...   # only these pairs
    python tests/data/label_aineko_corpus.py --check    # print labels that differ from the stored ones, write nothing

Each pair runs in its own subprocess and temporary directory, with no environment variables of ours (so a `{$VAR}`
placeholder stays unset) and a time limit. The stages follow Aineko's own code paths in order:

- `config`: `ConfigLoader(path).load_config()` (pydantic schema, then `{$VAR}` injection into `node_params`);
- `import`: every dataset built from its config by `AbstractDataset.from_config(..., test=True)` (the dotted-path
  import of its `type` and the class's constructor, as the runner's `prepare_datasets` does), then every node
  `class` imported with `aineko.utils.imports.import_from_string(kind="class")`, as the runner's `prepare_nodes` does;
- `subclass`: the node class is a subclass of `aineko.core.node.AbstractNode`;
- `construct`: the node built as the runner builds it (`node_name`, `pipeline_name`, `poison_pill`) plus `test=True`,
  and its `inputs`/`outputs` built from the pipeline's datasets as `setup_datasets` does (an undeclared dataset fails);
- `run`: `setup_test` + `run_test` on the examples' inputs (or sample inputs); a node with no inputs runs
  `run_test_yield` for a few iterations (`run_test` would loop forever);
- `examples`: each output dataset's payloads equal the example's expected payloads.

Examples convention (`examples.json`, a list): `{"inputs": {"<dataset>": [payload, ...]}, "outputs": {"<dataset>":
[payload, ...]}}`. An example applies to a node that reads one of its input datasets; a node with no inputs takes the
examples without inputs and is compared on the first messages it writes.

The corpus is our own trusted code, so no sandbox here; the service's `aineko` evaluator runs generated code only in
bubblewrap.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

CORPUS = Path(__file__).resolve().parent / "aineko_corpus"
TIMEOUT_S = 120.0
"""Per pair, for the whole subprocess (importing Aineko takes about 0.5 s idle, over 10 s on a loaded machine)."""
RUN_LIMIT_S = 5
"""Per node run: a node still running after this is a `run` failure (for example `next()` on an exhausted input)."""
SOURCE_ITERATIONS = 3
"""`_execute` calls for a node with no inputs (at least as many as its longest expected output)."""
SAMPLE_INPUTS = [1, 2, 3]
"""Payloads for each input dataset of a node that no example covers."""
TEST_DATASET_TYPE = "aineko.datasets.kafka.KafkaDataset"


def _first_line(exc: BaseException, work: Path) -> str:
    """Aineko's own error, as the type and the first line of its message, without this machine's paths."""
    text = str(exc).strip().splitlines()
    line = f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")
    line = re.sub(r" \(/[^)]*\)", "", line.replace(str(work), "<tmp>"))  # "(.../site-packages/aineko/__init__.py)"
    return re.sub(r" at 0x[0-9a-f]+", "", line)


def _detail(exc: BaseException) -> str:
    """For a pydantic ValidationError, where and what (its first line only counts the errors)."""
    errors = getattr(exc, "errors", None)
    if not callable(errors) or type(exc).__name__ != "ValidationError":
        return ""
    return "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors())


def place_module(code: str, class_path: str, root: Path) -> None:
    """Write the node code at the module path a YAML `class` names (`a.b.C` -> a/__init__.py + a/b.py)."""
    if "." not in class_path:
        return
    parts = class_path.rsplit(".", 1)[0].split(".")
    if parts[0] == "aineko":
        return
    folder = root
    for part in parts[:-1]:
        folder = folder / part
        folder.mkdir(exist_ok=True)
        (folder / "__init__.py").touch()
    (folder / f"{parts[-1]}.py").write_text(code, encoding="utf-8")


def _examples_for(node_inputs: list[str], node_outputs: list[str], examples: list[dict]) -> list[dict]:
    """The examples that apply to one node (see the module docstring)."""
    if node_inputs:
        return [ex for ex in examples if set(ex.get("inputs") or {}) & set(node_inputs)]
    return [ex for ex in examples if not ex.get("inputs") and set(ex.get("outputs") or {}) & set(node_outputs)]


class StageError(Exception):
    """A failure at one stage, with Aineko's own error."""

    def __init__(self, stage: str, error: str) -> None:
        super().__init__(error)
        self.stage = stage
        self.error = error


def _run_node(node_cls: type, node_name: str, pipeline: Any, node_cfg: Any, example: dict | None) -> dict:
    """`setup_test` + `run_test` (or `run_test_yield`) of one node; the payloads written, by dataset."""
    import signal

    inputs = list(node_cfg.inputs or [])
    outputs = list(node_cfg.outputs or [])
    node = node_cls(node_name=node_name, pipeline_name=pipeline.name, poison_pill=None, test=True)
    if example is None:
        feed = {ds: list(SAMPLE_INPUTS) for ds in inputs}
    else:
        feed = {ds: list((example.get("inputs") or {}).get(ds, [])) for ds in inputs}
    expected = (example or {}).get("outputs") or {}

    def on_alarm(signum: int, frame: Any) -> None:
        raise TimeoutError(f"node {node_name!r} still running after {RUN_LIMIT_S} s")

    signal.signal(signal.SIGALRM, on_alarm)
    # Repeating: an alarm can land where Python swallows the exception (an un-awaited coroutine's warning), and the
    # node then loops on; the next one, 0.1 s later, stops it.
    signal.setitimer(signal.ITIMER_REAL, RUN_LIMIT_S, 0.1)
    try:
        node.setup_test(dataset_type=TEST_DATASET_TYPE, inputs=feed, outputs=outputs, params=node_cfg.node_params or {})
        if inputs:
            written = node.run_test()
        else:
            limit = max([SOURCE_ITERATIONS, *(len(v) for v in expected.values())])
            for count, _ in enumerate(node.run_test_yield(), start=1):
                if count >= limit:
                    break
            written = {ds: out.get_test_output_values() for ds, out in node.outputs.items()}
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    return {ds: [m["message"] for m in msgs] for ds, msgs in written.items()}


def label_here(pair: Path, work: Path) -> dict:
    """Run the stages on one pair inside `work` (called in the child process)."""
    import yaml

    code = (pair / "node.py").read_text(encoding="utf-8")
    shutil.copy(pair / "pipeline.yml", work / "pipeline.yml")
    examples = json.loads((pair / "examples.json").read_text()) if (pair / "examples.json").exists() else []
    # a YAML Aineko cannot read places nothing: the config stage below fails with Aineko's own error
    with contextlib.suppress(yaml.YAMLError, KeyError, TypeError, AttributeError):
        raw = yaml.safe_load((pair / "pipeline.yml").read_text())
        for node in raw["pipeline"]["nodes"].values():
            place_module(code, str(node["class"]), work)
    sys.path.insert(0, str(work))
    os.chdir(work)

    from aineko.core.config_loader import ConfigLoader
    from aineko.core.dataset import AbstractDataset
    from aineko.core.node import AbstractNode
    from aineko.utils.imports import import_from_string

    stage = "config"
    try:
        pipeline = ConfigLoader(str(work / "pipeline.yml")).load_config().pipeline
        stage = "import"
        for ds_name, ds_cfg in pipeline.datasets.items():
            AbstractDataset.from_config(ds_name, dict(ds_cfg), test=True)
        classes = {}
        for node_name, node_cfg in pipeline.nodes.items():
            try:
                classes[node_name] = import_from_string(node_cfg.class_name, kind="class")
            except AttributeError as exc:  # the runner's own wrapping of a missing class
                raise ValueError(f"Invalid node class name specified in config for node '{node_name}'. {exc}") from exc
        stage = "subclass"
        for node_name, cls in classes.items():
            if not issubclass(cls, AbstractNode):
                raise TypeError(f"node {node_name!r}: {cls.__qualname__} is not a subclass of AbstractNode")
        stage = "construct"
        datasets = {name: dict(cfg) for name, cfg in pipeline.datasets.items()}
        for node_name, node_cfg in pipeline.nodes.items():
            classes[node_name](node_name=node_name, pipeline_name=pipeline.name, poison_pill=None, test=True)
            for ds in [*(node_cfg.inputs or []), *(node_cfg.outputs or [])]:
                AbstractDataset.from_config(name=ds, config=datasets.get(ds, {}), test=True)
        for node_name, node_cfg in pipeline.nodes.items():
            applicable = _examples_for(node_cfg.inputs or [], node_cfg.outputs or [], examples)
            for example in applicable or [None]:
                stage = "run"
                got = _run_node(classes[node_name], node_name, pipeline, node_cfg, example)
                stage = "examples"
                for ds, want in ((example or {}).get("outputs") or {}).items():
                    if ds not in (node_cfg.outputs or []):
                        continue
                    have = got.get(ds, [])[: len(want)] if not node_cfg.inputs else got.get(ds, [])
                    if have != want:
                        raise AssertionError(f"node {node_name!r}, dataset {ds!r}: expected {want!r}, got {have!r}")
    except BaseException as exc:  # noqa: BLE001 - every failure is the label
        label = {"valid": False, "stage": stage, "error": _first_line(exc, work)}
        return label | ({"detail": _detail(exc)} if _detail(exc) else {})
    return {"valid": True, "stage": "ok", "error": ""}


def label_pair(pair: Path, timeout: float = TIMEOUT_S) -> dict:
    """Label one pair in a fresh subprocess and temp dir, with a clean environment and a time limit."""
    with tempfile.TemporaryDirectory(prefix="aineko-label-") as tmp:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": tmp, "PYTHONDONTWRITEBYTECODE": "1"}
        cmd = [sys.executable, str(Path(__file__).resolve()), "--one", str(pair.resolve()), tmp]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=tmp, check=False)
        except subprocess.TimeoutExpired:
            return {"valid": False, "stage": "run", "error": f"TimeoutError: no result after {timeout} s"}
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {"valid": False, "stage": "run", "error": f"the labelling process failed: {tail}"}
    return json.loads(lines[-1])


def pairs(names: list[str] | None = None) -> list[Path]:
    """The corpus pairs (folders with a node.py), optionally only the named ones."""
    found = sorted(p for p in CORPUS.iterdir() if (p / "node.py").exists())
    if names:
        found = [p for p in found if p.name in names]
    return found


def stored_label(pair: Path) -> dict:
    """The committed label of a pair."""
    return json.loads((pair / "label.json").read_text())


def main(argv: list[str]) -> int:
    """Label the pairs named (or all), writing label.json, or only compare with `--check`."""
    if argv[:1] == ["--one"]:
        print(json.dumps(label_here(Path(argv[1]), Path(argv[2]))))
        return 0
    check = "--check" in argv
    names = [a for a in argv if not a.startswith("--")]
    stale = 0
    chosen = pairs(names)
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:  # each label is its own subprocess
        labels = list(pool.map(label_pair, chosen))
    for pair, label in zip(chosen, labels):
        old = stored_label(pair) if (pair / "label.json").exists() else None
        mark = "" if old == label else ("  (changed)" if old else "  (new)")
        stale += bool(mark)
        print(f"{pair.name:40s} {label['stage']:9s} {label['error'][:110]}{mark}")
        if not check:
            (pair / "label.json").write_text(json.dumps(label, indent=2) + "\n")
    return 1 if check and stale else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
