"""Named pipelines: the shipped file, clear errors on bad files, and graphs that take a pipeline's options."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dream_graph.cli import app
from dream_graph.errors import ConfigError
from dream_graph.graph import build_graph
from dream_graph.pipelines import SHIPPED_PIPELINES, Pipeline, get_pipeline, load_pipelines

REPO = Path(__file__).resolve().parents[2]
PROMPT = "a node that counts words"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "pipelines.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_shipped_file_has_the_original_apps_pipelines():
    pipelines = load_pipelines()
    assert {"gpt35", "gpt4", "cohere", "offline"} <= set(pipelines)
    assert pipelines["gpt35"].model.startswith("openai:")
    assert pipelines["cohere"].model.startswith("cohere:")
    assert pipelines["gpt4"].fallbacks == ["cohere:command-r-plus"]
    assert pipelines["offline"].model == "offline"
    assert all(isinstance(p, Pipeline) and p.name == name for name, p in pipelines.items())


def test_langgraph_json_lists_one_graph_per_shipped_pipeline_and_each_loads_without_keys():
    graphs = json.loads((REPO / "langgraph.json").read_text())["graphs"]
    assert set(graphs) == {"dream", *load_pipelines(SHIPPED_PIPELINES)}
    for name, target in graphs.items():
        path, attr = target.split(":")
        module = importlib.import_module(path.removeprefix("./").removesuffix(".py").replace("/", "."))
        compiled = getattr(module, attr)
        assert hasattr(compiled, "invoke"), name
        if name != "dream":
            assert compiled.config["configurable"]["model"] == load_pipelines()[name].model


def test_env_var_picks_another_file(tmp_path, monkeypatch):
    monkeypatch.setenv("DREAM_GRAPH_PIPELINES", str(write(tmp_path, '[mine]\nmodel = "offline"\nmax_cycles = 1\n')))
    assert list(load_pipelines()) == ["mine"]
    assert get_pipeline("mine").max_cycles == 1


def test_toml_syntax_error_names_the_line(tmp_path):
    path = write(tmp_path, '[a]\nmodel = "offline"\n\n[b]\nmodel = offline\n')
    with pytest.raises(ConfigError, match=r"line 5") as info:
        load_pipelines(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ('[a]\nmodel = "offline"\n\n[b]\nmodel = "offline"\ntemperature = "hot"\n', r":6: pipeline 'b': key 'temperature'"),
        ('[a]\nmodel = "offline"\nmax_cycles = 99\n', r":3: pipeline 'a': key 'max_cycles'.*20"),
        ('[a]\nmodel = "offline"\ntempreature = 0.2\n', r":3: pipeline 'a': unknown key 'tempreature' \(known keys: .*temperature"),
        ('[a]\ndescription = "x"\n', r":1: pipeline 'a': missing required key 'model'"),
        ('[a]\nmodel = "gpt-4"\n', r":2: pipeline 'a': key 'model'.*not a model spec"),
        ('model = "offline"\n', r":1: 'model' must be a table"),
    ],
)
def test_schema_errors_name_the_pipeline_the_key_and_the_line(tmp_path, body, expected):
    path = write(tmp_path, body)
    with pytest.raises(ConfigError, match=expected):
        load_pipelines(path)


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="DREAM_GRAPH_PIPELINES"):
        load_pipelines(tmp_path / "nope.toml")


def test_unknown_pipeline_lists_the_known_ones():
    with pytest.raises(KeyError) as info:
        get_pipeline("gpt5")
    assert isinstance(info.value, ConfigError)
    assert "unknown pipeline 'gpt5'" in str(info.value) and "gpt35, gpt4" in str(info.value)


def test_pipeline_values_are_graph_defaults_and_a_runtime_context_overrides_them(tmp_path, monkeypatch):
    monkeypatch.setenv(
        "DREAM_GRAPH_PIPELINES",
        str(write(tmp_path, '[lean]\nmodel = "offline"\nevaluators = ["syntax"]\ndocs = "bundled"\n')),
    )
    lean = build_graph(pipeline="lean")
    assert lean.name == "lean"

    plain = lean.invoke({"prompt": PROMPT})
    with_context = lean.invoke({"prompt": PROMPT}, context={"max_cycles": 2})
    overridden = lean.invoke({"prompt": PROMPT}, context={"evaluators": ["syntax", "security"]})
    by_configurable = lean.invoke({"prompt": PROMPT}, config={"configurable": {"evaluators": ["security"]}})

    assert {e["evaluator"] for e in plain["evaluations"]} == {"syntax"}
    assert {e["evaluator"] for e in with_context["evaluations"]} == {"syntax"}
    assert {e["evaluator"] for e in overridden["evaluations"]} == {"syntax", "security"}
    assert {e["evaluator"] for e in by_configurable["evaluations"]} == {"security"}
    assert lean.builder.context_schema().docs == "bundled"


def test_cli_runs_a_named_pipeline():
    result = CliRunner().invoke(app, ["generate", "--pipeline", "offline", "--json", PROMPT])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["model"] == "offline"


def test_cli_unknown_pipeline_exits_2_listing_names():
    result = CliRunner().invoke(app, ["generate", "--pipeline", "gpt5", PROMPT])
    assert result.exit_code == 2
    assert "unknown pipeline 'gpt5'" in result.output and "offline" in result.output


def test_cli_pipeline_without_its_key_exits_2_naming_the_variable():
    result = CliRunner().invoke(app, ["generate", "--pipeline", "gpt4", PROMPT])
    assert result.exit_code == 2
    assert "OPENAI_API_KEY" in result.output


def test_cli_fallback_without_its_key_exits_2_naming_the_variable(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    result = CliRunner().invoke(app, ["generate", "--pipeline", "gpt4", PROMPT])
    assert result.exit_code == 2
    assert "COHERE_API_KEY" in result.output
