"""Evaluator plugins: a real `dream_graph.evaluators` entry point, found by importlib.metadata on sys.path."""

from __future__ import annotations

import logging
import textwrap

import pytest
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage

from dream_graph import build_graph
from dream_graph.evaluators import get_registry, register, reset_registry

PLUGIN = '''
from dream_graph.evaluators import finding


class NoTodoEvaluator:
    """Fails code that still says TODO."""

    name = "no_todo"

    async def evaluate(self, code, context):
        return [finding("TODO", "unfinished code", line=i) for i, line in enumerate((code or "").splitlines(), 1)
                if "TODO" in line]


def broken():
    raise RuntimeError("this plugin cannot start")


class _Shout(NoTodoEvaluator):
    name = "shout"


SHOUT = _Shout()  # an entry point may name an instance as well as a class
'''


@pytest.fixture
def plugin_dist(tmp_path, monkeypatch):
    """A tiny installed distribution (a dist-info with entry_points.txt) on a temporary sys.path entry."""
    site = tmp_path / "site"
    dist = site / "testplugin-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: testplugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(
        textwrap.dedent(
            """\
            [dream_graph.evaluators]
            no_todo = testplugin_mod:NoTodoEvaluator
            broken = testplugin_mod:broken
            shout = testplugin_mod:SHOUT
            missing = testplugin_mod:does_not_exist
            """
        )
    )
    (site / "testplugin_mod.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(site))
    reset_registry()
    yield site
    monkeypatch.undo()
    reset_registry()


def test_entry_point_plugin_is_registered_by_name(plugin_dist, caplog):
    with caplog.at_level(logging.WARNING):
        registry = get_registry()
    assert "no_todo" in registry and type(registry["no_todo"]).__name__ == "NoTodoEvaluator"
    assert {"syntax", "security", "lint", "config", "sandbox"} <= set(registry)
    assert "broken" not in registry and "missing" not in registry
    assert registry["shout"] is __import__("testplugin_mod").SHOUT, "an instance is registered as it is"
    warnings = sorted(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "plugin" in r.getMessage())
    assert len(warnings) == 2 and warnings[0].startswith("evaluator plugin broken could not be loaded: <function broken")
    assert warnings[0].endswith("is not an evaluator: it needs `name` and `async evaluate(code, context)`")
    assert warnings[1].startswith("evaluator plugin missing could not be loaded: ") and "does_not_exist" in warnings[1]


def test_plugin_runs_as_a_graph_branch(plugin_dist):
    reply = "```python\nx = 1  # TODO: real work\n```\n"
    model = GenericFakeChatModel(messages=iter([AIMessage(reply), AIMessage(reply.replace("TODO", "done"))]))
    state = build_graph(chat_model=model).invoke({"prompt": "x"}, context={"evaluators": ["syntax", "no_todo"]})
    assert state["status"] == "passed" and state["cycles"] == 2
    first = next(e for e in state["evaluations"] if e["evaluator"] == "no_todo" and e["cycle"] == 1)
    assert not first["passed"] and first["findings"][0]["line"] == 1
    fix = [m.content for m in state["messages"] if m.type == "human"][-1]
    assert "no_todo check failed" in fix and "[TODO] line 1: unfinished code" in fix and "x = 1  # TODO" in fix


def test_without_the_distribution_the_plugin_is_unknown():
    reset_registry()
    assert "no_todo" not in get_registry()


def test_register_refuses_objects_that_are_not_evaluators():
    with pytest.raises(TypeError, match="needs `name` and `async evaluate"):
        register(object())  # type: ignore[arg-type]


def test_a_finding_is_an_error_unless_said_otherwise():
    from dream_graph.evaluators import finding

    assert finding("R1", "message") == {"rule": "R1", "line": None, "severity": "error", "message": "message"}
    assert finding("R1", "message", 3, "info") == {"rule": "R1", "line": 3, "severity": "info", "message": "message"}


def test_an_evaluator_is_looked_up_by_name_and_an_unknown_name_lists_the_known_ones():
    from dream_graph.evaluators.base import get_evaluator

    reset_registry()
    assert get_evaluator("syntax").name == "syntax"
    with pytest.raises(KeyError) as unknown:
        get_evaluator("spelling")
    message = unknown.value.args[0]
    assert message.startswith("unknown evaluator 'spelling'; known: ") and "lint, " in message and "syntax" in message
    known = message.split("known: ", 1)[1].split(", ")
    assert known == sorted(known)
