"""The generated pipeline YAML: valid YAML, a valid Aineko pipeline, and node classes that exist in the code."""

from __future__ import annotations

import ast
from typing import Any

import yaml

from dream_graph.evaluators.base import EvalInput, finding, parse_module
from dream_graph.state import Finding
from dream_graph.workers import run_cpu

NODE_BASE = "AbstractNode"
NODE_METHOD = "_execute"
KNOWN_PIPELINE_KEYS = frozenset({"name", "nodes", "datasets", "default_node_settings"})
KNOWN_NODE_KEYS = frozenset({"class", "inputs", "outputs", "node_params", "node_settings"})

try:  # libyaml's parser is ~10x faster; PyYAML falls back to pure Python when it is missing
    _Loader: Any = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - depends on how PyYAML was built
    _Loader = yaml.SafeLoader


def parse_yaml(text: str) -> tuple[Any, list[Finding]]:
    """`yaml.safe_load` with a finding (YAML line and problem) instead of an exception."""
    try:
        return yaml.load(text, Loader=_Loader), []  # a safe loader (C or pure Python)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at YAML line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        return None, [finding("config-yaml", f"the ```yaml block is not valid YAML{where}: {problem}")]


def _names(value: Any) -> list[str] | None:
    """A node's `inputs`/`outputs` as a list of names, or None when it has the wrong shape."""
    if value is None:
        return []
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    return None


def check_node(name: str, node: Any, datasets: dict) -> list[Finding]:
    """One node definition: a `class`, and inputs/outputs that name declared datasets."""
    if not isinstance(node, dict):
        return [finding("config-node", f"node {name!r}: the definition must be a mapping with a `class` key")]
    found: list[Finding] = []
    cls = node.get("class")
    if not isinstance(cls, str) or not cls.strip():
        found.append(finding("config-node-class", f"node {name!r}: key `class` is missing (the node class's dotted path)"))
    for key in ("inputs", "outputs"):
        names = _names(node.get(key))
        if names is None:
            found.append(finding("config-node-datasets", f"node {name!r}: key `{key}` must be a list of dataset names"))
            continue
        for ds in names:
            if ds not in datasets:
                found.append(
                    finding(
                        "config-undeclared-dataset",
                        f"node {name!r}: `{key}` names dataset {ds!r}, which is not declared under `pipeline.datasets`",
                    )
                )
    for key in sorted(set(node) - KNOWN_NODE_KEYS, key=str):
        found.append(finding("config-unknown-key", f"node {name!r}: unknown key `{key}`", severity="info"))
    return found


def check_datasets(datasets: Any) -> list[Finding]:
    """`pipeline.datasets`: a mapping of dataset name to a definition with a `type`."""
    if not isinstance(datasets, dict):
        return [finding("config-datasets", "key `pipeline.datasets` is missing or not a mapping of dataset definitions")]
    return [
        finding("config-dataset-type", f"dataset {name!r}: key `type` is missing (e.g. aineko.datasets.kafka.KafkaDataset)")
        for name, ds in datasets.items()
        if not (isinstance(ds, dict) and isinstance(ds.get("type"), str))
    ]


def check_pipeline(doc: Any) -> list[Finding]:
    """The Aineko pipeline schema (bundled_docs/aineko/pipelines.md), every finding naming the node and key."""
    pipeline = doc.get("pipeline") if isinstance(doc, dict) else None
    if not isinstance(pipeline, dict):
        return [finding("config-pipeline", "the YAML must have a top-level `pipeline` mapping")]
    found: list[Finding] = []
    name = pipeline.get("name")
    if not isinstance(name, str) or not name.strip():
        found.append(finding("config-name", "key `pipeline.name` is missing or empty"))
    found += check_datasets(pipeline.get("datasets"))
    datasets = pipeline.get("datasets") if isinstance(pipeline.get("datasets"), dict) else {}
    nodes = pipeline.get("nodes")
    if not isinstance(nodes, dict) or not nodes:
        found.append(finding("config-nodes", "key `pipeline.nodes` is missing or not a mapping of node definitions"))
    else:
        for node_name, node in nodes.items():
            found += check_node(str(node_name), node, datasets)
    for key in sorted(set(pipeline) - KNOWN_PIPELINE_KEYS, key=str):
        found.append(finding("config-unknown-key", f"pipeline: unknown key `{key}`", severity="info"))
    return found


def _base_name(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Subscript):  # Generic[...] and the like
        return _base_name(node.value)
    return ""


class _Classes:
    """The module's top-level classes, to answer "is X a node class with `_execute`" without importing anything."""

    def __init__(self, tree: ast.Module) -> None:
        self.defs = {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}

    def is_node(self, name: str, seen: frozenset[str] = frozenset()) -> bool:
        cls = self.defs.get(name)
        if cls is None or name in seen:
            return False
        bases = [_base_name(b) for b in cls.bases]
        return NODE_BASE in bases or any(self.is_node(b, seen | {name}) for b in bases)

    def has_method(self, name: str, method: str, seen: frozenset[str] = frozenset()) -> bool:
        cls = self.defs.get(name)
        if cls is None or name in seen:
            return False
        if any(isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == method for n in cls.body):
            return True
        return any(self.has_method(_base_name(b), method, seen | {name}) for b in cls.bases)


def check_classes(doc: Any, code: str | None) -> list[Finding]:
    """Every `class` the pipeline references exists in the generated code as an `AbstractNode` with `_execute`."""
    pipeline = doc.get("pipeline") if isinstance(doc, dict) else None
    nodes = pipeline.get("nodes") if isinstance(pipeline, dict) else None
    if not isinstance(nodes, dict):
        return []
    refs = {
        str(n): node["class"].strip().rsplit(".", 1)[-1]
        for n, node in nodes.items()
        if isinstance(node, dict) and isinstance(node.get("class"), str) and node["class"].strip()
    }
    if not refs:
        return []
    try:
        classes = _Classes(parse_module(code or ""))
    except (SyntaxError, ValueError):
        return [finding("config-classes-not-checked", "node classes not checked: the python code does not parse")]
    found: list[Finding] = []
    for node_name, cls in refs.items():
        where = f"node {node_name!r}: key `class` names {cls!r}"
        if cls not in classes.defs:
            found.append(finding("config-class-missing", f"{where}, which is not defined in the ```python block"))
            continue
        line = classes.defs[cls].lineno
        if not classes.is_node(cls):
            found.append(finding("config-class-base", f"{where}, which does not subclass {NODE_BASE}", line=line))
        if not classes.has_method(cls, NODE_METHOD):
            found.append(finding("config-class-execute", f"{where}, which has no `{NODE_METHOD}` method", line=line))
    return found


def check_config(config_yaml: str | None, code: str | None) -> list[Finding]:
    """All config checks; a missing yaml block is a finding."""
    if config_yaml is None or not config_yaml.strip():
        return [finding("config-missing", "no pipeline configuration: the reply must contain a ```yaml block")]
    doc, found = parse_yaml(config_yaml)
    if found:
        return found
    return check_pipeline(doc) + check_classes(doc, code)


class ConfigEvaluator:
    """The Aineko pipeline YAML against its schema and against the generated node classes."""

    name = "config"

    async def evaluate(self, code: str | None, context: EvalInput) -> list[Finding]:
        return await run_cpu(check_config, context.config_yaml, code)
