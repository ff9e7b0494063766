"""Read-only `/runs` endpoints over the run store: the list, one run, and the report's figures."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query
from sqlalchemy.exc import SQLAlchemyError

from dream_graph.errors import ConfigError
from dream_graph.report import Report, build_report
from dream_graph.service.auth import require_api_key
from dream_graph.store import RunStore, get_store


def run_store() -> RunStore:
    """The configured store, or 503 saying why there is none."""
    try:
        store = get_store()
    except (ConfigError, SQLAlchemyError) as exc:
        raise HTTPException(503, f"run store unavailable: {str(exc).splitlines()[0]}") from None
    if store is None:
        raise HTTPException(503, "run recording is off (DREAM_GRAPH_DB=off); set DREAM_GRAPH_DB to record runs")
    return store


router = APIRouter(prefix="/runs", tags=["runs"], dependencies=[Depends(require_api_key)])

# Handlers are plain `def`: FastAPI runs them in its thread pool, so database reads never block the event loop.


@router.get("", summary="Recorded runs, newest first")
def list_runs(
    limit: int = Query(50, ge=1, le=1000),
    offset: int = Query(0, ge=0),
    status: Literal["passed", "failed", "error", "running", "interrupted"] | None = None,
    pipeline: str | None = None,
    model: str | None = None,
    thread_id: str | None = None,
    experiment: str | None = None,
    store: RunStore = Depends(run_store),
) -> dict[str, Any]:
    """Run summaries (no messages or code), filterable by status, pipeline, model, thread or experiment."""
    runs = store.list_runs(
        limit=limit, offset=offset, status=status, pipeline=pipeline, model=model, thread_id=thread_id,
        experiment=experiment,
    )
    return {"runs": runs, "limit": limit, "offset": offset, "total": store.count_runs()}


@router.get("/report", summary="Pass rates, cycles to pass, frequent findings, LLM latency")
def report(
    top: int = Query(10, ge=1, le=100),
    experiment: str | None = Query(None, max_length=100, description="One experiment's pipelines side by side."),
    store: RunStore = Depends(run_store),
) -> Report | dict[str, Any]:
    """The same figures as `dream-graph runs report` (with `experiment`: as `runs report --experiment`)."""
    if experiment is None:
        return build_report(store, top=top)
    from dream_graph.eval import experiment_rows, summarize

    rows = experiment_rows(store, experiment)
    if not rows:
        raise HTTPException(404, f"no runs recorded under experiment {experiment!r}")
    return {"experiment": experiment, "runs": len(rows), "summary": summarize(rows)}


@router.get("/{run_id}", summary="One run with every cycle, evaluation and finding")
def show_run(run_id: str, store: RunStore = Depends(run_store)) -> dict[str, Any]:
    """Everything recorded about a run, by id or unique id prefix."""
    run = store.get_run(run_id)
    if run is None:
        raise HTTPException(404, f"no run {run_id!r}; GET /runs lists the ids")
    return run
