"""Where CPU-bound checks run: one check thread, or a process pool (DREAM_GRAPH_EVAL_PROCESSES) for every core."""

from __future__ import annotations

import asyncio
import contextvars
import multiprocessing
import threading
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from functools import partial
from typing import Any, TypeVar

from dream_graph.settings import get_settings

T = TypeVar("T")

_pool: ProcessPoolExecutor | None = None
_pool_lock = threading.Lock()
_CHECK_THREAD = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dream_graph-check")
"""CPU-bound checks hold the GIL, so more threads run them no sooner; one thread spares the GIL hand-offs (about 9%
of a run's CPU with the default six-thread pool, measured in-process with 64 concurrent runs)."""


def _process_pool() -> ProcessPoolExecutor | None:
    """The shared pool, started on first use; `spawn` so worker start-up is safe in a threaded server."""
    global _pool
    workers = get_settings().eval_processes
    if workers <= 0:
        return None
    with _pool_lock:
        if _pool is None:
            _pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))
        return _pool


def pool_size() -> int:
    """How many worker processes CPU-bound checks may spread over (0: they run in a thread)."""
    return get_settings().eval_processes


async def run_cpu(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a CPU-bound, picklable function off the event loop."""
    pool = _process_pool()
    if pool is None:
        context = contextvars.copy_context()  # as asyncio.to_thread does: the request id reaches the check's logs
        return await asyncio.get_running_loop().run_in_executor(_CHECK_THREAD, partial(context.run, fn, *args, **kwargs))
    return await asyncio.get_running_loop().run_in_executor(pool, partial(fn, *args, **kwargs))


def shutdown_pool() -> None:
    """Stop the worker processes (server shutdown, tests)."""
    global _pool
    with _pool_lock:
        if _pool is not None:
            _pool.shutdown(wait=True, cancel_futures=True)
            _pool = None
