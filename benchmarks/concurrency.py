"""Service concurrency: N concurrent POST /generate (2 cycles each) against a fake LLM with latency L, vs ideal 2 x L.

The service is the real `dream_graph.service.app:app`, served by uvicorn in its own process (so the event loop measured is
the service's alone), wrapped by `served_app` in a probe that records the loop's longest stall. The fake
OpenAI-compatible server runs in a thread of this process and answers every first attempt with a syntax error and
every repair request with clean code, so each run takes exactly two LLM calls however many are in flight.

Besides the ratio to the ideal, each row has the CPU the service (all its processes) and this harness used per
request, and the floor that CPU sets on a burst's wall time (all of it spread over every core): past the point where
that floor exceeds 2 x L, a burst is CPU-bound, and `ratio_vs_bound` says how close the service gets to that bound.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from benchmarks.common import percentile

LATENCY_S = 0.3
CYCLES = 2
CONCURRENCY = (1, 16, 64, 128)
SETUPS = ((0, 1), (2, 1), (0, 2))
"""(Bandit worker processes, uvicorn workers): one process with threads, with a Bandit pool, and two server processes."""
PROBE_PATH = "/_bench/loop"
TICK_S = 0.01
ROOT = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------- inside the service process


class LoopProbe:
    """ASGI wrapper: a ticker on the server's loop records how late `sleep(TICK_S)` wakes; GET/DELETE PROBE_PATH."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.max_stall_ms = 0.0
        self.ticks = 0
        self._task: asyncio.Task | None = None

    async def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            start = loop.time()
            await asyncio.sleep(TICK_S)
            self.max_stall_ms = max(self.max_stall_ms, (loop.time() - start - TICK_S) * 1000)
            self.ticks += 1

    def figures(self) -> dict[str, float]:
        """The longest stall since the last reset."""
        return {"max_stall_ms": round(self.max_stall_ms, 3), "ticks": self.ticks}

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._tick())
        if scope["type"] == "http" and scope["path"] == PROBE_PATH:
            if scope["method"] == "DELETE":
                self.max_stall_ms, self.ticks = 0.0, 0
            body = json.dumps(self.figures()).encode()
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send)


def served_app() -> LoopProbe:
    """uvicorn factory: the service's own module-level app, unchanged, behind the loop probe."""
    from dream_graph.service.app import app

    return LoopProbe(app)


# ---------------------------------------------------------------- the fake LLM


def _fake_llm(latency: float) -> Any:
    """A fake OpenAI server whose reply depends only on the request: first attempt broken, repair clean."""
    sys.path.insert(0, str(ROOT))
    from tests.fakes import CLEAN_REPLY, SYNTAX_ERROR_REPLY, FakeOpenAI

    def reply_for(request: dict[str, Any]) -> str:
        repairing = any(m.get("role") == "assistant" for m in request.get("messages") or [])
        return CLEAN_REPLY if repairing else SYNTAX_ERROR_REPLY

    class TwoCycleOpenAI(FakeOpenAI):
        def json_body(self, request: dict[str, Any], text: str) -> dict[str, Any]:
            return super().json_body(request, reply_for(request))

        def sse_events(self, request: dict[str, Any], text: str) -> tuple[list[str], list[str], list[str]]:
            return super().sse_events(request, reply_for(request))

    server = TwoCycleOpenAI(latency=latency)
    return server.start()


# ---------------------------------------------------------------- the service process


def tree_cpu_s(root: int) -> float:
    """CPU seconds used so far by process `root` and every live descendant (uvicorn workers, the Ruff server, Bandit
    worker processes), each with the children it has reaped (Ruff CLI runs): the whole service, from outside."""
    tick = os.sysconf("SC_CLK_TCK")
    parents: dict[int, int] = {}
    used: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # it exited meanwhile
            continue
        # After the command name: state, ppid, ... utime (11), stime, cutime, cstime (14), in clock ticks.
        parents[int(entry)] = int(fields[1])
        used[int(entry)] = sum(int(f) for f in fields[11:15]) / tick
    tree, frontier = {root}, {root}
    while frontier:
        frontier = {pid for pid, parent in parents.items() if parent in frontier} - tree
        tree |= frontier
    return sum(used.get(pid, 0.0) for pid in tree)


@contextmanager
def _service(llm_url: str, eval_processes: int, workers: int = 1) -> Iterator[Any]:
    """uvicorn in a child process (the integration tests' `running`), limits above the largest N, no run store."""
    sys.path.insert(0, str(ROOT))
    from tests.integration.serving import clean_environment, free_port, running

    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="dream_graph_bench_"))
    env = clean_environment(workdir)
    env.update(
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])),
        DREAM_GRAPH_MODEL="openai:gpt-bench",
        OPENAI_BASE_URL=llm_url,
        OPENAI_API_KEY="sk-bench",
        DREAM_GRAPH_DB="off",
        DREAM_GRAPH_DOCS_SOURCE="bundled",
        DREAM_GRAPH_MAX_CYCLES="3",
        DREAM_GRAPH_MAX_RETRIES="0",
        DREAM_GRAPH_MAX_CONCURRENT_RUNS=str(4 * max(CONCURRENCY)),
        DREAM_GRAPH_MAX_QUEUED_RUNS=str(4 * max(CONCURRENCY)),
        DREAM_GRAPH_EVAL_PROCESSES=str(eval_processes),
    )
    cmd = [sys.executable, "-m", "uvicorn", "benchmarks.concurrency:served_app", "--factory",
           "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning", "--no-access-log",
           "--workers", str(workers)]
    with running(cmd, env, workdir, port, ready_path="/healthz", log_dir=workdir) as server:
        yield server


# ---------------------------------------------------------------- the load


def _correct(response: httpx.Response) -> bool:
    """A 200 whose run passed after exactly two cycles."""
    if response.status_code != 200:
        return False
    body = response.json()
    return body.get("status") == "passed" and body.get("cycles") == CYCLES


async def _burst(client: httpx.AsyncClient, url: str, service_pid: int, n: int) -> dict[str, Any]:
    """N requests at once: wall time, per-request latency, correctness, the server loop's longest stall, and the CPU
    used by the service (all its processes) and by this harness (the load and the fake LLM) per request."""
    await client.delete(f"{url}{PROBE_PATH}")

    async def one(i: int) -> tuple[float, httpx.Response]:
        start = time.perf_counter()
        response = await client.post(f"{url}/generate", json={"prompt": f"a node that counts the words in stream {i}"})
        return time.perf_counter() - start, response

    service_before, harness_before = tree_cpu_s(service_pid), time.process_time()
    start = time.perf_counter()
    done = await asyncio.gather(*(one(i) for i in range(n)))
    wall = time.perf_counter() - start
    service_cpu, harness_cpu = tree_cpu_s(service_pid) - service_before, time.process_time() - harness_before
    probe = (await client.get(f"{url}{PROBE_PATH}")).json()
    latencies = [seconds * 1000 for seconds, _ in done]
    bad = [r for _, r in done if not _correct(r)]
    return {
        "wall_ms": round(wall * 1000, 1),
        "p50_ms": round(percentile(latencies, 50), 1),
        "p99_ms": round(percentile(latencies, 99), 1),
        "throughput_rps": round(n / wall, 2),
        "correct": n - len(bad),
        "first_error": None if not bad else f"HTTP {bad[0].status_code}: {bad[0].text[:300]}",
        "max_loop_stall_ms": probe["max_stall_ms"],
        "service_cpu_ms_per_request": round(service_cpu * 1000 / n, 1),
        "harness_cpu_ms_per_request": round(harness_cpu * 1000 / n, 1),
        # The wall time no scheduling can beat: all the CPU used, spread evenly over every core.
        "cpu_floor_ms": round((service_cpu + harness_cpu) * 1000 / (os.cpu_count() or 1), 1),
    }


async def _drive(url: str, service_pid: int, levels: tuple[int, ...], latency: float) -> list[dict[str, Any]]:
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:
        for _ in range(3):  # warm-up: docs, models, Bandit and the Ruff server loaded in every worker before measuring
            await _burst(client, url, service_pid, 4)
        rows = []
        for n in levels:
            figures = await _burst(client, url, service_pid, n)
            ideal_ms = CYCLES * latency * 1000
            bound_ms = max(ideal_ms, figures["cpu_floor_ms"])
            rows.append({"n": n, "ideal_ms": ideal_ms, **figures, "ratio": round(figures["wall_ms"] / ideal_ms, 2),
                         "ratio_vs_bound": round(figures["wall_ms"] / bound_ms, 2)})
        return rows


def run(quick: bool = False, latency: float = LATENCY_S) -> dict:
    """Every concurrency level in each setup: threads only, a 2-process Bandit pool, and two uvicorn workers."""
    levels = (1, 4) if quick else CONCURRENCY
    setups = ((0, 1),) if quick else SETUPS
    llm = _fake_llm(latency)
    rows: list[dict[str, Any]] = []
    try:
        for processes, workers in setups:
            with _service(llm.base_url, processes, workers) as server:
                for row in asyncio.run(_drive(server.url, server.pid, levels, latency)):
                    if workers > 1:  # the probe reads one worker's loop at random: not a figure for the whole
                        row.update(max_loop_stall_ms=None)
                    rows.append({"eval_processes": processes, "server_workers": workers, **row})
    finally:
        llm.stop()
    n64 = [r["ratio"] for r in rows if r["n"] == 64]
    return {
        "latency_ms": latency * 1000,
        "cycles": CYCLES,
        "rows": rows,
        "goal": "wall time at N=64 within 1.3x of ideal (2 x L)",
        "goal_met": bool(n64) and min(n64) <= 1.3,
    }
