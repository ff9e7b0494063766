"""`dream-graph runs ...`: list, show, export and report the runs the graph recorded."""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import IO, Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from dream_graph.errors import ConfigError

runs_app = typer.Typer(help="Recorded runs: list, show, export (one line per cycle) and report.", no_args_is_help=True)
out = Console()

DB_HELP = "Run store to read (a file path or database URL); default DREAM_GRAPH_DB."


class ExportFormat(str, Enum):
    """Formats `runs export` writes, one line per cycle."""

    jsonl = "jsonl"
    csv = "csv"


def _fail(message: str) -> typer.Exit:
    from dream_graph.cli import fail_usage

    return fail_usage(message)


def open_store(db: str | None) -> Any:
    """The store to read, or a one-line usage error (recording off, bad URL, database unreachable)."""
    from sqlalchemy.exc import SQLAlchemyError

    from dream_graph.settings import get_settings
    from dream_graph.store import RunStore, store_url

    try:
        settings = get_settings() if db is None else get_settings().model_copy(update={"db": db})
        url = store_url(settings)
        if url is None:
            raise _fail("run recording is off (DREAM_GRAPH_DB=off); set DREAM_GRAPH_DB or pass --db to read a store")
        return RunStore.from_url(url)
    except ConfigError as exc:
        raise _fail(str(exc)) from None
    except SQLAlchemyError as exc:
        raise _fail(f"cannot open the run store: {type(exc).__name__}: {str(exc).splitlines()[0]}") from None


def _short(text: str | None, width: int = 60) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= width else text[: width - 1] + "…"


@runs_app.command("list")
def list_runs(
    limit: int = typer.Option(20, "--limit", "-n", min=1, max=10_000, help="Most runs to show (newest first)."),
    status: Optional[str] = typer.Option(None, "--status", help="Only runs with this status (passed, failed, error)."),
    as_json: bool = typer.Option(False, "--json", help="Print the runs as a JSON list."),
    db: Optional[str] = typer.Option(None, "--db", help=DB_HELP),
) -> None:
    """List recorded runs, newest first."""
    runs = open_store(db).list_runs(limit=limit, status=status)
    if as_json:
        sys.stdout.write(json.dumps(runs) + "\n")
        return
    if not runs:
        out.print("no runs recorded yet")
        return
    table = Table(title="Runs")
    for col in ("id", "finished", "status", "cycles", "model", "pipeline", "request"):
        table.add_column(col)
    for r in runs:
        colour = "green" if r["status"] == "passed" else "red"
        table.add_row(
            r["id"][:12],
            (r["finished_at"] or "")[:19],
            f"[{colour}]{r['status']}[/]",
            str(r["cycles"]),
            r["model"] or "-",
            r["pipeline"] or "-",
            _short(r["request"]),
        )
    out.print(table)


@runs_app.command("show")
def show_run(
    run_id: str = typer.Argument(..., help="Run id, or a unique prefix of at least 4 characters."),
    as_json: bool = typer.Option(False, "--json", help="Print everything recorded as one JSON object."),
    db: Optional[str] = typer.Option(None, "--db", help=DB_HELP),
) -> None:
    """Show one run: its request, every cycle's checks and findings, and the final code."""
    run = open_store(db).get_run(run_id)
    if run is None:
        raise _fail(f"no run {run_id!r} in the store; `dream-graph runs list` shows the ids")
    if as_json:
        sys.stdout.write(json.dumps(run) + "\n")
        return
    out.print(f"[bold]run {run['id']}[/]  thread {run['thread_id'] or '-'}", highlight=False)
    out.print(f"request: {run['request']}", markup=False, highlight=False)
    out.print(
        f"{run['status']} ({run['stop_reason']}) after {run['cycles']} cycle(s), model {run['model']}, "
        f"pipeline {run['pipeline'] or '-'}, {run['duration_ms'] or 0:.0f} ms",
        markup=False,
        highlight=False,
    )
    table = Table(title="Cycles")
    for col in ("cycle", "evaluator", "result", "ms", "findings"):
        table.add_column(col)
    for cycle in run["cycle_details"]:
        for ev in cycle["evaluations"] or [{"evaluator": "-", "passed": None, "duration_ms": None, "findings": []}]:
            result = {True: "[green]pass[/]", False: "[red]FAIL[/]", None: cycle["llm_error"] or "no reply"}[
                ev["passed"]
            ]
            found = "\n".join(f"[{f['rule']}] line {f['line']}: {f['message']}" for f in ev["findings"]) or "-"
            table.add_row(
                str(cycle["cycle"]), ev["evaluator"], result, f"{ev['duration_ms'] or 0:.1f}", _short(found, 120)
            )
    out.print(table)
    if run["error"]:
        out.print(f"error: {run['error']}", markup=False, highlight=False)
    if run["code"]:
        out.print("final code:", style="bold")
        out.print(run["code"], markup=False, highlight=False)


@contextmanager
def _output(path: Path | None) -> Iterator[IO[str]]:
    if path is None:
        yield sys.stdout
        return
    with path.open("w", encoding="utf-8", newline="") as handle:
        yield handle


def write_jsonl(records: Iterable[dict[str, Any]], handle: IO[str]) -> int:
    """One JSON object per line, nested fields kept nested."""
    n = 0
    for record in records:
        handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        n += 1
    return n


def write_csv(records: Iterable[dict[str, Any]], handle: IO[str]) -> int:
    """One row per cycle; nested fields (messages, findings, evaluations) as JSON text in their cell."""
    writer: csv.DictWriter[str] | None = None
    n = 0
    for record in records:
        row = {k: json.dumps(v, ensure_ascii=False) if isinstance(v, (list, dict)) else v for k, v in record.items()}
        if writer is None:
            writer = csv.DictWriter(handle, fieldnames=list(row))
            writer.writeheader()
        writer.writerow(row)
        n += 1
    return n


@runs_app.command("export")
def export_runs(
    fmt: ExportFormat = typer.Option(ExportFormat.jsonl, "--format", "-f", help="jsonl or csv, one line per cycle."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="File to write; default stdout."),
    db: Optional[str] = typer.Option(None, "--db", help=DB_HELP),
) -> None:
    """Export every cycle (prompt messages, reply, code, findings, tokens, latency) as a dataset."""
    store = open_store(db)
    writer = write_jsonl if fmt is ExportFormat.jsonl else write_csv
    try:
        with _output(output) as handle:
            n = writer(store.iter_cycles(), handle)
    except OSError as exc:
        raise _fail(f"cannot write {output}: {exc.strerror or exc}") from None
    Console(stderr=True).print(f"exported {n} cycle(s)", highlight=False)


@runs_app.command("report")
def report_runs(
    plot: Optional[Path] = typer.Option(None, "--plot", help="Also write a chart of the figures to this PNG file."),
    top: int = typer.Option(10, "--top", min=1, max=100, help="How many frequent findings to list."),
    as_json: bool = typer.Option(False, "--json", help="Print the figures as one JSON object."),
    db: Optional[str] = typer.Option(None, "--db", help=DB_HELP),
) -> None:
    """Pass rate per pipeline/model, cycles to pass, most frequent findings, median and p95 LLM latency."""
    from dream_graph.report import build_report, cycle_latencies, plot_report

    store = open_store(db)
    report = build_report(store, top=top)
    if plot is not None:
        try:
            plot_report(report, plot, latencies=cycle_latencies(store))
        except OSError as exc:
            raise _fail(f"cannot write {plot}: {exc.strerror or exc}") from None
    if as_json:
        sys.stdout.write(report.model_dump_json() + "\n")
    else:
        print_report(report)
    if plot is not None:
        Console(stderr=True).print(f"chart written to {plot}", highlight=False)


def print_report(report: Any) -> None:
    """The report as rich tables."""
    out.print(f"[bold]{report.runs}[/] run(s): " + ", ".join(f"{k} {v}" for k, v in sorted(report.by_status.items())))
    rates = Table(title="Pass rate per pipeline / model")
    for col in ("pipeline", "model", "runs", "passed", "pass rate"):
        rates.add_column(col)
    for r in report.pass_rates:
        rates.add_row(r.pipeline or "-", r.model or "-", str(r.runs), str(r.passed), f"{r.pass_rate:.0%}")
    out.print(rates)
    cycles = Table(title="Cycles to pass")
    cycles.add_column("cycles")
    cycles.add_column("runs")
    for c, n in sorted(report.cycles_to_pass.items()):
        cycles.add_row(str(c), str(n))
    out.print(cycles)
    findings = Table(title="Most frequent findings")
    for col in ("evaluator", "rule", "count", "runs"):
        findings.add_column(col)
    for f in report.top_findings:
        findings.add_row(f.evaluator, f.rule, str(f.count), str(f.runs))
    out.print(findings)
    lat = report.latency
    if lat.median_ms is None:
        out.print("LLM latency: not recorded")
    else:
        out.print(
            f"LLM latency over {lat.cycles_measured} cycle(s): median {lat.median_ms:.0f} ms, p95 {lat.p95_ms:.0f} ms"
        )
