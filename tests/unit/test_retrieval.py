"""Retrieval: BM25 picks the sections a request needs, the core API always goes in, the budget holds, 0 stuffs all."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from dream_graph.context import Context
from dream_graph.docs import count_tokens, docs_for, docs_holder, make_snapshot, split_sections
from dream_graph.graph import graph
from dream_graph.retrieval import CORE_MARKER, select_sections, tokenize
from dream_graph.sources import Doc, DocSet

FILLER = "This paragraph is here to take up room in the prompt without saying anything useful. " * 6

GUIDE = f"""# Guide

## The node API

Subclass `AbstractNode` and implement `_execute(self, params)`; read with `self.inputs[name].read(how="next")`.

## HTTP polling

Poll an HTTP endpoint with `requests.get(url, timeout=10)` every `interval` seconds and produce the JSON body.
{FILLER}

## Kafka datasets

A dataset of type `KafkaDataset` is a Kafka topic; set `location` to the broker address.
{FILLER}

## Logging

Call `self.log(message, level="info")` to write to the logging dataset.
{FILLER}

## WebSocket client

Connect to a websocket URL, subscribe, and produce every frame the server sends.
{FILLER}
"""


@pytest.fixture
def snapshot():
    docset = DocSet(source="test", docs=(Doc("guide.md", GUIDE),))
    return make_snapshot("test", docset)


def headings(sections) -> list[str]:
    return [s.heading for s in sections]


def test_tokenize_splits_identifiers_and_drops_stopwords():
    assert tokenize("Poll the HTTPServer with _pre_loop_hook and AbstractNode messages") == [
        "poll", "http", "server", "pre", "loop", "hook", "abstract", "node", "message",
    ]


def test_the_relevant_section_wins_a_tight_budget(snapshot):
    core = [s for s, keep in zip(snapshot.sections, snapshot.core) if keep]
    assert headings(core) == ["The node API"]
    budget = sum(s.tokens + 1 for s in core) + max(s.tokens for s in snapshot.sections) + 1

    topics = {"HTTP polling", "Kafka datasets", "Logging", "WebSocket client"}

    http = snapshot.select("a node that polls an HTTP endpoint every minute", budget)
    kafka = snapshot.select("write each message to a Kafka topic on my broker", budget)
    assert [h for h in headings(http.sections) if h in topics] == ["HTTP polling"]
    assert [h for h in headings(kafka.sections) if h in topics] == ["Kafka datasets"]
    assert "The node API" in headings(http.sections) and "The node API" in headings(kafka.sections)
    assert http.dropped == len(snapshot.sections) - len(http.sections) >= len(topics) - 1


@pytest.mark.parametrize("budget", [120, 250, 400, 700, 1000])
def test_the_budget_holds_and_document_order_is_kept(snapshot, budget):
    chosen = snapshot.select("log every websocket frame", budget)
    text = "\n\n".join(s.text for s in chosen.sections)
    assert count_tokens(text) <= budget
    assert chosen.tokens <= budget
    order = [snapshot.sections.index(s) for s in chosen.sections]
    assert order == sorted(order)
    assert "The node API" in headings(chosen.sections)


def test_with_the_cutoff_off_leftover_budget_is_filled_with_lower_ranked_sections(snapshot):
    everything = sum(s.tokens + 1 for s in snapshot.sections)
    chosen = snapshot.select("websocket", everything, min_score=0)
    assert len(chosen.sections) == len(snapshot.sections)


def test_irrelevant_sections_stay_out_even_with_budget_to_spare(snapshot):
    everything = sum(s.tokens + 1 for s in snapshot.sections)
    chosen = snapshot.select("subscribe to a websocket and produce every frame", everything)
    assert headings(chosen.sections) == ["The node API", "WebSocket client"]
    assert chosen.dropped == len(snapshot.sections) - 2 and chosen.tokens < everything // 2


def test_the_cutoff_is_a_fraction_of_the_best_match(snapshot):
    everything = sum(s.tokens + 1 for s in snapshot.sections)
    query = "log each kafka message"  # Logging and Kafka datasets both match, to different degrees
    loose = headings(snapshot.select(query, everything, min_score=0.01).sections)
    strict = headings(snapshot.select(query, everything, min_score=1.0).sections)
    assert {"Logging", "Kafka datasets"} <= set(loose) and "WebSocket client" not in loose
    assert len(strict) == 2 and strict[0] == "The node API" and strict[1] in {"Logging", "Kafka datasets"}


def test_core_sections_are_kept_when_nothing_matches(snapshot):
    chosen = snapshot.select("zebra giraffe", 10_000)
    assert headings(chosen.sections) == ["The node API"]


def test_docs_without_core_or_a_match_still_fill_the_budget():
    docset = DocSet("t", (Doc("a.md", "# One\n\nalpha\n\n## Two\n\nbeta"),))
    snap = make_snapshot("t", docset)
    assert headings(snap.select("zebra", 1000).sections) == ["One", "Two"]


def test_the_cutoff_comes_from_the_environment_and_is_checked(monkeypatch, snapshot):
    from dream_graph.errors import ConfigError
    from dream_graph.settings import get_settings

    everything = sum(s.tokens + 1 for s in snapshot.sections)
    monkeypatch.setenv("DREAM_GRAPH_DOCS_MIN_SCORE", "0")
    get_settings.cache_clear()
    assert len(snapshot.select("websocket", everything).sections) == len(snapshot.sections)
    monkeypatch.setenv("DREAM_GRAPH_DOCS_MIN_SCORE", "1.5")
    get_settings.cache_clear()
    with pytest.raises(ConfigError, match="DREAM_GRAPH_DOCS_MIN_SCORE"):
        get_settings()
    with pytest.raises(ValueError, match="fraction"):
        select_sections(snapshot.sections, "x", 100, min_score=-0.1)


def test_budget_zero_stuffs_every_section(snapshot):
    chosen = snapshot.select("websocket", 0)
    assert chosen.sections == snapshot.sections
    assert chosen.dropped == 0
    assert snapshot.select("websocket", 0, min_score=1.0).sections == snapshot.sections  # no cutoff either


def test_core_sections_stay_even_over_budget_with_a_warning(snapshot):
    chosen = snapshot.select("websocket", 5)
    assert headings(chosen.sections) == ["The node API"]
    assert "more than the docs budget of 5" in chosen.warnings[0]


def test_a_marker_makes_any_section_core():
    docset = DocSet("t", (Doc("a.md", f"# One\n\nalpha\n\n## Two\n\n{CORE_MARKER}\nbeta gamma\n\n## Three\n\ndelta"),))
    snap = make_snapshot("t", docset)
    assert snap.core == [False, True, False]
    assert headings(snap.select("delta", 1).sections) == ["Two"]


def test_negative_budget_is_refused():
    sections = split_sections(DocSet("t", (Doc("a.md", "# A\n\ntext"),)))
    with pytest.raises(ValueError, match="docs budget"):
        select_sections(sections, "x", -1)
    with pytest.raises(ValueError, match="docs_budget"):
        Context(docs_budget=-5)


def test_the_graph_records_the_chosen_sections_and_the_prompt_size():
    ask = "a node that counts words in each message"
    small = graph.invoke({"prompt": ask}, context={"model": "offline", "max_cycles": 1, "docs_budget": 2000})
    full = graph.invoke({"prompt": ask}, context={"model": "offline", "max_cycles": 1, "docs_budget": 0})
    all_sections = docs_for().sections

    assert len(full["doc_sections"]) == len(all_sections)
    assert 0 < len(small["doc_sections"]) < len(all_sections)
    assert sum(d["tokens"] for d in small["doc_sections"]) <= 2000
    assert small["prompt_tokens"] < full["prompt_tokens"]
    core = {"The node API", "Top-level keys", "Node definition", "Dataset definition"}  # the default core headings
    assert core <= {d["heading"] for d in small["doc_sections"]}
    assert sum(d["tokens"] for d in small["doc_sections"] if d["heading"] in core) < 2000  # room left for a pattern
    prompt = small["messages"][1].content
    kept = {d["heading"] for d in small["doc_sections"]}
    for section in all_sections:
        assert (section.text in prompt) == (section.heading in kept)
    assert small["docs_source"] == "bundled:aineko" and small["docs_warnings"] == []


def test_the_budget_comes_from_the_environment(monkeypatch):
    from dream_graph.settings import get_settings

    monkeypatch.setenv("DREAM_GRAPH_DOCS_BUDGET", "0")
    get_settings.cache_clear()
    assert Context().docs_budget == 0
    monkeypatch.setenv("DREAM_GRAPH_DOCS_BUDGET", "1234")
    get_settings.cache_clear()
    assert Context().docs_budget == 1234


def test_cli_docs_budget_zero_puts_every_section_in_the_prompt():
    import json

    from dream_graph.cli import app

    result = CliRunner().invoke(
        app, ["generate", "a node that counts words", "--model", "offline", "--max-cycles", "1", "--docs-budget", "0", "--json"]
    )
    assert result.exit_code == 0, result.output
    state = json.loads(result.stdout.strip().splitlines()[-1])
    assert len(state["doc_sections"]) == len(docs_holder.get()[1])
    bad = CliRunner().invoke(app, ["generate", "x", "--model", "offline", "--docs-budget", "-1"])
    assert bad.exit_code == 2


def test_a_section_is_indexed_with_its_pages_title_once():
    from dream_graph.docs import Section
    from dream_graph.retrieval import _index_text

    title = Section("cli.md", "The aineko command line", "intro")
    run = Section("cli.md", "aineko run", "starts a pipeline")
    assert _index_text(run, title.heading) == "The aineko command line\naineko run\nstarts a pipeline"
    assert _index_text(title, title.heading) == "The aineko command line\nintro", "the title section: not twice"
