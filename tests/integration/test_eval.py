"""`dream-graph eval` over the replay pipeline: the pass rates the replay file implies, exactly, and the report,
export and chart from the run store."""

from __future__ import annotations

import csv
import io
import json
from collections import Counter

import pytest
from typer.testing import CliRunner

from dream_graph.cli import app
from dream_graph.eval import experiment_rows, load_suite, summarize
from dream_graph.replay import default_replay_file
from dream_graph.settings import get_settings
from dream_graph.store import get_store

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def implied():
    """What the replay file says will happen, task by task (every default check on, Aineko installed)."""
    return {e["task"]: e["expect"] for e in map(json.loads, default_replay_file().read_text().splitlines())}


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """The whole shipped suite through the replay pipeline, once per module, via the CLI, into its own store."""
    pytest.importorskip("aineko", reason="the replay file's expectations assume the real-framework check")
    db = tmp_path_factory.mktemp("eval") / "runs.sqlite"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DREAM_GRAPH_DB", str(db))
        get_settings.cache_clear()
        result = CliRunner().invoke(
            app, ["eval", "--pipeline", "replay", "--concurrency", "4", "--json", "--experiment", "t1"]
        )
    get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    return db, json.loads(result.stdout)


@pytest.fixture
def experiment(recorded, monkeypatch):
    """The experiment's output, with this test reading the store it was recorded in."""
    db, output = recorded
    monkeypatch.setenv("DREAM_GRAPH_DB", str(db))
    get_settings.cache_clear()
    return output


def test_eval_over_the_replay_pipeline_gives_exactly_the_implied_pass_rates_and_records_every_run(experiment, implied):
    rows = experiment["rows"]
    assert experiment["experiment"] == "t1" and len(rows) == len(load_suite()) == len(implied)
    by_task = {r["task"]: r for r in rows}
    for task, expect in implied.items():
        row = by_task[task]
        assert row["first_cycle_passed"] is expect["first_pass"], (task, row)
        assert row["passed"] is expect["final_pass"], (task, row)
        if "cycles" in expect:
            assert row["cycles"] == expect["cycles"], (task, row)
    (summary,) = experiment["summary"]
    n = len(implied)
    first = sum(e["first_pass"] for e in implied.values())
    final = sum(e["final_pass"] for e in implied.values())
    assert summary["first_cycle_pass_rate"] == round(first / n, 4)
    assert summary["pass_rate"] == round(final / n, 4)
    assert summary["repair_lift"] == round(final / n - first / n, 4)
    assert 0 < first < final < n  # the loop has work to do, does it, and two tasks stay broken
    # every flawed first reply was caught by the real-framework check (its error is what the fix request quoted)
    assert all("aineko" in r["failed_checks"] for r in rows if not r["first_cycle_passed"])
    # and the store holds every run under the experiment id, with the same verdicts
    stored = experiment_rows(get_store(), "t1")
    assert Counter((r["task"], r["passed"], r["first_cycle_passed"]) for r in stored) == Counter(
        (r["task"], r["passed"], r["first_cycle_passed"]) for r in rows
    )
    assert {k: v for k, v in summarize(stored)[0].items() if "latency" not in k} == {
        k: v for k, v in summary.items() if "latency" not in k
    }


def test_the_report_export_and_chart_come_from_the_run_store(experiment, tmp_path):
    png = tmp_path / "experiment.png"
    result = CliRunner().invoke(app, ["runs", "report", "--experiment", "t1", "--plot", str(png), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["summary"][0]["pass_rate"] == experiment["summary"][0]["pass_rate"]
    assert png.read_bytes()[:4] == b"\x89PNG" and png.stat().st_size > 10_000
    exported = CliRunner().invoke(app, ["runs", "export", "--experiment", "t1", "--format", "csv"])
    assert exported.exit_code == 0, exported.output
    lines = list(csv.DictReader(io.StringIO(exported.stdout)))
    assert len(lines) == len(experiment["rows"]) and {r["experiment"] for r in lines} == {"t1"}
    assert {r["task"] for r in lines} == {r["task"] for r in experiment["rows"]}
    missing = CliRunner().invoke(app, ["runs", "report", "--experiment", "nosuch"])
    assert missing.exit_code == 2 and "no runs recorded under experiment 'nosuch'" in missing.output


def test_the_runs_api_reports_an_experiment(experiment):
    from fastapi.testclient import TestClient

    from dream_graph.graph import build_graph
    from dream_graph.service.app import create_app

    client = TestClient(create_app({"dream": build_graph()}))
    body = client.get("/runs/report", params={"experiment": "t1"}).json()
    assert body["runs"] == len(experiment["rows"])
    assert body["summary"][0]["pass_rate"] == experiment["summary"][0]["pass_rate"]
    assert client.get("/runs/report", params={"experiment": "nosuch"}).status_code == 404
    listed = client.get("/runs", params={"experiment": "t1", "limit": 1000}).json()["runs"]
    assert len(listed) == len(experiment["rows"]) and {r["experiment"] for r in listed} == {"t1"}
