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
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from dream_graph.errors import ConfigError

runs_app = typer.Typer(
    help="Recorded runs: list, show, export (one line per cycle) and report.", no_args_is_help=True, rich_markup_mode=None
)
out = Console()

DB_HELP = "Run store to read (a file path or database URL); default DREAM_GRAPH_DB."


class ExportFormat(str, Enum):
    """Formats `runs export` writes, one line per cycle."""

    jsonl = "jsonl"
    csv = "csv"


@contextmanager
def quiet_broken_pipe() -> Iterator[None]:
    """See `dream_graph.cli.quiet_broken_pipe` (imported late: the CLI package imports this module)."""
    from dream_graph.cli import quiet_broken_pipe as quiet

    with quiet():
        yield


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
        store = RunStore.from_url(url)
        store.mark_interrupted()  # runs a dead process left `running` are shown as what they are
        return store
    except ConfigError as exc:
        raise _fail(str(exc)) from None
    except SQLAlchemyError as exc:
        raise _fail(f"cannot open the run store: {type(exc).__name__}: {str(exc).splitlines()[0]}") from None
    except OSError as exc:  # e.g. a path under a file: DREAM_GRAPH_DB=/dev/null/runs.sqlite
        raise _fail(f"cannot open the run store at {exc.filename or db}: {exc.strerror or exc}; check DREAM_GRAPH_DB or --db") from None


SHORT_ID = 12
WIDE_COLUMNS = 200
STATUS_COLOURS = {"passed": "green", "running": "yellow", "interrupted": "magenta"}


def _short(text: str | None, width: int = 60) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= width else text[: width - 1] + "…"


@runs_app.command("list")
def list_runs(
    limit: int = typer.Option(20, "--limit", "-n", min=1, max=10_000, help="Most runs to show (newest first)."),
    status: Optional[str] = typer.Option(
        None, "--status", help="Only runs with this status (passed, failed, error, running, interrupted)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the runs as a JSON list."),
    wide: bool = typer.Option(False, "--wide", help="Full run ids (default: a 12-character prefix `runs show` takes)."),
    db: Optional[str] = typer.Option(None, "--db", help=DB_HELP),
) -> None:
    """List recorded runs, newest first."""
    runs = open_store(db).list_runs(limit=limit, status=status)
    if as_json:
        with quiet_broken_pipe():
            sys.stdout.write(json.dumps(runs) + "\n")
            sys.stdout.flush()
        return
    if not runs:
        out.print("no runs recorded yet")
        return
    # Ids and statuses are never cut; the other columns wrap, so the table fits 80 columns.
    id_width = 32 if wide else SHORT_ID
    table = Table(title="Runs", box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("id", no_wrap=True, min_width=id_width)
    table.add_column("finished", overflow="fold", min_width=10)
    table.add_column("status", no_wrap=True)
    table.add_column("cycles", no_wrap=True, justify="right")
    for col in ("model", "pipeline", "request"):
        table.add_column(col, overflow="fold")
    for r in runs:
        colour = STATUS_COLOURS.get(r["status"], "red")
        table.add_row(
            r["id"][:id_width],
            (r["finished_at"] or f"({r['status']})")[:19].replace("T", " "),
            f"[{colour}]{r['status']}[/]",
            str(r["cycles"]),
            r["model"] or "-",
            r["pipeline"] or "-",
            _short(r["request"]),
        )
    (Console(width=WIDE_COLUMNS) if wide else out).print(table)  # --wide: as wide as the content, not the terminal


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
        with quiet_broken_pipe():
            sys.stdout.write(json.dumps(run) + "\n")
            sys.stdout.flush()
        return
    out.print(f"[bold]run {run['id']}[/]  thread {run['thread_id'] or '-'}", highlight=False)
    out.print(f"request: {run['request']}", markup=False, highlight=False)
    out.print(
        f"{run['status']} ({run['stop_reason']}) after {run['cycles']} cycle(s), model {run['model']}, "
        f"pipeline {run['pipeline'] or '-'}, {run['duration_ms'] or 0:.0f} ms",
        markup=False,
        highlight=False,
    )
    table = Table(title="Cycles", box=box.SIMPLE_HEAD, pad_edge=False)
    for col in ("cycle", "evaluator", "result", "ms"):
        table.add_column(col, no_wrap=True)
    table.add_column("findings", overflow="fold")
    for cycle in run["cycle_details"]:
        for ev in cycle["evaluations"] or [{"evaluator": "-", "passed": None, "duration_ms": None, "findings": []}]:
            result = {True: "[green]pass[/]", False: "[red]FAIL[/]", None: cycle["llm_error"] or "no reply"}[
                ev["passed"]
            ]
            found = "\n".join(escape(f"[{f['rule']}] line {f['line']}: {f['message']}") for f in ev["findings"]) or "-"
            table.add_row(
                str(cycle["cycle"]), ev["evaluator"], result, f"{ev['duration_ms'] or 0:.1f}", _short(found, 120)
            )
    out.print(table)
    if run["error"]:
        out.print(f"error: {run['error']}", markup=False, highlight=False)
    if run["code"]:
        out.print("final code:", style="bold")
        out.file.flush()
        with quiet_broken_pipe():  # written as is: a wrapped line would break the code when copied
            sys.stdout.write(run["code"].rstrip("\n") + "\n")
            sys.stdout.flush()


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
    experiment: Optional[str] = typer.Option(
        None, "--experiment", help="Export this experiment's runs instead, one line per run (dream-graph eval)."
    ),
    db: Optional[str] = typer.Option(None, "--db", help=DB_HELP),
) -> None:
    """Export every cycle (prompt messages, reply, code, findings, tokens, latency) as a dataset."""
    store = open_store(db)
    writer = write_jsonl if fmt is ExportFormat.jsonl else write_csv
    if experiment is not None:
        records, unit = _experiment_rows(store, experiment), "run"
    else:
        records, unit = store.iter_cycles(), "cycle"
    try:
        with quiet_broken_pipe(), _output(output) as handle:
            n = writer(records, handle)
            handle.flush()
    except OSError as exc:
        raise _fail(f"cannot write {output or 'stdout'}: {exc.strerror or exc}") from None
    Console(stderr=True).print(f"exported {n} {unit}(s)", highlight=False)


def _experiment_rows(store: Any, experiment: str) -> list[dict[str, Any]]:
    """The experiment's rows, or a one-line error naming how to find experiment ids."""
    from dream_graph.eval import experiment_rows

    rows = experiment_rows(store, experiment)
    if not rows:
        raise _fail(f"no runs recorded under experiment {experiment!r}; `dream-graph eval` prints the id it used")
    return rows


@runs_app.command("report")
def report_runs(
    plot: Optional[Path] = typer.Option(None, "--plot", help="Also write a chart of the figures to this PNG file."),
    top: int = typer.Option(10, "--top", min=1, max=100, help="How many frequent findings to list."),
    as_json: bool = typer.Option(False, "--json", help="Print the figures as one JSON object."),
    experiment: Optional[str] = typer.Option(
        None, "--experiment", help="Compare the pipelines of one experiment (dream-graph eval) side by side."
    ),
    db: Optional[str] = typer.Option(None, "--db", help=DB_HELP),
) -> None:
    """Pass rate per pipeline/model, cycles to pass, most frequent findings, median and p95 LLM latency."""
    from dream_graph.report import build_report, cycle_latencies, plot_report

    store = open_store(db)
    if experiment is not None:
        _report_experiment(store, experiment, plot, as_json)
        return
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


def _report_experiment(store: Any, experiment: str, plot: Path | None, as_json: bool) -> None:
    """Per pipeline: pass rate before and after repair, lift, cycles, tokens, latency; optionally the chart."""
    from dream_graph.cli.eval import summary_table
    from dream_graph.eval import plot_experiment, summarize

    summary = summarize(_experiment_rows(store, experiment))
    if plot is not None:
        try:
            plot_experiment(summary, plot, title=f"Experiment {experiment}")
        except OSError as exc:
            raise _fail(f"cannot write {plot}: {exc.strerror or exc}") from None
    if as_json:
        sys.stdout.write(json.dumps({"experiment": experiment, "summary": summary}) + "\n")
    else:
        out.print(summary_table(summary, experiment))
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
