"""Where CPU-bound checks run: one dedicated thread by default (never the event loop), a process pool on request."""

import asyncio
import itertools
import threading
import time

from dream_graph.workers import run_cpu


def _where(pause: float) -> tuple[str, float, float]:
    start = time.perf_counter()
    time.sleep(pause)
    return threading.current_thread().name, start, time.perf_counter()


async def test_checks_run_off_the_loop_on_the_one_check_thread():
    loop_thread = threading.current_thread().name
    spans = await asyncio.gather(*(run_cpu(_where, 0.02) for _ in range(4)))
    names = {name for name, _, _ in spans}
    assert names == {next(iter(names))} and next(iter(names)).startswith("dream_graph-check")
    assert loop_thread not in names
    ordered = sorted((start, end) for _, start, end in spans)
    assert all(later[0] >= earlier[1] for earlier, later in itertools.pairwise(ordered)), "one check at a time"


async def test_the_loop_keeps_running_while_a_check_does():
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.005)
            ticks += 1

    ticker = asyncio.create_task(tick())
    await run_cpu(time.sleep, 0.1)
    ticker.cancel()
    assert ticks >= 5, f"the loop ticked {ticks} times during a 0.1 s check"


def test_the_service_sets_its_start_up_heap_aside_from_the_collector_and_collects_young_objects_less_often(monkeypatch):
    """A full collection during a burst scanned LangChain, LangGraph and Bandit each time (pauses up to 143 ms), and
    young collections every 700 allocations traced objects still in use (~2 ms of CPU per run)."""
    import gc
    import sys

    from fastapi.testclient import TestClient

    from dream_graph.evaluators.security import _bandit_config
    from dream_graph.service import app as app_module

    frozen = []
    monkeypatch.setattr(gc, "freeze", lambda: frozen.append(len(gc.get_objects())))
    _bandit_config.cache_clear()
    before = gc.get_threshold()
    with TestClient(app_module.create_app(graphs={})) as client:
        assert frozen, "gc.freeze() ran at start-up"
        assert _bandit_config.cache_info().currsize == 1, "Bandit was loaded before the heap was set aside"
        assert "langchain_openai" in sys.modules
        assert client.get("/healthz").status_code == 200
        assert gc.get_threshold() == (app_module.GC_YOUNG_THRESHOLD, *before[1:])  # young collections 14x rarer
    assert len(frozen) == 1
    assert gc.get_threshold() == before  # the process's own setting again once the service stops


async def test_a_check_sees_the_callers_context_variables():
    """As with asyncio.to_thread: a check's log lines carry the request id the caller's context holds."""
    import contextvars

    request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="none")
    request_id.set("req-42")
    assert await run_cpu(request_id.get) == "req-42"
