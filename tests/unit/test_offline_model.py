"""The offline demo model: deterministic, labelled, built from the docs' own examples (or the target's templates), and
writing Aineko 0.4.0 code that the real framework runs."""

import re

import pytest
import yaml
from langchain_core.messages import HumanMessage, SystemMessage

from dream_graph import graph
from dream_graph.docs import docs_holder
from dream_graph.extract import extract_python, extract_yaml
from dream_graph.graph import build_prompt, retrieve_docs
from dream_graph.llm import resolve_model_spec
from dream_graph.offline import FALLBACKS, MODULE_NAME, OFFLINE_LABEL, REQUEST_MARKER, OfflineChatModel
from dream_graph.settings import get_settings
from dream_graph.targets import get_target
from tests.unit.test_bundled_docs import failures, needs_aineko, run_jobs


def test_auto_resolves_to_offline_without_keys(monkeypatch):
    assert resolve_model_spec("auto") == "offline"
    monkeypatch.setenv("COHERE_API_KEY", "k")
    get_settings.cache_clear()
    assert resolve_model_spec("auto").startswith("cohere:")
    monkeypatch.setenv("OPENAI_API_KEY", "k")
    get_settings.cache_clear()
    assert resolve_model_spec("auto").startswith("openai:")


def test_reply_adapts_docs_example_to_request():
    docs = (
        "```python\nclass Echo(AbstractNode):\n    def _execute(self, params=None):\n        return None\n```\n"
        "```yaml\npipeline:\n  name: p\n  nodes:\n    echo:\n      class: pkg.mod.Echo\n```"
    )
    msgs = [SystemMessage("sys"), HumanMessage(f"{docs}\n\nWrite code for this request:\n\nsum the prices of orders")]
    reply = OfflineChatModel().invoke(msgs).content
    assert OFFLINE_LABEL in reply
    code, cfg = extract_python(reply), extract_yaml(reply)
    assert "class SumPricesOrdersNode(AbstractNode)" in code
    assert "class: generated.SumPricesOrdersNode" in cfg
    assert OfflineChatModel().invoke(msgs).content == reply  # deterministic


def test_streams_tokens():
    chunks = list(OfflineChatModel().stream([HumanMessage("Write code for this request: count words")]))
    assert len(chunks) > 10
    assert (
        "".join(c.content for c in chunks)
        == OfflineChatModel().invoke([HumanMessage("Write code for this request: count words")]).content
    )


def test_whole_loop_offline_passes_and_says_so():
    state = graph.invoke({"prompt": "a node that counts words in each message"})
    assert state["status"] == "passed" and state["cycles"] == 1
    assert state["model"] == "offline"
    assert state["response"].startswith(f"[{OFFLINE_LABEL}]")
    assert state["docs_source"] == "bundled:aineko"
    assert "AbstractNode" in state["code"]


def test_local_docs_dir(monkeypatch, tmp_path):
    (tmp_path / "guide.md").write_text("# Guide\n\nUse `Widget.spin()`.\n", encoding="utf-8")
    (tmp_path / "bad.md").write_bytes(b"# Bytes\n\n\xff\xfe not utf-8\n")
    monkeypatch.setenv("DREAM_GRAPH_DOCS_DIR", str(tmp_path))
    get_settings.cache_clear()
    state = graph.invoke({"prompt": "spin a widget"})
    assert state["docs_source"] == f"local:{tmp_path}"
    assert {s.path for s in docs_holder.get()[1]} == {"guide.md", "bad.md"}  # both loaded, bad bytes and all
    assert [s["path"] for s in state["doc_sections"]] == ["guide.md"]  # the one relevant to the request is sent
    assert "Widget.spin()" in state["messages"][1].content


# --- the offline replies run under the real Aineko 0.4.0 ------------------------------------------------------------

PAYLOADS = {
    "strings": ["a b c", "", "Hello World"],
    "numbers": [1, 2.5, -3, 100],
    "dicts": [{"id": 1, "value": 31, "symbol": "A", "severity": "critical", "text": "hi"}, {"id": 1, "value": -1}, {}],
}
"""Sample inputs of every JSON kind: a template must not die on a payload it did not expect."""

REQUESTS = [
    ("a node that keeps only readings above a threshold", "self.threshold"),
    ("a node that converts temperatures from Celsius to Fahrenheit", "def _execute"),
    ("a node that sums the numbers it reads", "self.total"),
    ("a node that counts the words in each message", "text_stats("),
    ("a source node that polls a REST API every minute", "self.next_poll"),
    ("a node that averages sensor values over 5 minute windows", "window_seconds"),
    ("a node that joins trades and quotes by symbol from two inputs", "self.quotes"),
    ("a node that drops duplicate messages by id", "self.seen"),
    ("a sink that writes every message to a file", "self.handle"),
    ("a node that routes alerts by severity to two datasets", "critical_alerts"),
    ("a source node that reads the rows of a CSV file and stops at the end", "return False"),
    ("a sink that inserts each reading into a SQLite table", "sqlite3"),
    ("a node that turns every text message into upper case", "def _execute"),
]
"""Varied requests over the bundled docs, each with a marker of the docs example the reply should be built from."""

NO_DOCS = [
    ("poll a sensor periodically", "source"),
    ("merge the orders and payments streams", "join"),
    ("make every message shorter", "transform"),
]
"""Requests with no docs example in the prompt, and the target template each must fall back to."""


def offline_reply(prompt: str, with_docs: bool = True) -> str:
    """The offline model's first reply, to the prompt the graph's own nodes build (or to the bare request)."""
    if not with_docs:
        return OfflineChatModel().invoke([HumanMessage(f"{REQUEST_MARKER} {prompt}")]).content
    state: dict = {"prompt": prompt}
    state.update(retrieve_docs(state, {"configurable": {}}))
    state.update(build_prompt(state))
    return OfflineChatModel().invoke(state["messages"]).content


def reply_jobs(ident: str, reply: str) -> list[dict]:
    """One real-Aineko job per payload kind: config load, import of every node class, setup_test + run_test."""
    code, config = extract_python(reply), extract_yaml(reply)
    classes = re.findall(r"^\s*class:\s*(\S+)\s*$", config, re.MULTILINE)
    assert classes and {c.rsplit(".", 1)[0] for c in classes} == {MODULE_NAME}, config
    return [
        {
            "id": f"{ident}/{kind}",
            "module": code,
            "module_path": MODULE_NAME,
            "yaml": config,
            "all_nodes": True,
            "default_payloads": payloads,
            "source_steps": 3,
        }
        for kind, payloads in PAYLOADS.items()
    ]


@pytest.fixture(scope="module")
def replies() -> dict[str, str]:
    return {
        **{prompt: offline_reply(prompt) for prompt, _ in REQUESTS},
        **{prompt: offline_reply(prompt, with_docs=False) for prompt, _ in NO_DOCS},
    }


@pytest.fixture(scope="module")
def real_runs(replies, tmp_path_factory) -> dict[str, dict]:
    jobs = [job for i, reply in enumerate(replies.values()) for job in reply_jobs(f"r{i}", reply)]
    return run_jobs(jobs, tmp_path_factory.mktemp("offline"))


@pytest.mark.parametrize(("prompt", "marker"), REQUESTS)
def test_each_request_gets_the_closest_docs_example_on_the_04_api(replies, prompt, marker):
    code = extract_python(replies[prompt])
    assert marker in code
    assert "self.inputs[" in code or "self.outputs[" in code
    assert not re.search(r"\.(consumers|producers)\b|\.produce\(|\.last\(", code)
    assert "the documentation's own example" in replies[prompt]


def test_every_fallback_template_is_exercised_and_ships_with_the_target():
    assert {template for _, template in NO_DOCS} == set(FALLBACKS)
    for name in FALLBACKS:
        assert get_target().resource("offline", f"{name}.yml.tmpl").is_file()


@pytest.mark.parametrize(("prompt", "template"), NO_DOCS)
def test_without_docs_examples_the_target_template_is_used(replies, prompt, template):
    reply = replies[prompt]
    expected = get_target().resource("offline", f"{template}.py.tmpl").read_text(encoding="utf-8")
    new_name = re.search(r"^class (\w+)\(AbstractNode\)", extract_python(reply), re.MULTILINE).group(1)
    assert extract_python(reply).strip() == expected.replace("Example", new_name).strip()
    assert f"the {get_target().spec} template" in reply


def test_old_api_examples_in_the_prompt_are_not_copied():
    docs = (
        "```python\nfrom aineko import AbstractNode\n\n\nclass Echo(AbstractNode):\n"
        "    def _execute(self, params=None):\n        self.producers['out'].produce(1)\n```\n"
    )
    reply = OfflineChatModel().invoke([HumanMessage(f"{docs}\n{REQUEST_MARKER} echo each message")]).content
    assert "producers" not in reply and "self.inputs[" in reply
    assert f"the {get_target().spec} template" in reply


def test_a_pipeline_is_derived_from_the_code_when_the_docs_have_none():
    docs = (
        "```python\nfrom aineko import AbstractNode\n\n\nclass Pair(AbstractNode):\n"
        '    def _execute(self, params=None):\n        left = self.inputs["left"].read(how="next")\n'
        '        if left is not None:\n            self.outputs["pairs"].write(left)\n```\n'
    )
    reply = OfflineChatModel().invoke([HumanMessage(f"{docs}\n{REQUEST_MARKER} pair things")]).content
    config = yaml.safe_load(extract_yaml(reply))["pipeline"]
    (node,) = config["nodes"].values()
    assert node == {"class": "generated.PairThingsNode", "inputs": ["left"], "outputs": ["pairs"]}
    assert set(config["datasets"]) == {"left", "pairs"}


@needs_aineko
@pytest.mark.slow
def test_every_offline_reply_runs_under_real_aineko(replies, real_runs):
    assert len(replies) >= 10
    assert failures(real_runs) == ""
    for i, prompt in enumerate(replies):
        runs = [real_runs[f"r{i}/{kind}"]["runs"] for kind in PAYLOADS]
        config = yaml.safe_load(extract_yaml(replies[prompt]))["pipeline"]
        assert all(set(r) == set(config["nodes"]) for r in runs), prompt  # every node of the pipeline ran
        outputs = {d for node in config["nodes"].values() for d in node.get("outputs") or []}
        written = [m for r in runs for node in r.values() for d, ms in node.items() if d in outputs for m in ms]
        warned = [
            m
            for r in runs
            for node in r.values()
            for m in node.get("logging", [])
            if m["level"] in ("warning", "error")
        ]
        # a node writes for some payload kind, or says why not (a source whose API is unreachable without network)
        assert written or warned or not outputs, f"{prompt}: no payload kind produced any output or warning"
