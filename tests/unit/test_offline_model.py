"""The offline demo model: deterministic, labelled, built from the docs' own examples, and passing the checks."""

from langchain_core.messages import HumanMessage, SystemMessage

from dream_graph import graph
from dream_graph.docs import docs_holder
from dream_graph.extract import extract_python, extract_yaml
from dream_graph.llm import resolve_model_spec
from dream_graph.offline import OFFLINE_LABEL, OfflineChatModel
from dream_graph.settings import get_settings


def test_auto_resolves_to_offline_without_keys(monkeypatch):
    assert resolve_model_spec("auto") == "offline"
    monkeypatch.setenv("COHERE_API_KEY", "k")
    get_settings.cache_clear()
    assert resolve_model_spec("auto").startswith("cohere:")
    monkeypatch.setenv("OPENAI_API_KEY", "k")
    get_settings.cache_clear()
    assert resolve_model_spec("auto").startswith("openai:")


def test_reply_adapts_docs_example_to_request():
    docs = "```python\nclass Echo(AbstractNode):\n    def _execute(self, params=None):\n        return None\n```\n" \
        "```yaml\npipeline:\n  name: p\n  nodes:\n    echo:\n      class: pkg.mod.Echo\n```"
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
    assert "".join(c.content for c in chunks) == OfflineChatModel().invoke([HumanMessage("Write code for this request: count words")]).content


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
