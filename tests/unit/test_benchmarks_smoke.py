"""`python -m benchmarks --quick` runs every benchmark in its tiny configuration and writes each one's figures."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> dict:
    """One quick run of the whole command, shared by the checks below."""
    output = tmp_path_factory.mktemp("bench") / "results.json"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--output", str(output)],
        cwd=ROOT,
        env={**os.environ, "DREAM_GRAPH_DB": "off"},
        capture_output=True,
        text=True,
        timeout=840,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(output.read_text())


pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]  # the quick run serves three stacks


def test_every_benchmark_ran_and_the_machine_is_recorded(results):
    assert results["quick"] is True
    assert set(results["benchmarks"]) == {"qa_cost", "concurrency", "prompt_tokens", "cold_start"}
    assert results["machine"]["cpus"] >= 1


def test_qa_cost_times_the_suite_and_both_baselines(results):
    (row, *_) = results["benchmarks"]["qa_cost"]["rows"]
    timed = {name for name, value in row.items() if isinstance(value, dict) and value.get("median_ms", 0) > 0}
    assert {"original_way", "bandit_cli"} <= timed and any(name.startswith("suite") for name in timed)
    assert all(value > 0 for name, value in row.items() if "_vs_" in name)


def test_concurrency_answers_every_request_correctly_after_two_cycles_on_every_stack(results):
    bench = results["benchmarks"]["concurrency"]
    assert bench["cycles"] == 2 and bench["rows"]
    stacks = {row["stack"] for row in bench["rows"]}
    assert {"langgraph", "openai"} <= stacks and any(s.startswith("dream_graph") for s in stacks)
    for row in bench["rows"]:
        assert row["correct"] == row["n"], (row["stack"], row["first_error"])
        assert row["ratio"] == pytest.approx(row["wall_ms"] / row["ideal_ms"], abs=0.01)
        assert row["max_loop_stall_ms"] >= 0 and row["p99_ms"] >= row["p50_ms"]
        assert row["service_cpu_ms_per_request"] > 0


def test_concurrency_reports_dream_graph_as_ratios_to_each_peer_at_the_same_n(results):
    rows = results["benchmarks"]["concurrency"]["rows"]
    peers = {(r["stack"], r["n"]): r for r in rows if r["stack"] in ("langgraph", "openai")}
    ours = [r for r in rows if r["stack"].startswith("dream_graph")]
    assert ours
    for row in ours:
        for peer in ("langgraph", "openai"):
            other = peers[(peer, row["n"])]
            walls = [a / b for a, b in zip(row["per_round"]["wall_ms"], other["per_round"]["wall_ms"])]
            assert row[f"wall_vs_{peer}"] == pytest.approx(statistics.median(walls), abs=0.01)
            cpus = zip(row["per_round"]["service_cpu_ms_per_request"], other["per_round"]["service_cpu_ms_per_request"])
            assert row[f"cpu_vs_{peer}"] == pytest.approx(statistics.median(a / b for a, b in cpus), rel=0.02, abs=0.01)
    assert not any("wall_vs_langgraph" in r for r in peers.values())


def test_peer_ratios_pair_the_rounds_so_a_slow_minute_cancels_out():
    from benchmarks.concurrency import paired_ratio, peer_ratios

    # Round 2 ran on a VM twice as slow for both stacks: pairs say 1.2x every round; medians would say 1.5x.
    ours, theirs = [12.0, 24.0, 12.0], [10.0, 20.0, 8.0]
    assert paired_ratio(ours, theirs) == 1.2
    rows = [{"stack": "dream_graph", "n": 4, "wall_ms": 12.0, "service_cpu_ms_per_request": 12.0,
             "per_round": {"wall_ms": ours, "service_cpu_ms_per_request": ours}}]
    rows += [{"stack": peer, "n": 4, "wall_ms": 10.0, "service_cpu_ms_per_request": 10.0,
              "per_round": {"wall_ms": theirs, "service_cpu_ms_per_request": theirs}} for peer in ("langgraph", "openai")]
    peer_ratios(rows)
    assert rows[0]["wall_vs_langgraph"] == rows[0]["cpu_vs_openai"] == 1.2


def test_the_fake_llm_gives_every_request_its_own_code_broken_first_and_clean_on_repair():
    from benchmarks.concurrency import DOCSTRING, payload, reply_for, two_cycle_replies
    from dream_graph.extract import extract_python

    broken, clean = two_cycle_replies()
    assert DOCSTRING in broken and DOCSTRING in clean  # else the replies would silently stop varying

    def ask(i: int, repairing: bool) -> str:
        messages = [{"role": "system", "content": "docs that mention stream 99"},
                    {"role": "user", "content": payload(i, None)["prompt"]}]
        if repairing:
            messages += [{"role": "assistant", "content": broken}, {"role": "user", "content": "fix it"}]
        return reply_for({"messages": messages})

    first, repaired = ask(7, False), ask(7, True)
    assert first == broken.replace(DOCSTRING, '"""Counts the words in each message of stream 7."""')
    assert repaired == clean.replace(DOCSTRING, '"""Counts the words in each message of stream 7."""')
    assert extract_python(ask(12, True)) != extract_python(ask(1, True))  # 12 is not read as 1, nor 99 from docs
    assert "of stream ?." in reply_for({"messages": [{"role": "user", "content": "no stream named"}]})


def test_prompt_tokens_scores_retrieval_against_all_docs(results):
    bench = results["benchmarks"]["prompt_tokens"]
    baseline, default, *what_if = bench["rows"]
    assert baseline["docs_budget"] == 0 and baseline["tokens_vs_all_docs"] == 1.0 and baseline["needed_kept"] == 1.0
    assert 0 < default["tokens_vs_all_docs"] < 1.0 and 0 <= default["needed_kept"] <= 1.0  # the cutoff cuts
    assert default["min_score"] > 0 and 0 <= default["needed_kept_non_core"] <= default["needed_kept"]
    assert {r["min_score"] for r in what_if} >= {0.0} and all(r["tokens_vs_all_docs"] <= 1.0 for r in what_if)


def test_cold_start_is_measured_against_a_bare_interpreter(results):
    bench = results["benchmarks"]["cold_start"]
    assert bench["python_c_pass"]["median_ms"] > 0
    assert bench["help_vs_python"] > 0 and bench["generate_vs_python"] > 0
