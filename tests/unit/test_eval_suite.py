"""The shipped task suite, its reference solutions and replay file, and the suite loader's errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

from dream_graph.errors import ConfigError
from dream_graph.eval import DIFFICULTIES, load_suite, summarize
from dream_graph.offline import REQUEST_MARKER
from dream_graph.prompts import render
from dream_graph.replay import ReplayChatModel, default_replay_file, load_replies

SOLUTIONS = Path(__file__).resolve().parents[1] / "data" / "aineko_tasks"


def test_the_shipped_suite_has_25_tasks_of_every_difficulty_each_with_examples_and_a_solution():
    suite = load_suite()
    assert len(suite) >= 25
    assert {t.difficulty for t in suite} == set(DIFFICULTIES)
    for task in suite:
        assert task.examples, task.id
        assert (SOLUTIONS / task.id / "nodes.py").is_file() and (SOLUTIONS / task.id / "pipeline.yml").is_file()
    assert sorted(p.name for p in SOLUTIONS.iterdir() if p.is_dir()) == sorted(t.id for t in suite)


def test_every_task_has_recorded_replies_and_an_expectation_that_follows_from_them():
    entries = [json.loads(line) for line in default_replay_file().read_text().splitlines()]
    suite = {t.id: t for t in load_suite()}
    assert sorted(e["task"] for e in entries) == sorted(suite)
    for entry in entries:
        assert entry["prompt"] == suite[entry["task"]].prompt
        flawed_first = entry["flaw"] is not None
        assert entry["expect"]["first_pass"] is (not flawed_first)
        assert len(entry["replies"]) == (2 if flawed_first else 1)
    assert sum(e["flaw"] is not None for e in entries) >= len(entries) // 2  # the loop has work to show


def _write(tmp_path: Path, *lines: str) -> Path:
    path = tmp_path / "suite.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


GOOD = json.dumps({"id": "a", "prompt": "p", "examples": [{"inputs": {"x": [1]}, "outputs": {"y": [2]}}]})


@pytest.mark.parametrize(
    ("line", "says"),
    [
        ("{not json", "not JSON"),
        (json.dumps({"prompt": "p"}), "`id` and `prompt` must be non-empty"),
        (json.dumps({"id": "b", "prompt": "   "}), "`id` and `prompt` must be non-empty"),
        (json.dumps({"id": "b", "prompt": "p", "difficulty": "trivial"}), "`difficulty` must be one of easy, medium, hard"),
        (json.dumps({"id": "b", "prompt": "p", "examples": [{"inputs": {"x": 1}, "outputs": {}}]}), "`examples` must be"),
        (json.dumps({"id": "b", "prompt": "p", "examples": {"inputs": {}}}), "`examples` must be"),
        (json.dumps({"id": "b", "prompt": "p", "expected": 1}), "unknown key(s) expected"),
        (json.dumps(["id", "prompt"]), "must be a JSON object"),
        (GOOD, "duplicate task id(s) a"),
    ],
)
def test_a_bad_suite_line_is_an_error_naming_the_file_and_line(tmp_path, line, says):
    path = _write(tmp_path, GOOD, line)
    with pytest.raises(ConfigError) as caught:
        load_suite(path)
    assert says in str(caught.value)
    if "duplicate" not in says:
        assert f"{path} line 2" in str(caught.value)


def test_an_empty_or_missing_suite_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="has no tasks"):
        load_suite(_write(tmp_path, "", "  "))
    with pytest.raises(ConfigError, match="cannot be read"):
        load_suite(tmp_path / "nope.jsonl")


def _conversation(request: str, attempts: int) -> list:
    messages = [SystemMessage(render("system")), HumanMessage(f"docs...\n\n{REQUEST_MARKER}\n\n{request}")]
    for n in range(1, attempts + 1):
        messages += [AIMessage(f"reply {n}"), HumanMessage(render("fix", cycle=n, max_cycles=3, findings="x", history=""))]
    return messages


def test_the_replay_model_answers_each_cycle_with_its_recorded_reply_and_repeats_the_last(tmp_path):
    path = tmp_path / "replay.jsonl"
    path.write_text(json.dumps({"prompt": "double  the\nnumbers", "replies": ["first", "second"]}) + "\n")
    model = ReplayChatModel(path=str(path))
    assert [model.invoke(_conversation("double the numbers", n)).content for n in (0, 1, 2, 5)] == [
        "first", "second", "second", "second"
    ]
    assert "".join(c.content for c in model.stream(_conversation("double the numbers", 1))) == "second"


def test_the_replay_model_refuses_a_request_it_has_no_reply_for(tmp_path):
    path = tmp_path / "replay.jsonl"
    path.write_text(json.dumps({"prompt": "double", "replies": ["r"]}) + "\n")
    with pytest.raises(ConfigError, match="no recorded reply for the request 'triple'"):
        ReplayChatModel(path=str(path)).invoke(_conversation("triple", 0))


@pytest.mark.parametrize(
    ("content", "says"),
    [("{oops", "line 1"), (json.dumps({"prompt": "p", "replies": []}), "non-empty list"), ("\n" + json.dumps({"replies": ["r"]}), "line 2")],
)
def test_a_bad_replay_file_is_an_error_naming_the_line(tmp_path, content, says):
    path = tmp_path / f"bad{abs(hash(content))}.jsonl"
    path.write_text(content + "\n")
    with pytest.raises(ConfigError, match=says):
        load_replies(str(path))


def _row(pipeline, *, first, passed, cycles, tokens=100, latency=10.0, failed=()):
    return {"pipeline": pipeline, "first_cycle_passed": first, "passed": passed, "cycles": cycles, "tokens": tokens,
            "latency_ms": latency, "failed_checks": list(failed)}


def test_summarize_counts_rates_lift_cycles_and_the_checks_that_failed_most():
    rows = [
        _row("a", first=True, passed=True, cycles=1, latency=10),
        _row("a", first=False, passed=True, cycles=2, latency=20, failed=["aineko"]),
        _row("a", first=False, passed=False, cycles=3, latency=30, failed=["aineko", "lint"]),
        _row("a", first=False, passed=True, cycles=2, latency=40, failed=["config"]),
        _row("b", first=True, passed=True, cycles=1, tokens=50),
    ]
    a, b = summarize(rows)
    assert (a["pipeline"], a["runs"], b["pipeline"], b["runs"]) == ("a", 4, "b", 1)
    assert (a["first_cycle_pass_rate"], a["pass_rate"], a["repair_lift"]) == (0.25, 0.75, 0.5)
    assert a["mean_cycles"] == 2.0 and b["mean_tokens"] == 50
    assert a["latency_p50_ms"] == 25.0 and a["latency_p95_ms"] == 38.5
    assert a["top_failed_checks"][0] == "aineko (2)"
    assert b["latency_p95_ms"] == 10.0 and b["top_failed_checks"] == []


def test_the_replay_model_finds_the_request_when_the_prompt_adds_the_examples_after_it(tmp_path):
    path = tmp_path / "replay.jsonl"
    path.write_text("".join(json.dumps({"prompt": p, "replies": [r]}) + "\n" for p, r in (("double", "d"), ("double it", "di"))))
    model = ReplayChatModel(path=str(path))
    assert model.invoke(_conversation("double it\n\nExamples: ...", 0)).content == "di"  # the longest recorded prefix
    assert model.invoke(_conversation("double\n\nExamples: ...", 0)).content == "d"
    with pytest.raises(ConfigError):
        model.invoke(_conversation("doubled", 0))  # a prefix of a word is not the request


@pytest.mark.slow
@pytest.mark.timeout(600)
async def test_every_tasks_examples_pass_under_real_aineko_with_its_reference_solution():
    """The suite is sound: for each task a solution exists that real Aineko 0.4.0 runs to the expected outputs,
    and a wrong output on one example is caught (so the examples constrain the code)."""
    pytest.importorskip("aineko")
    import asyncio

    from dream_graph.evaluators.base import EvalInput, is_blocking
    from dream_graph.sandbox import backend_status
    from dream_graph.targets.aineko.runtime_check import AinekoEvaluator

    if not backend_status()["available"]:
        pytest.skip(f"no sandbox: {backend_status()['detail']}")
    check = AinekoEvaluator()

    async def verdict(task, examples):
        code = (SOLUTIONS / task.id / "nodes.py").read_text()
        yaml_text = (SOLUTIONS / task.id / "pipeline.yml").read_text()
        return [f for f in await check.evaluate(code, EvalInput(config_yaml=yaml_text, examples=examples)) if is_blocking(f)]

    suite = load_suite()
    results = await asyncio.gather(*(verdict(t, t.examples) for t in suite))
    failing = {t.id: r for t, r in zip(suite, results) if r}
    assert failing == {}
    # a wrong expectation is caught: the last expected payload of the first example's first output changed
    task = suite[0]
    wrong = json.loads(json.dumps(task.examples))
    dataset = next(iter(wrong[0]["outputs"]))
    wrong[0]["outputs"][dataset][-1] = "not what the node writes"
    (finding,) = await verdict(task, wrong)
    assert finding["rule"] == "aineko-examples" and "not what the node writes" in finding["message"]
