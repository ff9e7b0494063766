"""The static `config` evaluator: the YAML and the node module judged as Aineko 0.4.0 would judge them, by ast only."""

from __future__ import annotations

import subprocess
import sys
from importlib.util import find_spec

import pytest

from dream_graph.evaluators import EvalInput, is_blocking
from dream_graph.targets.aineko import config_check as cc
from dream_graph.targets.aineko.config_check import ConfigEvaluator, check_config

CODE = '''from aineko import AbstractNode


class Base(AbstractNode):
    def _execute(self, params=None):
        return None


class Counter(Base):
    """Inherits `_execute` and the node base from a local class."""


class Plain:
    def _execute(self, params=None):
        return None


class Lazy(AbstractNode):
    def _pre_loop_hook(self, params=None):
        return None
'''

PIPELINE = """pipeline:
  name: counter
  nodes:
    counter:
      class: my_project.nodes.Counter
      inputs:
        - messages
      outputs:
        - counts
      node_params:
        every: 10
  datasets:
    messages:
      type: aineko.datasets.kafka.KafkaDataset
    counts:
      type: aineko.datasets.kafka.KafkaDataset
"""

NODE = """from aineko import AbstractNode


class Counter(AbstractNode):
    def _execute(self, params=None):
        BODY
"""


def node(body: str, header: str = "") -> str:
    """A one-node module whose `_execute` body is `body` (lines joined with the method's indentation)."""
    return header + NODE.replace("BODY", body.replace("\n", "\n        "))


def rules(findings: list[dict]) -> list[str]:
    return [f["rule"] for f in findings if is_blocking(f)]


def only(findings: list[dict]) -> dict:
    """The single blocking finding (fails with all of them listed otherwise)."""
    blocking = [f for f in findings if is_blocking(f)]
    assert len(blocking) == 1, blocking
    return blocking[0]


# --- YAML and schema -----------------------------------------------------------------------------------------------


def test_valid_pipeline_passes():
    assert check_config(PIPELINE, CODE) == []


def test_offline_model_output_passes():
    from langchain_core.messages import HumanMessage

    from dream_graph.extract import extract_python, extract_yaml
    from dream_graph.offline import template_reply

    reply = template_reply([HumanMessage("Write code for this request: a node that counts words")])
    assert check_config(extract_yaml(reply), extract_python(reply)) == []


def test_missing_yaml_block_is_a_finding():
    (found,) = check_config(None, CODE)
    assert found["rule"] == "config-missing" and "```yaml" in found["message"]


def test_yaml_with_only_a_comment_is_empty_as_aineko_says():
    (found,) = check_config("# nothing yet\n", CODE)
    assert found["rule"] == "config-missing" and "cannot be loaded" in found["message"]


def test_invalid_yaml_names_the_line():
    (found,) = check_config("pipeline:\n  name: x\n  nodes: [unclosed\n", CODE)
    assert found["rule"] == "config-yaml"
    assert "not valid YAML at YAML line" in found["message"]


@pytest.mark.parametrize("text", ["- just\n- a list\n", "pipeline: 3\n", "other: {}\n"])
def test_no_pipeline_mapping(text):
    assert rules(check_config(text, CODE)) == ["config-pipeline"]


def test_missing_name_nodes_and_datasets_are_schema_errors_naming_each_key():
    found = check_config("pipeline:\n  default_node_settings: {}\n", CODE)
    assert rules(found) == ["config-schema"] * 3
    keys = [f["message"].split("`")[1] for f in found]
    assert keys == ["pipeline.name", "pipeline.nodes", "pipeline.datasets"]
    assert all("Field required" in f["message"] for f in found)


def test_empty_nodes_mapping_is_valid_but_null_nodes_is_not():
    assert check_config("pipeline:\n  name: p\n  nodes: {}\n  datasets: {}\n", None) == []
    found = only(check_config("pipeline:\n  name: p\n  nodes:\n  datasets: {}\n", None))
    assert "`pipeline.nodes`" in found["message"] and "valid dictionary" in found["message"]


def test_pipeline_name_must_be_a_string_not_a_number():
    found = only(check_config(PIPELINE.replace("name: counter", "name: 2024"), CODE))
    assert found["rule"] == "config-schema" and "`pipeline.name`" in found["message"]


@pytest.mark.parametrize(
    ("value", "problem"),
    [("0.01", None), ('"2"', None), ("0", "greater than 0"), ("-1", "greater than 0"), ("two", "valid number")],
)
def test_num_cpus_must_be_a_positive_number(value, problem):
    text = PIPELINE.replace(
        "      node_params:", f"      node_settings:\n        num_cpus: {value}\n      node_params:"
    )
    found = check_config(text, CODE)
    if problem is None:
        assert found == []
    else:
        f = only(found)
        assert f["rule"] == "config-schema" and problem in f["message"]
        assert "node 'counter'" in f["message"] and "`node_settings.num_cpus`" in f["message"]


def test_default_node_settings_are_validated_and_extra_ray_options_pass():
    text = PIPELINE.replace("  nodes:", "  default_node_settings:\n    num_cpus: -0.5\n    num_gpus: 1\n  nodes:")
    f = only(check_config(text, CODE))
    assert "`pipeline.default_node_settings.num_cpus`" in f["message"]
    assert check_config(text.replace("-0.5", "0.5"), CODE) == []


@pytest.mark.parametrize("value", ["[10]", '"every=10"', "3"])
def test_node_params_must_be_a_mapping(value):
    text = PIPELINE.replace("      node_params:\n        every: 10\n", f"      node_params: {value}\n")
    f = only(check_config(text, CODE))
    assert "node 'counter'" in f["message"] and "`node_params`" in f["message"] and "mapping" in f["message"]


def test_null_node_params_are_allowed():
    assert check_config(PIPELINE.replace("      node_params:\n        every: 10\n", "      node_params:\n"), CODE) == []


def test_dataset_params_must_be_a_mapping():
    text = PIPELINE.replace(
        "    counts:\n      type: aineko.datasets.kafka.KafkaDataset\n",
        "    counts:\n      type: aineko.datasets.kafka.KafkaDataset\n      params: [retention]\n",
    )
    f = only(check_config(text, CODE))
    assert "dataset 'counts'" in f["message"] and "`params`" in f["message"]


def test_inputs_must_be_a_list_of_names():
    text = PIPELINE.replace("      inputs:\n        - messages\n", "      inputs: messages\n")
    f = only(check_config(text, CODE))
    assert f["rule"] == "config-schema" and "`inputs`" in f["message"]


def test_dataset_without_type():
    text = PIPELINE.replace(
        "    counts:\n      type: aineko.datasets.kafka.KafkaDataset\n", "    counts:\n      location: x\n"
    )
    f = only(check_config(text, CODE))
    assert f["rule"] == "config-schema" and "dataset 'counts'" in f["message"] and "`type`" in f["message"]


def test_unknown_keys_are_ignored_as_aineko_ignores_them():
    text = "version: 2\n" + PIPELINE.replace("      node_params:", "      replicas: 3\n      node_params:").replace(
        "  name: counter\n", "  name: counter\n  description: x\n"
    )
    assert check_config(text, CODE) == []


# --- environment placeholders --------------------------------------------------------------------------------------


def with_params(params: str) -> str:
    return PIPELINE.replace("      node_params:\n        every: 10\n", f"      node_params:\n{params}")


def test_unset_placeholder_names_node_key_path_and_variable():
    text = with_params('        every: 10\n        api:\n          urls: [a, "b?k={$API_KEY}"]\n')
    f = only(check_config(text, CODE))
    assert f["rule"] == "config-env" and "node 'counter'" in f["message"]
    assert "`node_params.api.urls[1]`" in f["message"] and "API_KEY was not found" in f["message"]


def test_placeholder_resolved_from_env_passes_and_chained_placeholders_are_followed():
    text = with_params('        every: 10\n        token: "{$A}"\n')
    assert check_config(text, CODE, env={"A": "x"}) == []
    f = only(check_config(text, CODE, env={"A": "{$B}"}))
    assert "`{$B}`" in f["message"]


@pytest.mark.parametrize("value", ['"{$}"', '"a {$X} b"'])
def test_any_brace_dollar_placeholder_is_injected(value):
    assert rules(check_config(with_params(f"        every: 10\n        t: {value}\n"), CODE)) == ["config-env"]


@pytest.mark.parametrize("value", ['"costs $5"', '"{ $X}"', '"$X"', "42"])
def test_text_that_is_not_a_placeholder_passes(value):
    assert check_config(with_params(f"        every: 10\n        t: {value}\n"), CODE) == []


def test_placeholders_outside_node_params_are_not_injected():
    text = PIPELINE.replace(
        "    counts:\n      type: aineko.datasets.kafka.KafkaDataset\n",
        '    counts:\n      type: aineko.datasets.kafka.KafkaDataset\n      params: {password: "{$PW}"}\n',
    )
    assert check_config(text, CODE) == []


# --- dotted paths --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("type_", "problem"),
    [
        ("aineko.datasets.kafka.KafkaDataset", None),
        ("kafka", "not a dotted path"),
        ("aineko.datasets.kafka.Kafka", "names no class in Aineko 0.4.0"),
        ("aineko.datasets.KafkaDataset", "names no class in Aineko 0.4.0"),
        ("aineko.core.dataset.AbstractDataset", "an abstract class"),
        ("no_such_package_xyz.Dataset", "is not installed"),
    ],
)
def test_dataset_type_is_an_importable_class_path(type_, problem):
    text = PIPELINE.replace(
        "    counts:\n      type: aineko.datasets.kafka.KafkaDataset\n", f"    counts:\n      type: {type_}\n"
    )
    found = check_config(text, CODE)
    if problem is None:
        assert found == []
    else:
        f = only(found)
        assert f["rule"] == "config-dataset-type" and problem in f["message"] and "dataset 'counts'" in f["message"]


def test_declared_but_unused_dataset_type_is_checked_too():
    f = only(check_config(PIPELINE + "    audit:\n      type: kafka\n", CODE))
    assert "dataset 'audit'" in f["message"]


def test_node_class_without_module_part_quotes_aineko():
    f = only(check_config(PIPELINE.replace("my_project.nodes.Counter", "Counter"), CODE))
    assert f["rule"] == "config-node-class" and "must be in the format ...module.function" in f["message"]


def test_aineko_paths_as_node_class():
    f = only(check_config(PIPELINE.replace("my_project.nodes.Counter", "aineko.core.node.AbstractNode"), CODE))
    assert "abstract base" in f["message"]
    assert (
        check_config(PIPELINE.replace("my_project.nodes.Counter", "aineko.core.node_manager.NodeManager"), CODE) == []
    )


def test_standard_library_module_path_is_not_the_generated_module():
    f = only(check_config(PIPELINE.replace("my_project.nodes.Counter", "json.Counter"), CODE))
    assert f["rule"] == "config-node-class" and "standard-library" in f["message"]


def test_undeclared_dataset_names_node_key_and_dataset():
    text = PIPELINE.replace("        - counts\n", "        - totals\n")
    f = only(check_config(text, CODE))
    assert f["rule"] == "config-undeclared-dataset"
    assert "node 'counter'" in f["message"] and "`outputs`" in f["message"] and "'totals'" in f["message"]


# --- the node class ------------------------------------------------------------------------------------------------


def test_class_missing_from_code():
    f = only(check_config(PIPELINE.replace("nodes.Counter", "nodes.Summer"), CODE))
    assert f["rule"] == "config-class-missing"
    assert "node 'counter'" in f["message"] and "`Summer`" in f["message"]


def test_class_that_is_not_a_node_has_its_python_line():
    f = only(check_config(PIPELINE.replace("nodes.Counter", "nodes.Plain"), CODE))
    assert f["rule"] == "config-class-base" and f["line"] == CODE.splitlines().index("class Plain:") + 1


def test_class_without_execute_cannot_be_built():
    f = only(check_config(PIPELINE.replace("nodes.Counter", "nodes.Lazy"), CODE))
    assert f["rule"] == "config-class-execute" and "abstract method _execute" in f["message"]


def test_a_function_named_as_class_is_not_a_class():
    code = CODE + "\n\ndef make():\n    return Counter\n"
    f = only(check_config(PIPELINE.replace("nodes.Counter", "nodes.make"), code))
    assert "not a class" in f["message"]


@pytest.mark.parametrize(
    ("header", "base"),
    [
        ("from aineko import AbstractNode as Base", "Base"),
        ("from aineko.core.node import AbstractNode", "AbstractNode"),
        ("import aineko", "aineko.AbstractNode"),
        ("import aineko.core.node as core_node", "core_node.AbstractNode"),
        ("from aineko.core import node as n", "n.AbstractNode"),
    ],
)
def test_aineko_base_is_resolved_under_any_name(header, base):
    code = f"{header}\n\n\nclass Counter({base}):\n    def _execute(self, params=None):\n        return None\n"
    assert check_config(PIPELINE, code) == []


def test_class_alias_assignment_resolves():
    code = CODE + "\n\nPublic = Counter\n"
    assert check_config(PIPELINE.replace("nodes.Counter", "nodes.Public"), code) == []


@pytest.mark.parametrize(
    "header",
    ["class AbstractNode:\n    pass", "from aineko import AbstractNode\n\n\nclass AbstractNode:  # shadows\n    pass"],
)
def test_local_class_named_abstractnode_is_not_aineko(header):
    code = f"{header}\n\n\nclass Counter(AbstractNode):\n    def _execute(self, params=None):\n        return None\n"
    f = only(check_config(PIPELINE, code))
    assert f["rule"] == "config-class-base" and "is not Aineko's" in f["message"]


def test_base_that_is_never_imported_is_a_name_error():
    code = "class Counter(AbstractNode):\n    def _execute(self, params=None):\n        return None\n"
    f = only(check_config(PIPELINE, code))
    assert f["rule"] == "config-class-base" and "NameError" in f["message"] and "from aineko import" in f["message"]


def test_base_from_an_unknown_package_is_not_judged():
    code = "from yaml import YAMLObject\n\n\nclass Counter(YAMLObject):\n    def _execute(self, params=None):\n        pass\n"
    assert check_config(PIPELINE, code) == []


@pytest.mark.parametrize(
    ("signature", "ok"),
    [
        ("(self, params=None)", True),
        ("(self, params)", True),
        ("(self, *args)", True),
        ("(self, params, extra=None)", True),
        ("(self)", False),
        ("(self, params, extra)", False),
        ("(self, *, params)", False),
    ],
)
def test_execute_must_accept_params(signature, ok):
    code = node("return None").replace("(self, params=None)", signature)
    found = check_config(PIPELINE, code)
    assert found == [] if ok else rules(found) == ["config-signature"]


def test_hooks_must_accept_params_and_async_execute_is_a_finding():
    code = node("return None") + "\n    def _pre_loop_hook(self):\n        pass\n"
    assert "`_pre_loop_hook`" in only(check_config(PIPELINE, code))["message"]
    f = only(check_config(PIPELINE, node("return None").replace("def _execute", "async def _execute")))
    assert f["rule"] == "config-signature" and "async" in f["message"]


# --- what the node does --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "replacement"),
    [
        ('msg = self.consumers["messages"].next()', 'self.inputs["<dataset>"].next()'),
        ('self.producers["counts"].produce(1)', 'self.outputs["<dataset>"].write(msg)'),
        ('self.outputs["counts"].produce(1)', "`.write(msg)`"),
        ('self.inputs["messages"].consume()', "`.next()`"),
        ('sink = self.outputs["counts"]\nsink.produce(1)', "`.write(msg)`"),
    ],
)
def test_03_api_is_named_with_its_040_replacement(body, replacement):
    f = only(check_config(PIPELINE, node(body)))
    assert f["rule"] == "config-api-03" and "does not exist" in f["message"] and "0.3 API" in f["message"]
    assert replacement in f["message"] and "node 'counter'" in f["message"]
    assert f["line"] == 6 + body.count("\n")


@pytest.mark.parametrize(
    ("call", "problem"),
    [
        ('self.inputs["messages"].next()', None),
        ('self.inputs["messages"].read("next", 0.1)', None),
        ('self.inputs["messages"].read(how="last", timeout=1, block=False)', None),
        ('self.inputs["messages"].last(timeout=1)', None),
        ('self.outputs["counts"].write(1, key="k")', None),
        ('self.inputs["messages"].read()', "needs `how`"),
        ('self.inputs["messages"].read(how="first")', "Invalid how: first"),
        ('self.inputs["messages"].next(timeout=1)', "takes no arguments"),
        ('self.inputs["messages"].last(timeout=0)', "Timeout must be > 0"),
        ('self.outputs["counts"].write()', "needs the message"),
        ('self.outputs["counts"].write(message=1)', "unexpected keyword `message`"),
        ('self.outputs["counts"].write(1, "k", True)', "not 3 arguments"),
        ('self.outputs["counts"].send(1)', "does not exist on an Aineko 0.4.0 dataset"),
    ],
)
def test_dataset_calls_match_kafka_dataset_040(call, problem):
    found = check_config(PIPELINE, node(call))
    if problem is None:
        assert found == []
    else:
        assert problem in only(found)["message"]


def test_dataset_calls_through_loop_variables_are_checked():
    body = "for _name, ds in self.inputs.items():\n    ds.consume()"
    assert only(check_config(PIPELINE, node(body)))["rule"] == "config-api-03"


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ('self.outputs["logging"].write("x")', None),
        ('self.outputs["loud"].write(1)', "KeyError: 'loud'"),
        ('self.inputs["counts"].next()', "KeyError: 'counts'"),
        ("(source,) = self.inputs.values()", None),
        ("(sink,) = self.outputs.values()", "holds 2: counts, logging"),
    ],
)
def test_dataset_keys_match_the_nodes_config(body, problem):
    found = check_config(PIPELINE, node(body))
    if problem is None:
        assert found == []
    else:
        f = only(found)
        assert f["rule"] == "config-dataset-key" and problem in f["message"]


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ('n = params["every"]', None),
        ('n = params.get("missing", 1)', None),
        ('n = params["missing"]', "KeyError: 'missing'"),
        ('n = self.params["missing"]', "KeyError: 'missing'"),
        ('params = {"missing": 1}\nn = params["missing"]', None),
        ('params["missing"] = 1', None),
    ],
)
def test_params_keys_must_be_in_node_params(body, problem):
    found = check_config(PIPELINE, node(body))
    if problem is None:
        assert found == []
    else:
        f = only(found)
        assert f["rule"] == "config-params-key" and problem in f["message"] and "node 'counter'" in f["message"]


def test_attribute_read_but_never_set():
    f = only(check_config(PIPELINE, node("self.total += 1")))
    assert f["rule"] == "config-attribute" and "'Counter' object has no attribute 'total'" in f["message"]
    hook = "\n    def _pre_loop_hook(self, params=None):\n        self.total = 0\n"
    assert check_config(PIPELINE, node("self.total += 1") + hook) == []


def test_object_attributes_are_known():
    assert check_config(PIPELINE, node("self.log(self.__class__.__name__)")) == []


def test_attributes_are_not_judged_when_the_class_sets_them_dynamically():
    assert check_config(PIPELINE, node('setattr(self, "total", 0)\nself.total += 1')) == []


@pytest.mark.parametrize(
    ("init", "problem"),
    [
        ("def __init__(self, *args, **kwargs):\n        super().__init__(*args, **kwargs)", None),
        ("def __init__(self, pipeline_name):\n        super().__init__(pipeline_name)", "does not accept `node_name`"),
        ("def __init__(self, *args, **kwargs):\n        self.n = 0", "never calls `super().__init__"),
        ("def __init__(self, *args, **kwargs):\n        super().__init__()", "misses `pipeline_name`"),
    ],
)
def test_init_must_let_aineko_build_the_node(init, problem):
    found = check_config(PIPELINE, node("return None") + f"\n    {init}\n")
    if problem is None:
        assert found == []
    else:
        f = only(found)
        assert f["rule"] == "config-init" and problem in f["message"]


@pytest.mark.parametrize(("level", "ok"), [('"warning"', True), ('"warn"', False), ('level="fatal"', False)])
def test_log_levels(level, ok):
    found = check_config(PIPELINE, node(f'self.log("x", {level})'))
    assert found == [] if ok else rules(found) == ["config-log-level"]


@pytest.mark.parametrize(
    ("header", "problem"),
    [
        ("import json\nfrom typing import Optional\n", None),
        ("try:\n    import no_such_pkg_xyz\nexcept ImportError:\n    no_such_pkg_xyz = None\n", None),
        ("from aineko.core.dataset import AbstractDataset\n", None),
        ("from aineko import datasets\n", None),
        ("from aineko import Node\n", "no `Node` in `aineko`"),
        ("from aineko.core.dataset import KafkaDataset\n", "no `KafkaDataset` in `aineko.core.dataset`"),
        ("import aineko.nodes\n", "not a module of Aineko 0.4.0"),
        ("import no_such_pkg_xyz\n", "`no_such_pkg_xyz` is not installed"),
    ],
)
def test_module_level_imports(header, problem):
    found = check_config(PIPELINE, node("return None", header=header))
    if problem is None:
        assert found == []
    else:
        f = only(found)
        assert f["rule"] == "config-import" and problem in f["message"] and f["line"] == header.count("\n")


def test_unparsable_code_is_reported_not_crashed():
    (found,) = check_config(PIPELINE, "class Counter(:\n")
    assert found["rule"] == "config-classes-not-checked"


def test_schema_errors_still_report_code_problems():
    text = PIPELINE.replace("every: 10", "every: 10\n      node_settings: {num_cpus: 0}")
    assert rules(check_config(text, node("self.consumers"))) == ["config-schema", "config-api-03"]


def test_the_module_is_never_imported(tmp_path):
    marker = tmp_path / "imported"
    code = CODE + f"\nopen({str(marker)!r}, 'w').write('x')\n"
    assert check_config(PIPELINE, code) == []
    assert not marker.exists()


@pytest.mark.slow
def test_the_check_never_imports_aineko():
    script = (
        "import sys\nfrom dream_graph.targets.aineko.config_check import check_config\n"
        f"found = check_config({PIPELINE!r}, {CODE!r})\n"
        "print(len(found), 'aineko' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.split() == ["0", "False"]


async def test_evaluator_reads_config_yaml_from_its_input():
    ev = ConfigEvaluator()
    assert await ev.evaluate(CODE, EvalInput(config_yaml=PIPELINE)) == []
    assert rules(await ev.evaluate(CODE, EvalInput(config_yaml=None))) == ["config-missing"]


# --- the mirrored facts agree with the installed Aineko ------------------------------------------------------------

needs_aineko = pytest.mark.skipif(find_spec("aineko") is None, reason="aineko==0.4.0 is not installed (extra [aineko])")


@needs_aineko
def test_schema_mirror_matches_aineko_models():
    from aineko.models.config_schema import Config, NodeSettings
    from aineko.models.dataset_config_schema import DatasetConfig

    pairs = [
        (cc.PipelineFile, Config),
        (cc.PipelineConfig, Config.Pipeline),
        (cc.NodeConfig, Config.Pipeline.Node),
        (cc.NodeSettings, NodeSettings),
        (cc.DatasetConfig, DatasetConfig),
    ]
    for ours, theirs in pairs:
        mine = {n: (f.alias, f.is_required(), f.default) for n, f in ours.model_fields.items()}
        real = {n: (f.alias, f.is_required(), f.default) for n, f in theirs.model_fields.items()}
        assert mine == real, ours.__name__
        assert ours.model_config.get("extra") == theirs.model_config.get("extra"), ours.__name__
    assert (
        cc.NodeSettings.model_fields["num_cpus"].metadata[0].gt == NodeSettings.model_fields["num_cpus"].metadata[0].gt
    )


@needs_aineko
def test_api_tables_match_aineko():
    import importlib

    from aineko.config import AINEKO_CONFIG, TESTING_NODE_CONFIG
    from aineko.core.node import AbstractNode
    from aineko.datasets.kafka import KafkaDataset

    for module, names in cc.AINEKO_EXPORTS.items():
        assert names <= set(dir(importlib.import_module(module))), module
    assert "aineko.core.node" in cc.AINEKO_MODULES and "aineko.nodes" not in cc.AINEKO_MODULES

    class Probe(AbstractNode):
        def _execute(self, params=None):
            return False

    probe = Probe(pipeline_name="p", node_name="n", test=True)
    assert cc.NODE_ATTRIBUTES == {n for n in dir(probe) if not n.startswith("__")}
    dataset = KafkaDataset("d", {}, test=True)
    dataset.setup_test_mode(source_node="n", source_pipeline="p")
    public = {n for n in dir(dataset) if not n.startswith("__")} - {"_is_protocol", "_abc_impl"}
    assert public <= cc.DATASET_ATTRIBUTES
    assert cc.LOG_LEVELS == AINEKO_CONFIG.get("LOG_LEVELS")
    assert cc.INTERNAL_OUTPUTS == {d["name"] for d in TESTING_NODE_CONFIG.get("DATASETS")}
    assert "consumers" not in cc.NODE_ATTRIBUTES and "produce" not in cc.DATASET_ATTRIBUTES
