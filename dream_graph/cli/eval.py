"""`dream-graph eval`: run a task suite against pipelines and print how each one did."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Optional

import typer
from rich import box
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from dream_graph.errors import ConfigError

out = Console()
err = Console(stderr=True)

COLUMNS = (
    ("pipeline", "pipeline"),
    ("runs", "runs"),
    ("first_cycle_pass_rate", "pass@1"),
    ("pass_rate", "pass"),
    ("repair_lift", "lift"),
    ("mean_cycles", "cycles"),
    ("mean_tokens", "tokens"),
    ("latency_ms", "p50/p95 ms"),
    ("top_failed_checks", "failed checks"),
)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def summary_table(summary: list[dict[str, Any]], experiment: str) -> Table:
    """Per pipeline: pass rates before and after repair, the lift, cycles, tokens, latency, failing checks."""
    table = Table(title=f"Experiment {experiment}", box=box.SIMPLE_HEAD, pad_edge=False)
    for key, label in COLUMNS:  # numbers never wrap; the list of failing checks folds to fit 80 columns
        table.add_column(label, overflow="fold", no_wrap=key != "top_failed_checks", min_width=13 if key == "top_failed_checks" else None, justify="left" if key in ("pipeline", "top_failed_checks") else "right")
    for row in summary:
        cells = []
        for key, _ in COLUMNS:
            value = row.get(key)
            if key == "latency_ms":
                value = f"{_ms(row['latency_p50_ms'])}/{_ms(row['latency_p95_ms'])}"
            elif key == "mean_tokens":
                value = f"{value:.0f}"
            elif key.endswith("rate") or key == "repair_lift":
                value = f"{value:.0%}" if key != "repair_lift" else f"{value:+.0%}"
            elif isinstance(value, list):
                value = ", ".join(value) or "-"
            cells.append("-" if value is None else str(value))
        table.add_row(*cells)
    return table


def eval_command(
    suite: Optional[Path] = typer.Option(None, "--suite", help="Task suite (JSONL); default: the target's shipped suite."),
    pipeline: list[str] = typer.Option(["replay"], "--pipeline", "-p", help="Pipeline to evaluate (repeat the flag)."),
    repeat: int = typer.Option(1, "--repeat", "-k", min=1, max=100, help="Runs per task and pipeline."),
    concurrency: int = typer.Option(4, "--concurrency", "-c", min=1, max=32, help="Runs at once."),
    experiment: Optional[str] = typer.Option(None, "--experiment", help="Experiment id (default: a new one)."),
    as_json: bool = typer.Option(False, "--json", help="Print {experiment, summary, rows} as JSON, nothing else."),
) -> None:
    """Run every task of a suite against each pipeline; record every run under one experiment id."""
    from dream_graph.cli import fail_usage
    from dream_graph.eval import load_suite, run_experiment, summarize

    try:
        tasks = load_suite(suite)
    except ConfigError as exc:
        raise fail_usage(str(exc)) from None
    total = len(tasks) * len(pipeline) * repeat
    with Progress(
        TextColumn("[bold]eval[/]"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=err, disable=as_json or not err.is_terminal, transient=True,
    ) as progress:
        bar = progress.add_task("runs", total=total)
        try:
            rows = run_experiment(
                tasks, pipeline, repeat=repeat, concurrency=concurrency, experiment_id=experiment,
                on_row=lambda _row: progress.advance(bar),
            )
        except ConfigError as exc:
            raise fail_usage(str(exc)) from None
    experiment_id = rows[0]["experiment"] if rows else (experiment or "")
    summary = summarize(rows)
    if as_json:
        sys.stdout.write(json.dumps({"experiment": experiment_id, "summary": summary, "rows": rows}) + "\n")
        return
    out.print(summary_table(summary, experiment_id))
    out.print(f"{len(rows)} runs recorded under experiment [bold]{experiment_id}[/]; "
              f"compare with `dream-graph runs report --experiment {experiment_id} --plot FILE.png`", soft_wrap=True)
