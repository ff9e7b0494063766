"""Experiments: run a task suite against pipelines and measure how often, how fast and how cheaply code passes.

`run_experiment(...)` returns one row per run (a list of dicts, DataFrame-friendly); `summarize(rows)` gives one row
per pipeline: pass rate on the first cycle, after repair, the lift the loop gives, mean cycles, tokens, latency
percentiles and the checks that failed most. Every run is recorded in the run store under the experiment id.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dream_graph.errors import ConfigError

DIFFICULTIES = ("easy", "medium", "hard")
MAX_CONCURRENCY = 32


@dataclass(frozen=True)
class Task:
    """One request of a suite, with the examples the real-framework check runs the code on."""

    id: str
    prompt: str
    difficulty: str = "medium"
    examples: list[dict[str, Any]] = field(default_factory=list)


def default_suite_path() -> Path:
    """The target's shipped suite (`targets/<name>/data/tasks.jsonl`)."""
    from dream_graph.targets import get_target

    return Path(str(get_target().resource("data", "tasks.jsonl")))


def _task(entry: Any, where: str) -> Task:
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: a task must be a JSON object with `id` and `prompt`")
    unknown = set(entry) - {"id", "prompt", "difficulty", "examples"}
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}; known: id, prompt, difficulty, examples")
    tid, prompt = entry.get("id"), entry.get("prompt")
    if not isinstance(tid, str) or not tid.strip() or not isinstance(prompt, str) or not prompt.strip():
        raise ConfigError(f"{where}: `id` and `prompt` must be non-empty text")
    difficulty = entry.get("difficulty", "medium")
    if difficulty not in DIFFICULTIES:
        raise ConfigError(f"{where}: `difficulty` must be one of {', '.join(DIFFICULTIES)}, got {difficulty!r}")
    examples = entry.get("examples", [])
    if not isinstance(examples, list) or not all(
        isinstance(e, dict) and isinstance(e.get("inputs"), dict) and isinstance(e.get("outputs"), dict)
        and all(isinstance(v, list) for v in (*e["inputs"].values(), *e["outputs"].values()))
        for e in examples
    ):
        raise ConfigError(f"{where}: `examples` must be a list of {{\"inputs\": {{dataset: [...]}}, \"outputs\": {{dataset: [...]}}}}")
    return Task(id=tid, prompt=prompt, difficulty=difficulty, examples=examples)


def load_suite(path: str | Path | None = None) -> list[Task]:
    """A JSONL suite (one task per line); every problem names the file and line."""
    path = Path(path) if path is not None else default_suite_path()
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"task suite {path} cannot be read: {exc}") from None
    tasks: list[Task] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except ValueError as exc:
            raise ConfigError(f"task suite {path} line {number}: not JSON: {exc}") from None
        tasks.append(_task(entry, f"task suite {path} line {number}"))
    ids = Counter(t.id for t in tasks)
    if dupes := [i for i, n in ids.items() if n > 1]:
        raise ConfigError(f"task suite {path}: duplicate task id(s) {', '.join(dupes)}")
    if not tasks:
        raise ConfigError(f"task suite {path} has no tasks")
    return tasks


def _first_cycle_passed(state: dict[str, Any]) -> bool:
    first = [e for e in state.get("evaluations") or [] if e["cycle"] == 1]
    return state.get("cycles", 0) >= 1 and bool(first) and all(e["passed"] for e in first)


def _failed_checks(state: dict[str, Any]) -> list[str]:
    """Each check that failed in any cycle of the run, once."""
    return sorted({e["evaluator"] for e in state.get("evaluations") or [] if not e["passed"]})


def row_of(experiment: str, pipeline: str, task: Task, repeat: int, state: dict[str, Any], latency_ms: float) -> dict:
    """One run as one flat row."""
    return {
        "experiment": experiment,
        "pipeline": pipeline,
        "task": task.id,
        "difficulty": task.difficulty,
        "repeat": repeat,
        "status": state.get("status"),
        "passed": state.get("status") == "passed",
        "first_cycle_passed": _first_cycle_passed(state),
        "cycles": state.get("cycles", 0),
        "tokens": state.get("tokens_used", 0),
        "latency_ms": round(latency_ms, 1),
        "failed_checks": _failed_checks(state),
        "stop_reason": state.get("stop_reason"),
        "error": state.get("error"),
        "run_id": state.get("run_id"),
    }


async def _run_one(graph: Any, experiment: str, pipeline: str, task: Task, repeat: int) -> dict[str, Any]:
    started = time.perf_counter()
    config = {"configurable": {"experiment": experiment, "task": task.id}, "run_name": f"eval:{task.id}"}
    try:
        state = await graph.ainvoke({"prompt": task.prompt, "examples": task.examples}, config)
    except Exception as exc:  # a run that cannot start is a row, not a crashed experiment
        state = {"status": "error", "error": f"{type(exc).__name__}: {exc}", "cycles": 0}
    return row_of(experiment, pipeline, task, repeat, state, (time.perf_counter() - started) * 1000)


async def arun_experiment(
    suite: str | Path | Sequence[Task] | None = None,
    pipelines: Sequence[str | Any] = ("replay",),
    *,
    repeat: int = 1,
    concurrency: int = 4,
    experiment_id: str | None = None,
    on_row: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Every task against every pipeline (a name in pipelines.toml or a `Pipeline`), `repeat` times, at most
    `concurrency` runs at once."""
    from dream_graph.graph import build_graph
    from dream_graph.pipelines import get_pipeline

    tasks = list(suite) if isinstance(suite, Sequence) and not isinstance(suite, str) else load_suite(suite)
    if not 1 <= repeat <= 100:
        raise ConfigError(f"repeat must be between 1 and 100, got {repeat}")
    if not 1 <= concurrency <= MAX_CONCURRENCY:
        raise ConfigError(f"concurrency must be between 1 and {MAX_CONCURRENCY}, got {concurrency}")
    if not pipelines:
        raise ConfigError("name at least one pipeline (see `dream-graph pipelines`)")
    chosen = [get_pipeline(p) if isinstance(p, str) else p for p in pipelines]
    graphs = {p.name: build_graph(pipeline=p) for p in chosen}
    if len(graphs) != len(chosen):
        raise ConfigError("pipeline names must be distinct in one experiment")
    experiment = experiment_id or f"exp-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    gate = asyncio.Semaphore(concurrency)

    async def one(pipeline: str, task: Task, k: int) -> dict[str, Any]:
        async with gate:
            row = await _run_one(graphs[pipeline], experiment, pipeline, task, k)
        if on_row is not None:
            on_row(row)
        return row

    # Interleaved, so a slow pipeline does not make the others look fast by running alone at the end.
    jobs = [one(p, t, k) for k in range(1, repeat + 1) for t in tasks for p in graphs]
    return list(await asyncio.gather(*jobs))


def run_experiment(*args: Any, **kwargs: Any) -> list[dict[str, Any]]:
    """Same as `arun_experiment`, from synchronous code (a notebook cell with no running loop, a script)."""
    from dream_graph.aio import run_sync

    return run_sync(arun_experiment(*args, **kwargs))


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return round(statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1], 1)


def summarize(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per pipeline, in the order the pipelines first appear."""
    by_pipeline: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_pipeline.setdefault(row["pipeline"], []).append(row)
    summary = []
    for pipeline, group in by_pipeline.items():
        n = len(group)
        first = sum(r["first_cycle_passed"] for r in group) / n
        final = sum(r["passed"] for r in group) / n
        latencies = sorted(r["latency_ms"] for r in group)
        failed = Counter(c for r in group for c in r["failed_checks"])
        summary.append(
            {
                "pipeline": pipeline,
                "runs": n,
                "first_cycle_pass_rate": round(first, 4),
                "pass_rate": round(final, 4),
                "repair_lift": round(final - first, 4),
                "mean_cycles": round(sum(r["cycles"] for r in group) / n, 3),
                "mean_tokens": round(sum(r["tokens"] or 0 for r in group) / n, 1),
                "latency_p50_ms": _percentile(latencies, 50),
                "latency_p95_ms": _percentile(latencies, 95),
                "top_failed_checks": [f"{name} ({count})" for name, count in failed.most_common(3)],
            }
        )
    return summary


def experiment_rows(store: Any, experiment: str) -> list[dict[str, Any]]:
    """An experiment's runs, read back from the run store, as the rows `run_experiment` returned (oldest first).
    Latency here is the run's recorded duration; a run still `running` or `interrupted` counts as not passed."""
    summaries = store.list_runs(experiment=experiment, limit=1_000_000)
    rows = []
    for summary in reversed(summaries):
        detail = store.get_run(summary["id"]) or {}
        cycles = detail.get("cycle_details") or []
        rows.append(
            {
                "experiment": experiment,
                "pipeline": summary["pipeline"],
                "task": summary["task"],
                "status": summary["status"],
                "passed": summary["status"] == "passed",
                "first_cycle_passed": bool(cycles) and cycles[0]["passed"] is True,
                "cycles": summary["cycles"] or 0,
                "tokens": summary["tokens_used"] or 0,
                "latency_ms": round(summary["duration_ms"] or 0.0, 1),
                "failed_checks": sorted(
                    {ev["evaluator"] for c in cycles for ev in c["evaluations"] if not ev["passed"]}
                ),
                "stop_reason": summary["stop_reason"],
                "run_id": summary["id"],
            }
        )
    return rows


def plot_experiment(summary: Sequence[dict[str, Any]], path: str | Path, *, title: str = "") -> Path:
    """Pipelines side by side: pass rate before and after repair, mean cycles, mean tokens (PNG, no display needed)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    names = [s["pipeline"] for s in summary]
    fig = Figure(figsize=(12, 4), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    fig.suptitle(title or "dream_graph experiment", fontsize=13)
    ax_pass, ax_cycles, ax_tokens = fig.subplots(1, 3)
    xs = range(len(names))
    width = 0.38
    first = ax_pass.bar([x - width / 2 for x in xs], [s["first_cycle_pass_rate"] * 100 for s in summary], width,
                        label="first cycle", color="tab:gray")
    final = ax_pass.bar([x + width / 2 for x in xs], [s["pass_rate"] * 100 for s in summary], width,
                        label="after repair", color="tab:green")
    ax_pass.bar_label(first, fmt="%.0f%%", padding=2)
    ax_pass.bar_label(final, fmt="%.0f%%", padding=2)
    ax_pass.set_ylim(0, 135)
    ax_pass.set_ylabel("pass rate (%)")
    ax_pass.set_title("Pass rate: first cycle vs after repair")
    ax_pass.legend(loc="upper center", ncols=2, frameon=False)
    for ax, key, label, colour in (
        (ax_cycles, "mean_cycles", "mean cycles (LLM generations)", "tab:blue"),
        (ax_tokens, "mean_tokens", "mean tokens per run", "tab:orange"),
    ):
        bars = ax.bar(list(xs), [s[key] for s in summary], color=colour)
        ax.bar_label(bars, fmt="%.1f" if key == "mean_cycles" else "%.0f", padding=2)
        ax.margins(y=0.15)
        ax.set_title(label)
    for ax in (ax_pass, ax_cycles, ax_tokens):
        ax.set_xticks(list(xs), names, rotation=15 if len(names) > 3 else 0)
    path = Path(path)
    fig.savefig(path)
    return path


__all__ = ["Task", "arun_experiment", "experiment_rows", "load_suite", "plot_experiment", "run_experiment", "summarize"]
