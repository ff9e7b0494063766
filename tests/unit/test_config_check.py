"""The `config` evaluator: YAML validity, the Aineko pipeline schema, and node classes found in the code (by ast)."""

from __future__ import annotations

import pytest

from dream_graph.evaluators import EvalInput, is_blocking
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


def rules(findings: list[dict]) -> list[str]:
    return [f["rule"] for f in findings if is_blocking(f)]


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


def test_invalid_yaml_names_the_line():
    (found,) = check_config("pipeline:\n  name: x\n  nodes: [unclosed\n", CODE)
    assert found["rule"] == "config-yaml"
    assert "not valid YAML at YAML line" in found["message"]


@pytest.mark.parametrize("text", ["- just\n- a list\n", "pipeline: 3\n", "other: {}\n"])
def test_no_pipeline_mapping(text):
    assert rules(check_config(text, CODE)) == ["config-pipeline"]


def test_missing_name_nodes_and_datasets():
    found = check_config("pipeline:\n  default_node_settings: {}\n", CODE)
    assert rules(found) == ["config-name", "config-datasets", "config-nodes"]


def test_node_without_class_is_named():
    text = PIPELINE.replace("      class: my_project.nodes.Counter\n", "")
    (found,) = check_config(text, CODE)
    assert found["rule"] == "config-node-class"
    assert "node 'counter'" in found["message"] and "`class`" in found["message"]


def test_undeclared_dataset_names_node_key_and_dataset():
    text = PIPELINE.replace("        - counts\n", "        - totals\n")
    (found,) = check_config(text, CODE)
    assert found["rule"] == "config-undeclared-dataset"
    assert "node 'counter'" in found["message"] and "`outputs`" in found["message"] and "'totals'" in found["message"]


def test_inputs_must_be_a_list_of_names():
    text = PIPELINE.replace("      inputs:\n        - messages\n", "      inputs: messages\n")
    assert rules(check_config(text, CODE)) == ["config-node-datasets"]


def test_dataset_without_type():
    text = PIPELINE.replace("    counts:\n      type: aineko.datasets.kafka.KafkaDataset\n", "    counts:\n")
    (found,) = check_config(text, CODE)
    assert found["rule"] == "config-dataset-type" and "'counts'" in found["message"]


def test_unknown_keys_are_info_only():
    text = PIPELINE.replace("      node_params:", "      replicas: 3\n      node_params:")
    (found,) = check_config(text, CODE)
    assert (found["rule"], found["severity"]) == ("config-unknown-key", "info")
    assert "`replicas`" in found["message"]


def test_class_missing_from_code():
    (found,) = check_config(PIPELINE.replace("nodes.Counter", "nodes.Summer"), CODE)
    assert found["rule"] == "config-class-missing"
    assert "node 'counter'" in found["message"] and "'Summer'" in found["message"]


def test_class_that_is_not_a_node_has_its_python_line():
    (found,) = check_config(PIPELINE.replace("nodes.Counter", "nodes.Plain"), CODE)
    assert found["rule"] == "config-class-base" and found["line"] == CODE.splitlines().index("class Plain:") + 1


def test_class_without_execute():
    (found,) = check_config(PIPELINE.replace("nodes.Counter", "nodes.Lazy"), CODE)
    assert found["rule"] == "config-class-execute" and "`_execute`" in found["message"]


def test_unparsable_code_is_reported_not_crashed():
    (found,) = check_config(PIPELINE, "class Counter(:\n")
    assert found["rule"] == "config-classes-not-checked"


def test_the_module_is_never_imported(tmp_path):
    marker = tmp_path / "imported"
    code = CODE + f"\nopen({str(marker)!r}, 'w').write('x')\n"
    assert check_config(PIPELINE, code) == []
    assert not marker.exists()


async def test_evaluator_reads_config_yaml_from_its_input():
    ev = ConfigEvaluator()
    assert await ev.evaluate(CODE, EvalInput(config_yaml=PIPELINE)) == []
    assert rules(await ev.evaluate(CODE, EvalInput(config_yaml=None))) == ["config-missing"]
