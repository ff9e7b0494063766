"""The repair loop with the real-framework check: Aineko's own error goes back to the model, and a request's examples
reach the check through graph.invoke, /generate and the LangServe route."""

from __future__ import annotations

import json
from importlib.util import find_spec
from typing import Any

import httpx
import pytest
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, HumanMessage

from dream_graph.context import default_evaluators
from dream_graph.graph import build_graph, graph
from dream_graph.sandbox import backend_status
from dream_graph.service.app import create_app
from dream_graph.settings import get_settings
from tests.fakes import Reply

pytestmark = pytest.mark.slow

PROMPT = "a node that doubles each number it reads"
NODE_03 = '''```python
from typing import Optional

from aineko import AbstractNode


class Doubler(AbstractNode):
    """Doubles each number."""

    def _execute(self, params: Optional[dict] = None) -> Optional[bool]:
        message = self.consumers["numbers"].consume()
        self.producers["doubled"].produce(message["message"] * 2)
        return True
```
'''
NODE_04 = '''```python
from typing import Optional

from aineko import AbstractNode


class Doubler(AbstractNode):
    """Doubles each number."""

    def _execute(self, params: Optional[dict] = None) -> Optional[bool]:
        message = self.inputs["numbers"].next()
        self.outputs["doubled"].write(message["message"] * 2)
        return True
```
'''
CONFIG = """
```yaml
pipeline:
  name: doubling
  nodes:
    doubler:
      class: generated.Doubler
      inputs:
        - numbers
      outputs:
        - doubled
  datasets:
    numbers:
      type: aineko.datasets.kafka.KafkaDataset
    doubled:
      type: aineko.datasets.kafka.KafkaDataset
```
"""
REPLY_03, REPLY_04 = NODE_03 + CONFIG, NODE_04 + CONFIG
TRIPLES = [{"inputs": {"numbers": [1, 2]}, "outputs": {"doubled": [3, 6]}}]
DOUBLES = [{"inputs": {"numbers": [1, 2]}, "outputs": {"doubled": [2, 4]}}]
MISMATCH = "[examples] node 'doubler' example 1, dataset 'doubled': expected [3, 6], got [2, 4]"


@pytest.fixture(autouse=True)
def needs_aineko_and_bwrap() -> None:
    """Skip only where Aineko or a usable bubblewrap is truly absent (CI has both)."""
    if find_spec("aineko") is None:
        pytest.skip("aineko is not installed (pip install -e '.[aineko]')")
    status = backend_status()
    if not status["available"]:
        pytest.skip(f"no usable bubblewrap here: {status['detail']}")


def fake(*replies: str) -> GenericFakeChatModel:
    return GenericFakeChatModel(messages=iter([AIMessage(r) for r in replies]))


def aineko_findings(state: dict[str, Any], cycle: int) -> list[dict]:
    (evaluation,) = [e for e in state["evaluations"] if e["evaluator"] == "aineko" and e["cycle"] == cycle]
    return evaluation["findings"]


def test_03_reply_then_04_reply_passes_in_two_cycles_with_aineko_error_in_the_fix_request(fake_openai):
    fake_openai.script(Reply.ok(REPLY_03), Reply.ok(REPLY_04))

    state = graph.invoke({"prompt": PROMPT}, context={"model": "openai:gpt-test", "max_cycles": 3})

    assert "aineko" in default_evaluators()
    assert (state["status"], state["cycles"]) == ("passed", 2)
    assert {e["evaluator"] for e in state["evaluations"]} >= {"aineko", "config", "syntax"}
    (first,) = aineko_findings(state, 1)
    assert first["rule"] == "aineko-run" and first["line"] == 10
    assert aineko_findings(state, 2) == []
    second_request = [m for m in fake_openai.bodies[1]["messages"] if m["role"] == "user"][-1]["content"]
    assert "[aineko-run] line 10:" in second_request
    assert "AttributeError: 'Doubler' object has no attribute 'consumers'" in second_request
    assert 'self.consumers["numbers"].consume()' in second_request  # the generated line, quoted
    first_request = [m for m in fake_openai.bodies[0]["messages"] if m["role"] == "user"][-1]["content"]
    assert "AttributeError" not in first_request


def test_examples_given_to_invoke_reach_the_check():
    failing = build_graph(chat_model=fake(REPLY_04)).invoke(
        {"prompt": PROMPT, "examples": TRIPLES}, context={"max_cycles": 1, "evaluators": ["aineko"]}
    )
    assert failing["status"] == "failed" and failing["examples"] == TRIPLES
    first_request = failing["messages"][1].content
    assert '{"inputs": {"numbers": [1, 2]}, "outputs": {"doubled": [3, 6]}}' in first_request  # the model sees them
    assert [f["message"] for f in aineko_findings(failing, 1)] == [MISMATCH]

    passing = build_graph(chat_model=fake(REPLY_04)).invoke(
        {"prompt": PROMPT, "examples": DOUBLES}, context={"max_cycles": 1, "evaluators": ["aineko"]}
    )
    assert passing["status"] == "passed", passing["evaluations"]


def test_examples_mismatch_goes_into_the_fix_request():
    state = build_graph(chat_model=fake(REPLY_04, REPLY_04)).invoke(
        {"prompt": PROMPT, "examples": TRIPLES}, context={"max_cycles": 2, "evaluators": ["aineko"]}
    )
    assert state["status"] == "failed" and state["stop_reason"] in ("no_progress", "max_cycles")
    fixes = [m.content for m in state["messages"] if isinstance(m, HumanMessage)][1:]
    assert fixes and "expected [3, 6], got [2, 4]" in fixes[-1]


@pytest.mark.parametrize("bad", [{"inputs": {"numbers": 1}}, {}, "not a list"])
def test_malformed_examples_in_invoke_are_refused_with_the_place(bad):
    with pytest.raises(ValueError, match="invalid examples: examples"):
        build_graph(chat_model=fake(REPLY_04)).invoke(
            {"prompt": PROMPT, "examples": bad if bad == "not a list" else [bad]}
        )


async def _client(chat: GenericFakeChatModel) -> httpx.AsyncClient:
    get_settings.cache_clear()
    app = create_app(graphs={"dream": build_graph(chat_model=chat)})
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test", timeout=120)


async def test_generate_and_langserve_carry_examples_to_the_check():
    options = {"max_cycles": 1, "evaluators": ["aineko"]}
    async with await _client(fake(REPLY_04, REPLY_04)) as client:
        generated = await client.post("/generate", json={"prompt": PROMPT, "options": options, "examples": TRIPLES})
        assert generated.status_code == 200, generated.text
        assert [f["message"] for f in aineko_findings(generated.json(), 1)] == [MISMATCH]

        body = {"input": {"prompt": PROMPT, "examples": TRIPLES}, "config": {"configurable": options}}
        served = await client.post("/dream/invoke", json=body)
        assert served.status_code == 200, served.text
        assert [f["message"] for f in aineko_findings(served.json()["output"], 1)] == [MISMATCH]


@pytest.mark.parametrize(
    ("examples", "needle"),
    [
        ([{"inputs": {"numbers": 1}}], "inputs"),
        ([{"outputs": {"doubled": ["x" * 70_000]}}], "65536"),
        ([{"inputs": {"numbers": [1]}}] * 21, "20"),
        ([{"input": {"numbers": [1]}}], "input"),
    ],
)
async def test_malformed_examples_are_a_422_on_generate_and_langserve(examples, needle):
    async with await _client(fake(REPLY_04)) as client:
        generated = await client.post("/generate", json={"prompt": PROMPT, "examples": examples})
        assert generated.status_code == 422 and needle in generated.text
        served = await client.post("/dream/invoke", json={"input": {"prompt": PROMPT, "examples": examples}})
        assert served.status_code == 422 and needle in served.text


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (None, "cannot read examples file"),
        ("{not json", "is not valid JSON"),
        ('[{"inputs": {"numbers": 5}}]', "examples[0].inputs.numbers: Input should be a valid list"),
    ],
)
def test_cli_examples_file_errors_are_one_line_and_exit_2(tmp_path, content, needle):
    from typer.testing import CliRunner

    from dream_graph.cli import app

    path = tmp_path / "examples.json"
    if content is not None:
        path.write_text(content)
    done = CliRunner().invoke(app, ["generate", PROMPT, "--examples", str(path)])
    assert done.exit_code == 2
    assert needle in done.stderr and str(path) in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_cli_examples_reach_the_check(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from dream_graph.cli import app

    monkeypatch.setenv("DREAM_GRAPH_MODEL", "offline")
    get_settings.cache_clear()
    path = tmp_path / "examples.json"
    path.write_text(json.dumps(TRIPLES))
    done = CliRunner().invoke(
        app, ["generate", PROMPT, "--examples", str(path), "--json", "--max-cycles", "1", "--evaluators", "aineko"]
    )
    state = json.loads(done.stdout)
    assert state["examples"] == TRIPLES
    (evaluation,) = state["evaluations"]
    assert evaluation["evaluator"] == "aineko"
    assert any(f["rule"] == "aineko-examples" for f in evaluation["findings"]), evaluation  # the offline node differs


async def test_langserve_takes_a_source_node_example_without_inputs():
    source = [{"outputs": {"ticks": [1, 2]}}]
    async with await _client(fake(REPLY_04)) as client:
        schema = (await client.get("/dream/input_schema")).json()
        assert "examples" in schema["$defs"]["InputState"]["properties"]
        assert "inputs" in schema["$defs"]["Example"]["properties"] and "required" not in schema["$defs"]["Example"]
        served = await client.post(
            "/dream/invoke",
            json={
                "input": {"prompt": PROMPT, "examples": source},
                "config": {"configurable": {"evaluators": ["aineko"]}},
            },
        )
    assert served.status_code == 200, served.text
    assert served.json()["output"]["examples"] == [{"inputs": {}, "outputs": {"ticks": [1, 2]}}]
    messages = [f["message"] for f in aineko_findings(served.json()["output"], 1)]
    assert messages == [
        "[examples] example 1 expects output on ['ticks'] but no node writes it (nodes write: ['doubled'])"
    ]
