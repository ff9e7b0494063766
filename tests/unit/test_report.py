"""Report figures on a seeded store: exact pass rates, cycles to pass, finding counts, latency percentiles, the chart."""

from __future__ import annotations

import json

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from typer.testing import CliRunner

from dream_graph.cli import app
from dream_graph.report import build_report, cycle_latencies, percentile, plot_report
from dream_graph.store import RunStore


def finding(rule: str) -> dict:
    return {"rule": rule, "line": 1, "severity": "high", "message": f"{rule} found"}


def seeded_state(pipeline, model, status, cycle_findings, latencies, stop_reason=None) -> dict:
    """A finished run: `cycle_findings[i]` are cycle i+1's findings (security evaluator), `latencies[i]` its LLM ms."""
    cycles = len(cycle_findings)
    messages = [SystemMessage("system"), HumanMessage("request")]
    evaluations, calls = [], []
    for number, (found, ms) in enumerate(zip(cycle_findings, latencies, strict=True), start=1):
        messages.append(AIMessage(f"```python\nx = {number}\n```"))
        if number < cycles:
            messages.append(HumanMessage("fix it"))
        evaluations.append(
            {
                "cycle": number,
                "evaluator": "security",
                "passed": not found,
                "findings": [finding(r) for r in found],
                "duration_ms": 1.0,
            }
        )
        evaluations.append({"cycle": number, "evaluator": "syntax", "passed": True, "findings": [], "duration_ms": 0.5})
        calls.append(
            {
                "cycle": number,
                "model": model,
                "latency_ms": ms,
                "input_tokens": 100,
                "output_tokens": 10,
                "ok": True,
                "error": None,
            }
        )
    return {
        "prompt": "request",
        "pipeline": pipeline,
        "model": model,
        "status": status,
        "cycles": cycles,
        "stop_reason": stop_reason or status,
        "messages": messages,
        "evaluations": evaluations,
        "llm_calls": calls,
    }


@pytest.fixture
def seeded(tmp_path) -> RunStore:
    store = RunStore.from_url(f"sqlite:///{tmp_path / 'seeded.sqlite'}")
    runs = [
        ("gpt4", "openai:gpt-4", "passed", [[]], [100.0]),
        ("gpt4", "openai:gpt-4", "passed", [["B602", "B404"], []], [200.0, 300.0]),
        ("gpt4", "openai:gpt-4", "failed", [["B602"], ["B602", "E999"], ["B602"]], [400.0, 500.0, 600.0]),
        ("offline", "offline", "passed", [[]], [10.0]),
        ("offline", "offline", "passed", [["B404"], ["E999"], []], [20.0, 30.0, 40.0]),
        (None, "cohere:command-r", "failed", [["E999"], ["E999"]], [700.0, 800.0]),
    ]
    for pipeline, model, status, found, ms in runs:
        stop = "no_progress" if pipeline is None else None
        store.record_state(seeded_state(pipeline, model, status, found, ms, stop))
    return store


def test_report_figures_on_a_seeded_store(seeded):
    report = build_report(seeded)
    assert report.runs == 6
    assert report.by_status == {"passed": 4, "failed": 2}
    assert report.stop_reasons == {"passed": 4, "failed": 1, "no_progress": 1}
    rates = {(r.pipeline, r.model): (r.runs, r.passed, r.pass_rate) for r in report.pass_rates}
    assert rates == {
        ("gpt4", "openai:gpt-4"): (3, 2, 0.6667),
        ("offline", "offline"): (2, 2, 1.0),
        (None, "cohere:command-r"): (1, 0, 0.0),
    }
    assert report.cycles_to_pass == {1: 2, 2: 1, 3: 1}
    top = [(f.rule, f.count, f.runs) for f in report.top_findings]
    assert top == [("B602", 4, 2), ("E999", 4, 3), ("B404", 2, 2)]
    assert all(f.evaluator == "security" for f in report.top_findings)
    # 12 cycles: 10 20 30 40 100 200 300 400 500 600 700 800 -> median (200+300)/2, p95 nearest rank = the 12th
    assert report.latency.cycles_measured == 12
    assert report.latency.median_ms == 250.0
    assert report.latency.p95_ms == 800.0


def test_top_limits_the_findings(seeded):
    assert [f.rule for f in build_report(seeded, top=1).top_findings] == ["B602"]


def test_empty_store_reports_zeros(tmp_path):
    report = build_report(RunStore.from_url(f"sqlite:///{tmp_path / 'empty.sqlite'}"))
    assert (report.runs, report.pass_rates, report.cycles_to_pass, report.top_findings) == (0, [], {}, [])
    assert report.latency.median_ms is None and report.latency.p95_ms is None


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [([5.0], 95, 5.0), ([1, 2, 3, 4], 50, 2), (list(range(1, 101)), 95, 95), ([], 95, None)],
)
def test_percentile_is_nearest_rank(values, q, expected):
    assert percentile(values, q) == expected


def test_plot_writes_a_png(seeded, tmp_path):
    out = plot_report(build_report(seeded), tmp_path / "charts" / "report.png", latencies=cycle_latencies(seeded))
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert (width, height) == (1200, 800)


def test_cli_report_json_and_plot(seeded, tmp_path):
    url = str(seeded.engine.url)
    out = tmp_path / "r.png"
    result = CliRunner().invoke(app, ["runs", "report", "--db", url, "--json", "--plot", str(out)])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.stdout)
    assert figures["runs"] == 6 and figures["latency"]["p95_ms"] == 800.0
    assert out.read_bytes()[:4] == b"\x89PNG"
    text = CliRunner().invoke(app, ["runs", "report", "--db", url])
    assert "67%" in text.stdout and "median 250 ms, p95 800 ms" in text.stdout
