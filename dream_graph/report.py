"""Figures over the run store (pass rates, cycles to pass, frequent findings, LLM latency) and a chart of them."""

from __future__ import annotations

import math
import statistics
from pathlib import Path

from pydantic import BaseModel
from sqlalchemy import case, desc, func, select
from sqlalchemy.orm import Session

from dream_graph.store import INTERRUPTED, Cycle, FindingRow, Run, RunStore

UNFINISHED = ("running", INTERRUPTED)
"""Statuses of runs with no outcome: counted in `runs` and `by_status`, left out of the pass rates."""


class PassRate(BaseModel):
    """How often one pipeline/model pair ends `passed` (of its runs that ended)."""

    pipeline: str | None
    model: str | None
    runs: int
    passed: int
    pass_rate: float


class FindingCount(BaseModel):
    """How often a rule fired, over all cycles, and in how many runs."""

    evaluator: str
    rule: str
    count: int
    runs: int


class Latency(BaseModel):
    """LLM time per cycle (all calls of the cycle, retries included); None when nothing was measured."""

    cycles_measured: int
    median_ms: float | None
    p95_ms: float | None


class Report(BaseModel):
    """The figures `runs report`, `GET /runs/report` and notebook 03 show."""

    runs: int
    by_status: dict[str, int]
    stop_reasons: dict[str, int]
    pass_rates: list[PassRate]
    cycles_to_pass: dict[int, int]
    top_findings: list[FindingCount]
    latency: Latency


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile: always one of the measured values, so small samples stay honest."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def build_report(store: RunStore, *, top: int = 10) -> Report:
    """Compute every figure with portable SQL (GROUP BY on the store's tables)."""
    passed = func.sum(case((Run.status == "passed", 1), else_=0))
    with Session(store.engine) as session:
        total = session.scalar(select(func.count()).select_from(Run)) or 0
        by_status = dict(session.execute(select(Run.status, func.count()).group_by(Run.status)).all())
        stops = session.execute(select(Run.stop_reason, func.count()).group_by(Run.stop_reason)).all()
        rates = session.execute(  # over ended runs: one still going or interrupted says nothing of the model
            select(Run.pipeline, Run.model, func.count(), passed)
            .where(Run.status.not_in(UNFINISHED))
            .group_by(Run.pipeline, Run.model)
            .order_by(Run.pipeline, Run.model)
        ).all()
        to_pass = session.execute(
            select(Run.cycles, func.count()).where(Run.status == "passed").group_by(Run.cycles).order_by(Run.cycles)
        ).all()
        count = func.count(FindingRow.id).label("n")
        findings = session.execute(
            select(FindingRow.evaluator, FindingRow.rule, count, func.count(func.distinct(FindingRow.run_id)))
            .group_by(FindingRow.evaluator, FindingRow.rule)
            .order_by(desc("n"), FindingRow.rule)
            .limit(top)
        ).all()
    latencies = cycle_latencies(store)
    return Report(
        runs=int(total),
        by_status={str(k): int(v) for k, v in by_status.items()},
        stop_reasons={str(k): int(v) for k, v in stops if k is not None},
        pass_rates=[
            PassRate(pipeline=p, model=m, runs=int(n), passed=int(ok or 0), pass_rate=round(int(ok or 0) / n, 4))
            for p, m, n, ok in rates
        ],
        cycles_to_pass={int(c): int(n) for c, n in to_pass},
        top_findings=[FindingCount(evaluator=e, rule=r, count=int(n), runs=int(k)) for e, r, n, k in findings],
        latency=Latency(
            cycles_measured=len(latencies),
            median_ms=statistics.median(latencies) if latencies else None,
            p95_ms=percentile(latencies, 95),
        ),
    )


def _label(rate: PassRate) -> str:
    return f"{rate.pipeline or '-'} / {rate.model or '-'}"


def plot_report(report: Report, path: str | Path, *, latencies: list[float] | None = None) -> Path:
    """A 2x2 chart (pass rate, cycles to pass, top findings, latency) as a PNG; Agg canvas, no display needed."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(12, 8), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    fig.suptitle(f"dream_graph runs: {report.runs} recorded", fontsize=14)
    ax_rate, ax_cycles, ax_find, ax_lat = fig.subplots(2, 2).flat

    labels = [_label(r) for r in report.pass_rates]
    bars = ax_rate.barh(labels, [r.pass_rate * 100 for r in report.pass_rates], color="tab:green")
    ax_rate.bar_label(bars, labels=[f"{r.passed}/{r.runs}" for r in report.pass_rates], padding=3)
    ax_rate.set_xlim(0, 115)
    ax_rate.set_xlabel("pass rate (%)")
    ax_rate.set_title("Pass rate per pipeline / model")
    ax_rate.invert_yaxis()

    cycles = sorted(report.cycles_to_pass)
    bars = ax_cycles.bar([str(c) for c in cycles], [report.cycles_to_pass[c] for c in cycles], color="tab:blue")
    ax_cycles.bar_label(bars, padding=2)
    ax_cycles.margins(y=0.12)
    ax_cycles.set_xlabel("cycles (LLM generations) until passed")
    ax_cycles.set_ylabel("runs")
    ax_cycles.set_title("Cycles to pass")

    names = [f"{f.evaluator}:{f.rule}" for f in report.top_findings]
    bars = ax_find.barh(names, [f.count for f in report.top_findings], color="tab:red")
    ax_find.bar_label(bars, padding=2)
    ax_find.margins(x=0.1)
    ax_find.set_xlabel("findings (all cycles)")
    ax_find.set_title("Most frequent findings by rule")
    ax_find.invert_yaxis()

    lat = report.latency
    ax_lat.set_title("LLM latency per cycle")
    if latencies:
        ax_lat.hist(latencies, bins=min(20, max(5, len(latencies) // 2)), color="tab:gray")
        ax_lat.set_xlabel("ms")
        ax_lat.set_ylabel("cycles")
        ax_lat.yaxis.set_major_locator(MaxNLocator(integer=True))
    for value, name, colour in ((lat.median_ms, "median", "tab:blue"), (lat.p95_ms, "p95", "tab:red")):
        if value is not None:
            ax_lat.axvline(value, color=colour, linestyle="--", label=f"{name} {value:.4g} ms")
    if lat.median_ms is not None:
        ax_lat.legend()
    else:
        ax_lat.text(0.5, 0.5, "no latency recorded", ha="center", va="center", transform=ax_lat.transAxes)
        ax_lat.set_xticks([])
        ax_lat.set_yticks([])
    ax_cycles.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax_find.xaxis.set_major_locator(MaxNLocator(integer=True))
    for ax in (ax_rate, ax_cycles, ax_find):
        if not ax.has_data():
            ax.text(0.5, 0.5, "no data yet", ha="center", va="center", transform=ax.transAxes)
            ax.set_xticks([])
            ax.set_yticks([])

    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png")
    return out


def cycle_latencies(store: RunStore) -> list[float]:
    """Every measured per-cycle LLM latency, for the histogram."""
    with Session(store.engine) as session:
        return [float(v) for v in session.scalars(select(Cycle.latency_ms).where(Cycle.latency_ms.is_not(None)))]
