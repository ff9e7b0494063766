"""The static `config` check: the pipeline YAML and the node module, judged as Aineko 0.4.0 would judge them.

It decides, without importing Aineko (it runs every cycle, and is the only check when Aineko is not installed), what
Aineko's own code paths would reject: the config schema of `aineko.models.config_schema` (mirrored below with the same
keys, types, defaults and extra-key handling), `{$VAR}` injection into `node_params` (an unset variable is an error),
the dotted-path imports of every dataset `type` and node `class`, the `AbstractNode` subclass check, construction as the
runner does it, and the calls a node makes on its datasets and on itself (the 0.3 API included). What needs the code to
run (a node raising on a payload, outputs that differ from the examples) is left to the `aineko` evaluator.
"""

from __future__ import annotations

import ast
import builtins
import importlib.util
import re
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from dream_graph.evaluators.base import EvalInput, finding, parse_module
from dream_graph.state import Finding
from dream_graph.workers import run_cpu

try:  # libyaml's parser is ~10x faster; PyYAML falls back to pure Python when it is missing
    _Loader: Any = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - depends on how PyYAML was built
    _Loader = yaml.SafeLoader

# --- The schema, as aineko/models/config_schema.py and dataset_config_schema.py define it in 0.4.0 ------------------


class NodeSettings(BaseModel):
    """Ray options of a node: `num_cpus` > 0, and any other key passes through."""

    model_config = ConfigDict(extra="allow")
    num_cpus: float | None = Field(None, gt=0.0)


class DatasetConfig(BaseModel):
    """A dataset: the dotted path of its class, where it lives and its parameters (extra keys are ignored)."""

    type: str
    location: str | None = None
    params: dict[str, Any] | None = None


class NodeConfig(BaseModel):
    """A node: its class's dotted path, parameters, Ray settings and dataset names (extra keys are ignored)."""

    class_name: str = Field(..., alias="class")
    node_params: dict | None = None
    node_settings: NodeSettings | None = None
    inputs: list[str] | None = None
    outputs: list[str] | None = None


class PipelineConfig(BaseModel):
    """The `pipeline` mapping; `nodes` and `datasets` are required but may be empty."""

    name: str
    default_node_settings: NodeSettings | None = None
    nodes: dict[str, NodeConfig]
    datasets: dict[str, DatasetConfig]


class PipelineFile(BaseModel):
    """The whole file: one `pipeline` key (other top-level keys are ignored)."""

    pipeline: PipelineConfig


# --- What Aineko 0.4.0 ships (tests/unit/test_config_check.py compares these with the installed package) ------------

NODE_BASE = "aineko.core.node.AbstractNode"
KAFKA_DATASET = "aineko.datasets.kafka.KafkaDataset"
DATASET_BASE = "aineko.core.dataset.AbstractDataset"
CANONICAL = {"aineko.AbstractNode": NODE_BASE}
"""Other import paths of the same objects."""
AINEKO_NODE_CLASSES = frozenset({"aineko.core.node_manager.NodeManager"})
"""Concrete node classes inside Aineko (its internal node manager)."""
AINEKO_DATASET_CLASSES = frozenset({KAFKA_DATASET})


def _words(text: str) -> frozenset[str]:
    """A set of names written as one space-separated string (keeps the tables below short)."""
    return frozenset(text.split())


AINEKO_MODULES = _words(
    "aineko aineko.__main__ aineko.cli aineko.cli.create_pipeline aineko.cli.docker_cli_wrapper aineko.cli.dream "
    "aineko.cli.kafka_cli_wrapper aineko.cli.run aineko.cli.visualize aineko.config aineko.core "
    "aineko.core.config_loader aineko.core.dataset aineko.core.deploy_config_loader aineko.core.node "
    "aineko.core.node_manager aineko.core.runner aineko.datasets aineko.datasets.kafka aineko.models "
    "aineko.models.config_schema aineko.models.dataset_config_schema aineko.models.deploy_config_schema "
    "aineko.models.deploy_config_schema_internal aineko.models.project_config_schema aineko.models.validations "
    "aineko.utils aineko.utils.imports aineko.utils.io aineko.utils.misc aineko.templates"
)
AINEKO_EXPORTS: dict[str, frozenset[str]] = {
    "aineko": _words("AbstractNode ConfigLoader Runner __version__ __author__ logging"),
    "aineko.core.node": _words(
        "ABC AINEKO_CONFIG AbstractDataset AbstractNode Dict Generator List Optional PoisonPill TESTING_NODE_CONFIG "
        "Tuple abstractmethod ray time traceback"
    ),
    "aineko.core.dataset": _words(
        "AbstractDataset Any DatasetConfig DatasetCreationStatus DatasetError Dict Future Generic List Optional T "
        "TypeVar abc import_from_string"
    ),
    "aineko.datasets.kafka": _words(
        "AINEKO_CONFIG AbstractDataset AdminClient Any BaseModel Consumer ConsumerParams DEFAULT_KAFKA_CONFIG "
        "DatasetCreationStatus DatasetError Dict KafkaCredentials KafkaDataset KafkaDatasetError KafkaError "
        "KafkaParams List Literal Message NewTopic OFFSET_INVALID Optional Producer ProducerParams Union datetime "
        "json logger logging os"
    ),
}
"""Names importable from these modules (`from <module> import <name>`), besides their submodules."""
NODE_ATTRIBUTES = _words(
    "name pipeline_name last_heartbeat inputs outputs params test log_levels logging_dataset poison_pill "
    "enable_test_mode setup_datasets setup_test log _log_traceback execute activate_poison_pill _execute run_test "
    "run_test_yield _pre_loop_hook _post_loop_hook _abc_impl"
)
"""What `self` has on an `AbstractNode` (methods and the attributes its `__init__` sets)."""
DATASET_ATTRIBUTES = _words(
    "name topic_name params consumer_name credentials cached source_node source_pipeline location read write next "
    "last consume_all create delete exists initialize setup_test_mode get_test_input_values get_test_output_values "
    "test_is_empty from_config _consume _consume_message _create_admin_client _create_consumer _create_producer "
    "_create_topic _delivery_report _update_location _update_offset_to_latest _validate_message _input_values "
    "_output_values _test _empty _consumer _producer _admin_client"
)
"""What a `KafkaDataset` (every `self.inputs[...]` / `self.outputs[...]`) has."""
INTERNAL_OUTPUTS = frozenset({"logging"})
"""Datasets Aineko adds to every node's outputs (its log)."""
LOG_LEVELS = ("info", "debug", "warning", "error", "critical")
HOOKS = ("_execute", "_pre_loop_hook", "_post_loop_hook")
"""Methods Aineko calls with one positional argument, the node's params."""
RUNNER_KWARGS = ("node_name", "pipeline_name", "poison_pill", "test")
"""How the runner (and a test with `test=True`) constructs a node."""
ENV_PATTERN = re.compile(r"\{\$.*?\}", re.DOTALL)
"""Aineko's placeholder pattern in `inject_env_vars` (note: `{$}` matches, with an empty name)."""
MAX_INJECTIONS = 100
"""Substitutions per string before giving up (a variable whose value holds its own placeholder never ends)."""

OLD_API = {
    "consumers": 'use `self.inputs["<dataset>"].next()` (or `.read(how="next", timeout=...)`)',
    "producers": 'use `self.outputs["<dataset>"].write(msg)`',
    "produce": "use `.write(msg)` on `self.outputs[...]`",
    "consume": 'use `.next()`, `.last(timeout)` or `.read(how="next", timeout=...)` on `self.inputs[...]`',
}
"""The Aineko 0.3 API and its 0.4.0 replacement."""

HINTS = {
    "num_cpus": "a number greater than 0, e.g. 0.5",
    "node_params": "a mapping of parameter names to values",
    "params": "a mapping, e.g. `config: {retention.ms: 86400000}`",
    "class": "the node class's dotted path, e.g. `my_pipeline.nodes.MyNode`",
    "type": f"the dataset class's dotted path, e.g. `{KAFKA_DATASET}`",
    "inputs": "a list of dataset names",
    "outputs": "a list of dataset names",
    "nodes": "a mapping of node names to node definitions (it may be empty: `{}`)",
    "datasets": "a mapping of dataset names to dataset definitions (it may be empty: `{}`)",
    "name": "a string",
}


def parse_yaml(text: str) -> tuple[Any, list[Finding]]:
    """`yaml.safe_load` with a finding (YAML line and problem) instead of an exception."""
    try:
        return yaml.load(text, Loader=_Loader), []  # a safe loader (C or pure Python)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at YAML line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        return None, [finding("config-yaml", f"the ```yaml block is not valid YAML{where}: {problem}")]


# --- The config ----------------------------------------------------------------------------------------------------


def _where(loc: tuple) -> tuple[str, str]:
    """A pydantic error location as (what, dotted key): ("node 'x'", "node_settings.num_cpus")."""
    parts = [str(p) for p in loc]
    for section, what in (("nodes", "node"), ("datasets", "dataset")):
        if parts[:2] == ["pipeline", section] and len(parts) > 2:
            return f"{what} {parts[2]!r}", ".".join(parts[3:]) or f"pipeline.{section}.{parts[2]}"
    return "pipeline", ".".join(parts)


def schema_findings(exc: ValidationError) -> list[Finding]:
    """One finding per schema error, naming the node or dataset, the key, pydantic's message and what is expected."""
    found = []
    for err in exc.errors():
        what, key = _where(err["loc"])
        hint = next((HINTS[p] for p in reversed([str(x) for x in err["loc"]]) if p in HINTS), None)
        expected = f"; expected {hint}" if hint else ""
        found.append(
            finding(
                "config-schema",
                f"{what}: key `{key}`: {err['msg']}{expected} (Aineko 0.4.0 rejects it when loading the config)",
            )
        )
    return found


def _unresolved(value: str, env: Mapping[str, str]) -> str | None:
    """The first `{$VAR}` Aineko could not inject, substituting as it does (left to right, rescanning each result)."""
    for _ in range(MAX_INJECTIONS):
        match = ENV_PATTERN.search(value)
        if match is None:
            return None
        var = match.group()[2:-1]
        if env.get(var) is None:
            return match.group()
        value = value.replace(match.group(), env[var])
    return value  # Aineko would recurse without end: report what is left


def _placeholders(value: Any, path: str, env: Mapping[str, str]) -> Iterator[tuple[str, str]]:
    """(key path, placeholder) for every string in node params that Aineko fails to inject, walking dict values and
    lists as it does (keys and non-string scalars are left alone)."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _placeholders(v, f"{path}.{k}", env)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _placeholders(v, f"{path}[{i}]", env)
    elif isinstance(value, str):
        missing = _unresolved(value, env)
        if missing is not None:
            yield path, missing


def env_findings(nodes: Mapping[str, NodeConfig], env: Mapping[str, str]) -> list[Finding]:
    """`{$VAR}` in `node_params` whose VAR is not in `env` (Aineko raises while loading the config)."""
    found = []
    for name, node in nodes.items():
        for path, placeholder in _placeholders(node.node_params, "node_params", env):
            var = placeholder[2:-1]
            found.append(
                finding(
                    "config-env",
                    f"node {name!r}: key `{path}` uses `{placeholder}`, but {var or 'the empty name'} is not set, so "
                    f'Aineko 0.4.0 stops loading the config ("Failed to inject environment variable. {var} was not '
                    f'found."); set the variable where the pipeline runs, or write the value in `node_params`',
                )
            )
    return found


@lru_cache(maxsize=256)
def _installed(top_level: str) -> bool:
    """Whether a top-level module can be imported here (a path search: nothing is executed)."""
    if top_level in sys.builtin_module_names or top_level in sys.stdlib_module_names:
        return True
    try:
        return importlib.util.find_spec(top_level) is not None
    except (ImportError, ValueError):
        return False


def _module_of(path: str) -> str:
    """The module part of a dotted class path (what Aineko imports before looking the class up)."""
    return path.rsplit(".", 1)[0]


def _generated_modules(nodes: Mapping[str, NodeConfig]) -> set[str]:
    """The module paths where the generated code is placed: each node `class`'s module outside `aineko`."""
    return {
        _module_of(n.class_name)
        for n in nodes.values()
        if "." in n.class_name
        and not _is_aineko(n.class_name)
        and n.class_name.split(".")[0] not in sys.stdlib_module_names
    }


def _is_aineko(path: str) -> bool:
    """Whether a dotted path points into Aineko itself rather than the generated module."""
    return path == "aineko" or path.startswith("aineko.")


def _format_error(path: str) -> str:
    """Aineko's own words for a path with no module part, quoted in findings."""
    return f'Aineko 0.4.0 fails importing it ("Attribute {path} must be in the format ...module.function or ...module.Class")'


def dataset_type_findings(
    datasets: Mapping[str, DatasetConfig], module: _Module | None, generated: set[str]
) -> list[Finding]:
    """Every declared dataset's `type` is importable as a class (the runner builds them all, used or not)."""
    found = []
    for name, ds in datasets.items():
        path, where = ds.type, f"dataset {name!r}: key `type` is `{ds.type}`"
        if "." not in path:
            found.append(
                finding(
                    "config-dataset-type", f"{where}, not a dotted path: {_format_error(path)}; use `{KAFKA_DATASET}`"
                )
            )
        elif _is_aineko(path):
            if path not in AINEKO_DATASET_CLASSES:
                why = "an abstract class" if CANONICAL.get(path, path) == DATASET_BASE else "no class in Aineko 0.4.0"
                found.append(
                    finding(
                        "config-dataset-type",
                        f"{where}, which names {why}; the dataset class Aineko 0.4.0 ships is `{KAFKA_DATASET}`",
                    )
                )
        elif _module_of(path) in generated:
            if module is not None and module.lookup(path.rsplit(".", 1)[1])[0] == "missing":
                found.append(
                    finding(
                        "config-dataset-type", f"{where}, but the ```python block defines no `{path.rsplit('.', 1)[1]}`"
                    )
                )
        elif not _installed(path.split(".")[0]):
            found.append(
                finding(
                    "config-dataset-type",
                    f"{where}, but module `{path.split('.')[0]}` is not installed "
                    f"(\"No module named '{path.split('.')[0]}'\"); use "
                    f"`{KAFKA_DATASET}`",
                )
            )
    return found


def undeclared_findings(nodes: Mapping[str, NodeConfig], datasets: Mapping[str, DatasetConfig]) -> list[Finding]:
    """Node inputs/outputs that name no declared dataset (Aineko fails setting the node's datasets up)."""
    return [
        finding(
            "config-undeclared-dataset",
            f"node {name!r}: `{key}` names dataset {ds!r}, which is not declared "
            "under `pipeline.datasets` (Aineko 0.4.0 fails setting up the node: "
            '"type: Field required"); declare it or fix the name',
        )
        for name, node in nodes.items()
        for key in ("inputs", "outputs")
        for ds in getattr(node, key) or []
        if ds not in datasets
    ]


# --- The node module -----------------------------------------------------------------------------------------------


def _dotted(expr: ast.expr) -> str | None:
    """`a.b.c` as a string (None for anything that is not names and attributes)."""
    if isinstance(expr, ast.Name):
        return expr.id
    if isinstance(expr, ast.Attribute):
        head = _dotted(expr.value)
        return f"{head}.{expr.attr}" if head else None
    return None


def _top_statements(body: list[ast.stmt]) -> Iterator[ast.stmt]:
    """Module-level statements, including those under `if`/`try`/`with` (any branch may bind a name)."""
    for stmt in body:
        yield stmt
        if isinstance(stmt, ast.If):
            yield from _top_statements(stmt.body)
            yield from _top_statements(stmt.orelse)
        elif isinstance(stmt, ast.Try):
            for part in (stmt.body, *(h.body for h in stmt.handlers), stmt.orelse, stmt.finalbody):
                yield from _top_statements(part)
        elif isinstance(stmt, ast.With):
            yield from _top_statements(stmt.body)


@dataclass
class _Module:
    """The generated module's top-level names, resolved without importing it."""

    tree: ast.Module
    bindings: dict[str, tuple[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Bind every top-level name in statement order, so a later definition shadows an earlier import."""
        for stmt in _top_statements(self.tree.body):
            if isinstance(stmt, ast.ClassDef):
                self.bindings[stmt.name] = ("class", stmt)
            elif isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
                self.bindings[stmt.name] = ("function", stmt)
            elif isinstance(stmt, ast.Import):
                for a in stmt.names:
                    if a.asname:
                        self.bindings[a.asname] = ("ref", a.name)
                    else:
                        top = a.name.split(".")[0]
                        self.bindings[top] = ("ref", top)
            elif isinstance(stmt, ast.ImportFrom):
                base = "." * stmt.level + (stmt.module or "")
                for a in stmt.names:
                    if a.name != "*":
                        self.bindings[a.asname or a.name] = ("ref", f"{base}.{a.name}")
            elif isinstance(stmt, (ast.Assign, ast.AnnAssign)):
                targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
                for t in targets:
                    if isinstance(t, ast.Name):
                        alias = _dotted(stmt.value) if stmt.value is not None else None
                        self.bindings[t.id] = ("alias", alias) if alias else ("other", stmt)

    def lookup(self, name: str, depth: int = 0) -> tuple[str, Any]:
        """What a top-level name is: ("class", ClassDef), ("ref", dotted path), ("function", def), ("missing", name),
        or ("other", node) when it cannot be told without running the module."""
        kind, value = self.bindings.get(name, ("missing", name))
        if kind == "alias" and depth < 20:
            return self.resolve_path(value, depth + 1)
        return kind, value

    def resolve_path(self, dotted: str, depth: int = 0) -> tuple[str, Any]:
        """Resolve `a.b.C` against the module's names (imports become dotted paths)."""
        head, _, rest = dotted.partition(".")
        kind, value = self.lookup(head, depth)
        if kind == "ref":
            path = f"{value}.{rest}" if rest else value
            return "ref", CANONICAL.get(path, path)
        if kind == "missing" and hasattr(builtins, head):
            return "ref", f"builtins.{dotted}"
        return (kind, value) if not rest else ("other", dotted)

    def base_kind(self, cls: ast.ClassDef, seen: frozenset[str] = frozenset()) -> bool | None:
        """True if the class derives from Aineko's `AbstractNode`, False if not, None if it cannot be told."""
        if cls.name in seen:
            return None
        unknown = False
        for base in cls.bases:
            dotted = _dotted(base)
            kind, value = self.resolve_path(dotted) if dotted else ("other", None)
            if kind == "ref" and value == NODE_BASE:
                return True
            if kind == "class":
                sub = self.base_kind(value, seen | {cls.name})
                if sub:
                    return True
                unknown |= sub is None
            elif kind == "ref" and (value.startswith("builtins.") or _is_aineko(value)):
                continue
            else:
                unknown = True
        return None if unknown else False

    def chain(self, cls: ast.ClassDef) -> tuple[list[ast.ClassDef], bool]:
        """The local classes in the MRO (depth first, left to right) and whether every base is known."""
        out: list[ast.ClassDef] = []
        complete = True

        def walk(c: ast.ClassDef) -> None:
            """Visit a class and its local bases once each."""
            nonlocal complete
            if c in out:
                return
            out.append(c)
            for base in c.bases:
                dotted = _dotted(base)
                kind, value = self.resolve_path(dotted) if dotted else ("other", None)
                if kind == "class":
                    walk(value)
                elif not (kind == "ref" and value in (NODE_BASE, "builtins.object")):
                    complete = False

        walk(cls)
        return out, complete


def import_findings(module: _Module, generated: set[str]) -> list[Finding]:
    """Module-level imports Aineko 0.4.0 (or this environment) cannot satisfy: the module fails before any node runs."""
    found = []
    packages = {m.split(".")[0] for m in generated}
    for stmt in module.tree.body:
        if isinstance(stmt, ast.Import):
            items = [(a.name, None) for a in stmt.names]
        elif isinstance(stmt, ast.ImportFrom) and stmt.level == 0 and stmt.module and stmt.module != "__future__":
            items = [(stmt.module, a.name) for a in stmt.names]
        else:
            continue
        for mod, name in items:
            top = mod.split(".")[0]
            if _is_aineko(mod):
                if mod not in AINEKO_MODULES and not (name is None and mod in AINEKO_MODULES):
                    found.append(
                        finding(
                            "config-import",
                            f"`{mod}` is not a module of Aineko 0.4.0 (\"No module named '{mod}'\")",
                            line=stmt.lineno,
                        )
                    )
                elif (
                    name
                    and name != "*"
                    and mod in AINEKO_EXPORTS
                    and name not in AINEKO_EXPORTS[mod]
                    and f"{mod}.{name}" not in AINEKO_MODULES
                ):
                    hint = " (use `from aineko import AbstractNode`)" if name.endswith("Node") else ""
                    found.append(
                        finding(
                            "config-import",
                            f'Aineko 0.4.0 has no `{name}` in `{mod}` ("cannot import '
                            f"name '{name}' from '{mod}'\"){hint}",
                            line=stmt.lineno,
                        )
                    )
            elif top not in packages and not _installed(top):
                found.append(
                    finding(
                        "config-import",
                        f"module `{top}` is not installed where the pipeline runs (\"No module named '{top}'\")",
                        line=stmt.lineno,
                    )
                )
    return found


def _self_attr(node: ast.AST) -> str | None:
    """`X` for an expression `self.X`."""
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self":
        return node.attr
    return None


def _dataset_ref(expr: ast.AST, local: Mapping[str, tuple[str, str | None]]) -> tuple[str, str | None] | None:
    """("inputs" | "outputs", literal key or None) when `expr` is one of the node's datasets."""
    if isinstance(expr, ast.Subscript) and _self_attr(expr.value) in ("inputs", "outputs"):
        key = expr.slice.value if isinstance(expr.slice, ast.Constant) and isinstance(expr.slice.value, str) else None
        return _self_attr(expr.value), key  # type: ignore[return-value]
    if isinstance(expr, ast.Name):
        return local.get(expr.id)
    return None


@lru_cache(maxsize=512)
def _walk(node: ast.AST) -> tuple[ast.AST, ...]:
    """`ast.walk`, once per node: the checks of a class walk it and its methods again and again, and a walk in pure
    Python was 60% of the whole check. The trees are read-only and shared (see `parse_module`), so nodes are keys."""
    return tuple(ast.walk(node))


def _dataset_locals(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> dict[str, tuple[str, str | None]]:
    """Names a method binds to a dataset: `src = self.inputs["x"]`, `for ds in self.outputs.values()`."""
    local: dict[str, tuple[str, str | None]] = {}
    for node in _walk(fn):
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            ref = _dataset_ref(node.value, {})
            if ref:
                local[node.targets[0].id] = ref
        elif (
            isinstance(node, ast.For) and isinstance(node.iter, ast.Call) and isinstance(node.iter.func, ast.Attribute)
        ):
            owner = _self_attr(node.iter.func.value)
            if owner in ("inputs", "outputs"):
                if node.iter.func.attr == "values" and isinstance(node.target, ast.Name):
                    local[node.target.id] = (owner, None)
                elif node.iter.func.attr == "items" and isinstance(node.target, ast.Tuple):
                    value_name = node.target.elts[-1] if len(node.target.elts) == 2 else None
                    if isinstance(value_name, ast.Name):
                        local[value_name.id] = (owner, None)
    return local


def _call_problem(method: str, call: ast.Call) -> str | None:
    """A call on a KafkaDataset that raises in Aineko 0.4.0, and what to write instead."""
    kws = {k.arg for k in call.keywords if k.arg}
    splat = any(k.arg is None for k in call.keywords) or any(isinstance(a, ast.Starred) for a in call.args)
    if splat:
        return None
    const = {k.arg: k.value.value for k in call.keywords if k.arg and isinstance(k.value, ast.Constant)}
    if method == "write":
        if kws - {"msg", "key"}:
            unexpected = min(kws - {"msg", "key"})
            return f"`write()` got an unexpected keyword `{unexpected}`; call `write(msg)` or `write(msg, key=...)`"
        if not call.args and "msg" not in kws:
            return "`write()` needs the message: `write(msg)`"
        if len(call.args) > 2:
            return f"`write()` takes the message and an optional key, not {len(call.args)} arguments"
    elif method == "next":
        if call.args or kws:
            return '`next()` takes no arguments (it blocks until a message arrives); for a timeout use `read(how="next", timeout=...)`'
    elif method == "last":
        if kws - {"timeout"} or len(call.args) > 1:
            return "`last()` takes only `timeout`"
        timeout = call.args[0].value if call.args and isinstance(call.args[0], ast.Constant) else const.get("timeout")
        if isinstance(timeout, (int, float)) and not isinstance(timeout, bool) and timeout <= 0:
            return f'`last(timeout={timeout})` raises "Timeout must be > 0 when consuming the last message."'
    elif method == "read":
        if kws - {"how", "timeout", "block"} or len(call.args) > 3:
            return "`read()` takes `how`, `timeout` and `block`"
        if not call.args and "how" not in kws:
            return '`read()` needs `how`: `read(how="next")` or `read(how="last", timeout=1)`'
        how = call.args[0].value if call.args and isinstance(call.args[0], ast.Constant) else const.get("how")
        if how is not None and how not in ("next", "last"):
            return f'`read(how={how!r})` raises "Invalid how: {how}. Expected `next` or `last`."'
    return None


def _methods(chain: list[ast.ClassDef]) -> dict[str, ast.FunctionDef | ast.AsyncFunctionDef]:
    """The method each name resolves to along the (local) MRO."""
    found: dict[str, ast.FunctionDef | ast.AsyncFunctionDef] = {}
    for cls in chain:
        for stmt in cls.body:
            if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
                found.setdefault(stmt.name, stmt)
    return found


def _takes_params(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    """Whether `fn(self, params)` binds: one positional parameter after `self`, and no other required one."""
    static = any(_dotted(d) == "staticmethod" for d in fn.decorator_list)
    positional = [*fn.args.posonlyargs, *fn.args.args][0 if static else 1 :]
    required = len(positional) - len(fn.args.defaults)
    kw_required = [a for a, d in zip(fn.args.kwonlyargs, fn.args.kw_defaults) if d is None]
    return (bool(positional) or fn.args.vararg is not None) and required <= 1 and not kw_required


def _accepts_runner_kwargs(fn: ast.FunctionDef) -> list[str]:
    """The runner's keyword arguments an `__init__` would refuse."""
    if fn.args.kwarg is not None:
        return []
    names = {a.arg for a in [*fn.args.args, *fn.args.kwonlyargs]}
    return [k for k in RUNNER_KWARGS if k not in names]


def _super_init(fn: ast.FunctionDef) -> ast.Call | None:
    """The `super().__init__(...)` (or `Base.__init__(self, ...)`) call in an `__init__`."""
    for node in _walk(fn):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "__init__":
            return node
    return None


def _passes_pipeline_name(call: ast.Call) -> bool:
    """Whether a call to `AbstractNode.__init__` supplies its one required argument."""
    is_super = isinstance(call.func, ast.Attribute) and isinstance(call.func.value, ast.Call)
    positional = len(call.args) - (0 if is_super else 1)
    return (
        positional >= 1
        or any(k.arg in ("pipeline_name", None) for k in call.keywords)
        or any(isinstance(a, ast.Starred) for a in call.args)
    )


@dataclass
class _NodeUse:
    """One pipeline node that uses a class: its name, class path, datasets and params."""

    name: str
    path: str
    inputs: list[str] | None
    outputs: list[str] | None
    """None when the config's value is not a list (the schema finding covers it)."""
    params: dict | None


class _ClassCheck:
    """The checks on one node class of the generated module, for the pipeline nodes that use it."""

    def __init__(self, module: _Module, cls: ast.ClassDef, uses: list[_NodeUse]) -> None:
        self.module, self.cls, self.uses = module, cls, uses
        self.chain, self.complete = module.chain(cls)
        self.methods = _methods(self.chain)
        self.first = uses[0]
        self.found: list[Finding] = []

    def add(self, rule: str, message: str, line: int | None, use: _NodeUse | None = None) -> None:
        """A finding that names the node (the first that uses the class, unless one is given) and its class path."""
        use = use or self.first
        self.found.append(finding(rule, f"node {use.name!r} (`class: {use.path}`): {message}", line=line))

    def run(self) -> list[Finding]:
        """Construction, hook signatures, then what the methods do with `self`, datasets and params."""
        self.check_construction()
        self.check_hooks()
        if self.complete:
            self.check_attributes()
        self.check_datasets()
        self.check_params()
        self.check_log_levels()
        return self.found

    def check_construction(self) -> None:
        """Aineko builds the node with `node_name`, `pipeline_name`, `poison_pill` (and `test=True` in tests)."""
        if self.complete and "_execute" not in self.methods:
            self.add(
                "config-class-execute",
                f"`{self.cls.name}` has no `_execute` method, so Aineko 0.4.0 cannot "
                f"build it (\"Can't instantiate abstract class {self.cls.name} with "
                'abstract method _execute"); add `def _execute(self, params=None)`',
                self.cls.lineno,
            )
        init = self.methods.get("__init__")
        if not isinstance(init, ast.FunctionDef):
            return
        refused = _accepts_runner_kwargs(init)
        if refused:
            self.add(
                "config-init",
                f"`__init__` does not accept `{refused[0]}`, which Aineko passes when it builds "
                "the node; take `*args, **kwargs` and call `super().__init__(*args, **kwargs)`",
                init.lineno,
            )
            return
        call = _super_init(init)
        if call is None:
            self.add(
                "config-init",
                "`__init__` never calls `super().__init__(...)`, so `inputs`, `outputs`, "
                "`params` and `test` are never set; call `super().__init__(*args, **kwargs)` "
                "first",
                init.lineno,
            )
        elif not _passes_pipeline_name(call):
            self.add(
                "config-init",
                '`super().__init__()` misses `pipeline_name` ("missing 1 required positional '
                "argument: 'pipeline_name'\"); pass the arguments through: "
                "`super().__init__(*args, **kwargs)`",
                call.lineno,
            )

    def check_hooks(self) -> None:
        """`_execute`, `_pre_loop_hook` and `_post_loop_hook` are called synchronously as `method(params)`."""
        for name in HOOKS:
            fn = self.methods.get(name)
            if fn is None:
                continue
            if isinstance(fn, ast.AsyncFunctionDef):
                self.add(
                    "config-signature",
                    f"`{name}` is `async`; Aineko 0.4.0 calls it synchronously, so its body "
                    "never runs; make it a plain `def`",
                    fn.lineno,
                )
            elif not _takes_params(fn):
                self.add(
                    "config-signature",
                    f"`{name}` must accept the params Aineko passes: "
                    f"`def {name}(self, params=None)` (Aineko calls `self.{name}(params)`)",
                    fn.lineno,
                )

    def _attribute_names(self) -> set[str] | None:
        """Everything `self` has: Aineko's node API, class-level names, and `self.X` the methods assign."""
        names = set(NODE_ATTRIBUTES)
        for cls in self.chain:
            for stmt in cls.body:
                if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    names.add(stmt.name)
                elif isinstance(stmt, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
                    for t in stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]:
                        names.update(n.id for n in ast.walk(t) if isinstance(n, ast.Name))
            augmented = {id(n.target) for n in _walk(cls) if isinstance(n, ast.AugAssign)}
            for node in _walk(cls):
                attr = _self_attr(node)
                if attr and isinstance(node.ctx, (ast.Store, ast.Del)) and id(node) not in augmented:
                    names.add(attr)  # `self.x += 1` reads x first: it sets nothing new
                if isinstance(node, ast.Call) and _dotted(node.func) == "setattr":
                    return None
                if attr in ("__dict__", "__getattr__") or (
                    isinstance(node, ast.FunctionDef) and node.name == "__getattr__"
                ):
                    return None
        return names

    def check_attributes(self) -> None:
        """`self.X` read where X is neither Aineko's node API nor set by the class (the 0.3 API included)."""
        names = self._attribute_names()
        if names is None:
            return
        reported: set[str] = set()
        for cls in self.chain:
            augmented = {id(n.target) for n in _walk(cls) if isinstance(n, ast.AugAssign)}
            for node in _walk(cls):
                attr = _self_attr(node)
                reads = attr and (isinstance(node.ctx, ast.Load) or id(node) in augmented)
                dunder = attr and attr.startswith("__") and attr.endswith("__")  # `self.__class__` and the like
                if not reads or dunder or attr in names or attr in reported:
                    continue
                reported.add(attr)
                if attr in OLD_API:
                    self.add(
                        "config-api-03",
                        f"`self.{attr}` does not exist in Aineko 0.4.0 (it is the 0.3 API); {OLD_API[attr]}",
                        node.lineno,
                    )
                else:
                    self.add(
                        "config-attribute",
                        f"`self.{attr}` is read but never set (\"'{self.cls.name}' object "
                        f"has no attribute '{attr}'\"); set it in `_pre_loop_hook`",
                        node.lineno,
                    )

    def check_datasets(self) -> None:
        """Dataset keys the node's config declares, and calls a 0.4.0 `KafkaDataset` has."""
        for fn in self.methods.values():
            local = _dataset_locals(fn)
            for node in _walk(fn):
                ref = _dataset_ref(node, {}) if isinstance(node, ast.Subscript) else None
                if ref and ref[1] is not None:
                    for use in self.uses:
                        allowed = self.datasets_of(use, ref[0])
                        if allowed is not None and ref[1] not in allowed:
                            self.add(
                                "config-dataset-key",
                                f"`self.{ref[0]}[{ref[1]!r}]` is not one of the node's "
                                f"`{ref[0]}` in the YAML ({', '.join(allowed) or 'none'}), "
                                f"so it raises KeyError: '{ref[1]}'",
                                node.lineno,
                                use,
                            )
                if isinstance(node, ast.Assign):
                    self.check_unpacking(node)
                if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                    continue
                owner = _dataset_ref(node.func.value, local)
                if owner is None:
                    continue
                method = node.func.attr
                if method in OLD_API:
                    self.add(
                        "config-api-03",
                        f"`.{method}()` does not exist on an Aineko 0.4.0 dataset (it is the "
                        f"0.3 API); {OLD_API[method]}",
                        node.lineno,
                    )
                elif method not in DATASET_ATTRIBUTES:
                    self.add(
                        "config-dataset-method",
                        f"`.{method}()` does not exist on an Aineko 0.4.0 dataset "
                        "(it has `next()`, `last(timeout)`, `read(how, timeout, "
                        "block)` and `write(msg, key=None)`)",
                        node.lineno,
                    )
                else:
                    problem = _call_problem(method, node)
                    if problem:
                        self.add("config-dataset-call", problem, node.lineno)

    @staticmethod
    def datasets_of(use: _NodeUse, which: str) -> list[str] | None:
        """The dataset names `self.inputs` or `self.outputs` holds for a node (outputs include Aineko's log)."""
        names = use.inputs if which == "inputs" else use.outputs
        if names is None:
            return None
        return list(names) if which == "inputs" else [*names, *INTERNAL_OUTPUTS]

    def check_unpacking(self, node: ast.Assign) -> None:
        """`(a, b) = self.outputs.values()` with a count that differs from what the dict holds."""
        target, value = node.targets[0], node.value
        if len(node.targets) != 1 or not isinstance(target, (ast.Tuple, ast.List)):
            return
        if any(isinstance(e, ast.Starred) for e in target.elts):
            return
        if isinstance(value, ast.Call) and isinstance(value.func, ast.Attribute) and not value.args:
            value = value.func.value if value.func.attr in ("values", "keys", "items") else value
        which = _self_attr(value)
        if which not in ("inputs", "outputs"):
            return
        for use in self.uses:
            names = self.datasets_of(use, which)
            if names is not None and len(names) != len(target.elts):
                extra = " (Aineko adds its `logging` dataset to every node's outputs)" if which == "outputs" else ""
                self.add(
                    "config-dataset-key",
                    f"unpacks `self.{which}` into {len(target.elts)} names, but it holds "
                    f"{len(names)}: {', '.join(names)}{extra}; index it by name instead",
                    node.lineno,
                    use,
                )

    def check_params(self) -> None:
        """`params["key"]` (or `self.params["key"]`) for a key missing from the node's `node_params`."""
        for name in HOOKS:
            fn = self.methods.get(name)
            if fn is None:
                continue
            positional = [*fn.args.posonlyargs, *fn.args.args][1:]
            pname = positional[0].arg if positional else None
            if pname and any(
                isinstance(n, ast.Name) and n.id == pname and isinstance(n.ctx, ast.Store) for n in _walk(fn)
            ):
                pname = None  # rebound: cannot tell what it holds
            for node in _walk(fn):
                if not (isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load)):
                    continue
                target = node.value
                is_params = (isinstance(target, ast.Name) and target.id == pname) or _self_attr(target) == "params"
                if not is_params or not (isinstance(node.slice, ast.Constant) and isinstance(node.slice.value, str)):
                    continue
                key = node.slice.value
                for use in self.uses:
                    if key not in (use.params or {}):
                        self.add(
                            "config-params-key",
                            f"`{_dotted(target)}[{key!r}]` but `node_params` has no "
                            f"`{key}` (KeyError: '{key}'); add it under the node's "
                            f"`node_params` or use `params.get({key!r}, <default>)`",
                            node.lineno,
                            use,
                        )

    def check_log_levels(self) -> None:
        """`self.log(msg, level=...)` with a level Aineko does not have."""
        for fn in self.methods.values():
            for node in _walk(fn):
                if not (isinstance(node, ast.Call) and _self_attr(node.func) == "log"):
                    continue
                level = (
                    node.args[1]
                    if len(node.args) > 1
                    else next((k.value for k in node.keywords if k.arg == "level"), None)
                )
                if isinstance(level, ast.Constant) and level.value not in LOG_LEVELS:
                    self.add(
                        "config-log-level",
                        f"`self.log(..., level={level.value!r})` raises ValueError; the "
                        f"levels are {', '.join(LOG_LEVELS)}",
                        node.lineno,
                    )


def _undefined_bases(module: _Module, cls: ast.ClassDef) -> list[str]:
    """Base names the module never binds (a NameError when Aineko imports it)."""
    return [
        base.id for base in cls.bases if isinstance(base, ast.Name) and module.resolve_path(base.id)[0] == "missing"
    ]


def class_findings(nodes: list[_NodeUse], module: _Module | None, generated: set[str]) -> list[Finding]:
    """Every node `class` imports as Aineko's runner imports it, is an `AbstractNode` and can be built and run."""
    found: list[Finding] = []
    by_class: dict[int, tuple[ast.ClassDef, list[_NodeUse]]] = {}
    for use in nodes:
        where = f"node {use.name!r}: key `class` is `{use.path}`"
        if "." not in use.path:
            found.append(
                finding(
                    "config-node-class",
                    f"{where}, with no module part: {_format_error(use.path)}; "
                    f"write `<module>.{use.path}`, e.g. `nodes.{use.path}`",
                )
            )
            continue
        attr = use.path.rsplit(".", 1)[1]
        if _is_aineko(use.path):
            if use.path not in AINEKO_NODE_CLASSES:
                why = (
                    "Aineko's abstract base, which cannot be built"
                    if CANONICAL.get(use.path, use.path) == NODE_BASE
                    else "no node class in Aineko 0.4.0"
                )
                found.append(
                    finding("config-node-class", f"{where}, {why}; name your own class in the generated module")
                )
            continue
        top = use.path.split(".")[0]
        if top in sys.stdlib_module_names:
            found.append(
                finding(
                    "config-node-class",
                    f"{where}, but `{top}` is a standard-library module, which "
                    f'Python imports instead of the generated code ("module '
                    f"'{_module_of(use.path)}' has no attribute '{attr}'\"); use a "
                    f"module name of your own, e.g. `nodes.{attr}`",
                )
            )
            continue
        if module is None:
            continue
        kind, value = module.lookup(attr)
        if kind == "missing":
            found.append(
                finding(
                    "config-class-missing",
                    f"{where}, but `{attr}` is not defined in the ```python "
                    f"block (\"module '{_module_of(use.path)}' has no attribute "
                    f"'{attr}'\")",
                )
            )
        elif kind == "function":
            found.append(
                finding(
                    "config-node-class",
                    f'{where}, which is a function, not a class (Aineko: "Expected a class.")',
                    line=value.lineno,
                )
            )
        elif kind == "ref" and value == NODE_BASE:
            found.append(finding("config-node-class", f"{where}, Aineko's abstract base itself; name your subclass"))
        elif kind == "class" and _undefined_bases(module, value):
            missing = _undefined_bases(module, value)[0]
            hint = " (add `from aineko import AbstractNode`)" if missing == "AbstractNode" else ""
            found.append(
                finding(
                    "config-class-base",
                    f"{where}, whose base `{missing}` is not defined, so importing the module raises "
                    f"NameError: name '{missing}' is not defined{hint}",
                    line=value.lineno,
                )
            )
        elif kind == "class":
            is_node = module.base_kind(value)
            if is_node is False:
                local = (
                    " (the local class `AbstractNode` is not Aineko's)"
                    if "AbstractNode" in {_dotted(b) for b in value.bases}
                    else ""
                )
                found.append(
                    finding(
                        "config-class-base",
                        f"{where}, which does not subclass Aineko's AbstractNode"
                        f"{local}; use `from aineko import AbstractNode`",
                        line=value.lineno,
                    )
                )
            elif is_node:
                by_class.setdefault(id(value), (value, []))[1].append(use)
    for cls, uses in by_class.values():
        found += _ClassCheck(module, cls, uses).run()  # type: ignore[arg-type]
    return found


# --- Together ------------------------------------------------------------------------------------------------------


def _lenient_nodes(doc: Any) -> list[_NodeUse]:
    """Node definitions read from a config that failed the schema, for the checks that still apply."""
    pipeline = doc.get("pipeline") if isinstance(doc, dict) else None
    nodes = pipeline.get("nodes") if isinstance(pipeline, dict) else None
    if not isinstance(nodes, dict):
        return []
    out = []
    for name, node in nodes.items():
        if isinstance(node, dict) and isinstance(node.get("class"), str):
            ins, outs = node.get("inputs"), node.get("outputs")
            params = node.get("node_params")
            out.append(
                _NodeUse(
                    str(name),
                    node["class"],
                    ins if isinstance(ins, list) or ins is None else None,
                    outs if isinstance(outs, list) or outs is None else None,
                    params if isinstance(params, dict) else {},
                )
            )
    return out


def _parse_code(code: str | None) -> tuple[_Module | None, list[Finding]]:
    """The module's names, or a finding when the code does not parse (the syntax check reports why)."""
    try:
        return _Module(parse_module(code or "")), []
    except (SyntaxError, ValueError):
        return None, [finding("config-classes-not-checked", "node classes not checked: the python code does not parse")]


def check_config(config_yaml: str | None, code: str | None, env: Mapping[str, str] | None = None) -> list[Finding]:
    """All the checks; `env` holds the variables `{$VAR}` may use (none by default, as in the sandboxed check)."""
    if config_yaml is None or not config_yaml.strip():
        return [finding("config-missing", "no pipeline configuration: the reply must contain a ```yaml block")]
    doc, found = parse_yaml(config_yaml)
    if found:
        return found
    if not doc:
        return [finding("config-missing", 'the ```yaml block is empty (Aineko: "YAML file ... cannot be loaded.")')]
    if not isinstance(doc, dict) or not isinstance(doc.get("pipeline"), dict):
        return [
            finding(
                "config-pipeline",
                "the YAML must have a top-level `pipeline` mapping with `name`, `nodes` and `datasets`",
            )
        ]
    try:
        config = PipelineFile.model_validate(doc).pipeline
    except ValidationError as exc:
        module, unparsed = _parse_code(code)
        uses = _lenient_nodes(doc)
        return schema_findings(exc) + unparsed + class_findings(uses, module, {_module_of(u.path) for u in uses})
    found = env_findings(config.nodes, env or {})
    uses = [_NodeUse(n, c.class_name, c.inputs, c.outputs, c.node_params) for n, c in config.nodes.items()]
    generated = _generated_modules(config.nodes)
    module, unparsed = _parse_code(code) if generated else (None, [])
    found += dataset_type_findings(config.datasets, module, generated)
    found += undeclared_findings(config.nodes, config.datasets)
    if module is not None:
        found += import_findings(module, generated)
    return found + unparsed + class_findings(uses, module, generated)


class ConfigEvaluator:
    """The Aineko pipeline YAML and node module, checked statically the way Aineko 0.4.0 would reject them."""

    name = "config"

    async def evaluate(self, code: str | None, context: EvalInput) -> list[Finding]:
        """Off the event loop: parsing and the ast walk are CPU work."""
        return await run_cpu(check_config, context.config_yaml, code)
