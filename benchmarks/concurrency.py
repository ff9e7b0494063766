"""Service concurrency against two bare peers: N concurrent POST /generate (2 cycles each) against a fake LLM with
latency L, for dream_graph and for the same two-cycle job (generate -> `ast.parse` -> fix -> generate) written as

- `langgraph`: a bare LangGraph StateGraph with ChatOpenAI, served by FastAPI;
- `openai`: plain AsyncOpenAI in a FastAPI handler.

Every stack is served the same way (uvicorn in its own process, behind `LoopProbe`, which records the loop's longest
stall) and driven the same way, against the same fake OpenAI-compatible server (a thread of this process), which
answers every first attempt with a syntax error and every repair request with clean Aineko 0.4.0 code, so each run
takes exactly two LLM calls however many are in flight. The bursts are interleaved (stack order rotated every round),
so a busy moment on the shared machine hits every stack alike; each figure is the median over the rounds.

dream_graph runs with the service's default checks, and with the evaluator set given per request (`variants`), e.g.
without the sandboxed `aineko` check. Each row has the wall time, the ratio to the ideal 2 x L, the CPU the service
(all its processes) and this harness used per request, and, for dream_graph, both as ratios to each peer.
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import json
import os
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import AsyncExitStack, ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
from pydantic import BaseModel

from benchmarks.common import CpuGroup, percentile

LATENCY_S = 0.3
CYCLES = 2
CONCURRENCY = (1, 16, 64)
ROUNDS = 3
PEERS = ("langgraph", "openai")
GOAL = {"wall_vs_langgraph": 1.25, "cpu_vs_langgraph": 1.6}
"""At N=64: dream_graph's wall time and service CPU per request as multiples of the bare LangGraph peer's."""
KEEP_ALIVE_S = 600
"""uvicorn's idle keep-alive (default 5 s) for every stack and for the fake LLM: a stack sits idle while the others run
their bursts, and a request sent on a connection the server is just closing fails (ReadError: a random request counted
wrong) or, towards the fake LLM, has to connect again; whether it did depended on how long the stack had idled."""
PROBE_PATH = "/_bench/loop"
TICK_S = 0.01
ROOT = Path(__file__).resolve().parent.parent
MODEL = "gpt-bench"
SYSTEM = "You write Aineko 0.4.0 nodes: one ```python block with the node and one ```yaml block with its pipeline."
FIX = "Your code does not parse: {error}. Restate the whole reply with the problem fixed."


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


_BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)


def syntax_error(reply: str) -> str | None:
    """The peers' whole check: the reply's python block parses, or the error that says why not."""
    match = _BLOCK.search(reply)
    if match is None:
        return "no ```python block"
    try:
        ast.parse(match.group(1))
    except SyntaxError as exc:
        return f"{exc.msg} (line {exc.lineno})"
    return None


class PeerRequest(BaseModel):
    """A peer's POST /generate body (at module level: FastAPI resolves the handler's annotations by name)."""

    prompt: str


def _peer_app(generate: Any) -> Any:
    """FastAPI with the endpoints every stack has here: POST /generate {"prompt"} and GET /healthz."""
    from fastapi import FastAPI

    app = FastAPI()

    @app.post("/generate")
    async def run(request: PeerRequest) -> dict[str, Any]:
        status, cycles = await generate(request.prompt)
        return {"status": status, "cycles": cycles}

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


def langgraph_peer() -> LoopProbe:
    """uvicorn factory: the two-cycle job as a bare LangGraph graph (generate -> check -> fix -> generate)."""
    from typing import Annotated, TypedDict

    from langchain_core.messages import HumanMessage, SystemMessage
    from langchain_openai import ChatOpenAI
    from langgraph.graph import END, START, StateGraph
    from langgraph.graph.message import add_messages

    # The functional form: class-body annotations would be strings here (`from __future__ import annotations`).
    State = TypedDict("State", {"messages": Annotated[list, add_messages], "cycles": int, "status": str})

    llm = ChatOpenAI(model=MODEL, temperature=0.1, max_tokens=2048, timeout=60, max_retries=0)

    async def generate(state: dict[str, Any]) -> dict[str, Any]:
        return {"messages": [await llm.ainvoke(state["messages"])], "cycles": state["cycles"] + 1}

    def check(state: dict[str, Any]) -> dict[str, Any]:
        error = syntax_error(state["messages"][-1].text)
        if error is None:
            return {"status": "passed"}
        if state["cycles"] >= CYCLES + 1:
            return {"status": "failed"}
        return {"status": "running", "messages": [HumanMessage(FIX.format(error=error))]}

    builder = StateGraph(State)
    builder.add_node("generate", generate)
    builder.add_node("check", check)
    builder.add_edge(START, "generate")
    builder.add_edge("generate", "check")
    builder.add_conditional_edges("check", lambda s: "generate" if s["status"] == "running" else END, ["generate", END])
    graph = builder.compile()

    async def run(prompt: str) -> tuple[str, int]:
        start = {"messages": [SystemMessage(SYSTEM), HumanMessage(prompt)], "cycles": 0, "status": "running"}
        state = await graph.ainvoke(start)
        return state["status"], state["cycles"]

    return LoopProbe(_peer_app(run))


def openai_peer() -> LoopProbe:
    """uvicorn factory: the two-cycle job as plain AsyncOpenAI calls in the handler."""
    from openai import AsyncOpenAI

    client = AsyncOpenAI(timeout=60, max_retries=0)

    async def run(prompt: str) -> tuple[str, int]:
        messages: list[dict[str, str]] = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": prompt}]
        for cycle in range(1, CYCLES + 2):
            reply = await client.chat.completions.create(
                model=MODEL, messages=messages, temperature=0.1, max_tokens=2048  # type: ignore[arg-type]
            )
            text = reply.choices[0].message.content or ""
            error = syntax_error(text)
            if error is None:
                return "passed", cycle
            messages += [{"role": "assistant", "content": text}, {"role": "user", "content": FIX.format(error=error)}]
        return "failed", CYCLES + 1

    return LoopProbe(_peer_app(run))


FACTORIES = {
    "dream_graph": "benchmarks.concurrency:served_app",
    "langgraph": "benchmarks.concurrency:langgraph_peer",
    "openai": "benchmarks.concurrency:openai_peer",
}


# ---------------------------------------------------------------- the fake LLM


def two_cycle_replies() -> tuple[str, str]:
    """(broken, clean): a reply whose python block does not parse, and one that passes every default check,
    the real-framework `aineko` check included."""
    sys.path.insert(0, str(ROOT))
    from tests.fakes import CLEAN_REPLY, SYNTAX_ERROR_REPLY

    return SYNTAX_ERROR_REPLY, CLEAN_REPLY


STREAM = re.compile(r"counts the words in stream (\d+)")
DOCSTRING = '"""Counts the words in each message."""'


def reply_for(request: dict[str, Any]) -> str:
    """First attempt broken, repair clean; the code names the request's stream (`payload(i)` asks for stream i), so
    no two requests of a burst get the same code and no check can answer from what it saw for another request."""
    broken, clean = two_cycle_replies()
    messages = request.get("messages") or []
    repairing = any(m.get("role") == "assistant" for m in messages)
    asked = next((m for m in map(STREAM.search, (str(m.get("content")) for m in messages)) if m), None)
    stream = asked.group(1) if asked else "?"
    reply = clean if repairing else broken
    return reply.replace(DOCSTRING, f'"""Counts the words in each message of stream {stream}."""')


def _fake_llm(latency: float) -> Any:
    """A fake OpenAI server whose reply depends only on the request (see `reply_for`)."""
    sys.path.insert(0, str(ROOT))
    from tests.fakes import FakeOpenAI

    class TwoCycleOpenAI(FakeOpenAI):
        keep_alive_s = KEEP_ALIVE_S  # as the services: an idle service's pooled connections stay usable
        record_requests = False  # kept, every request's 15 KB prompt would pile up in this process for the whole run

        def json_body(self, request: dict[str, Any], text: str) -> dict[str, Any]:
            return super().json_body(request, reply_for(request))

        def sse_events(self, request: dict[str, Any], text: str) -> tuple[list[str], list[str], list[str]]:
            return super().sse_events(request, reply_for(request))

    server = TwoCycleOpenAI(latency=latency)
    return server.start()


# ---------------------------------------------------------------- the service processes


def tree_cpu_s(root: int) -> float:
    """CPU seconds used so far by process `root` and every live descendant (uvicorn workers, the Ruff server, Bandit
    worker processes, sandboxes), each with the children it has reaped: the whole service, from outside."""
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
    return sum(used.get(pid, 0.0) for pid in descendants(root, parents))


def descendants(root: int, parents: dict[int, int] | None = None) -> set[int]:
    """`root` and every live process under it."""
    if parents is None:
        parents = {}
        for entry in filter(str.isdigit, os.listdir("/proc")):
            try:
                parents[int(entry)] = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
    tree, frontier = {root}, {root}
    while frontier:
        frontier = {pid for pid, parent in parents.items() if parent in frontier} - tree
        tree |= frontier
    return tree


@contextmanager
def _service(stack: str, llm_url: str, eval_processes: int = 0, workers: int = 1) -> Iterator[Any]:
    """One stack in uvicorn in a child process (the integration tests' `running`): the same command, environment and
    fake LLM for every stack; for dream_graph, limits above the largest N and no run store."""
    sys.path.insert(0, str(ROOT))
    from tests.integration.serving import clean_environment, free_port, running

    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix=f"dream_graph_bench_{stack}_"))
    env = clean_environment(workdir)
    env.update(
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])),
        OPENAI_BASE_URL=llm_url,
        OPENAI_API_KEY="sk-bench",
        DREAM_GRAPH_MODEL=f"openai:{MODEL}",
        DREAM_GRAPH_DB="off",
        DREAM_GRAPH_DOCS_SOURCE="bundled",
        DREAM_GRAPH_MAX_CYCLES=str(CYCLES + 1),
        DREAM_GRAPH_MAX_RETRIES="0",
        DREAM_GRAPH_MAX_CONCURRENT_RUNS=str(4 * max(CONCURRENCY)),
        DREAM_GRAPH_MAX_QUEUED_RUNS=str(4 * max(CONCURRENCY)),
        DREAM_GRAPH_EVAL_PROCESSES=str(eval_processes),
    )
    cmd = [sys.executable, "-m", "uvicorn", FACTORIES[stack], "--factory",
           "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning", "--no-access-log",
           "--workers", str(workers), "--timeout-keep-alive", str(KEEP_ALIVE_S)]
    with running(cmd, env, workdir, port, ready_path="/healthz", log_dir=workdir, timeout=300) as server:
        group = CpuGroup(stack, fallback=lambda: tree_cpu_s(server.pid))
        group.adopt(descendants(server.pid))  # what it starts from now on joins the group by itself
        server.cpu = group  # type: ignore[attr-defined]
        try:
            yield server
        finally:
            group.close()


# ---------------------------------------------------------------- the load


def _correct(response: httpx.Response) -> bool:
    """A 200 whose run passed after exactly two cycles."""
    if response.status_code != 200:
        return False
    body = response.json()
    return body.get("status") == "passed" and body.get("cycles") == CYCLES


def payload(i: int, evaluators: list[str] | None) -> dict[str, Any]:
    """Request i; dream_graph variants name their checks per request (`options.evaluators`), peers ignore none."""
    body: dict[str, Any] = {"prompt": f"a node that counts the words in stream {i}"}
    if evaluators is not None:
        body["options"] = {"evaluators": evaluators}
    return body


async def _burst(
    client: httpx.AsyncClient, url: str, cpu: CpuGroup, n: int, evaluators: list[str] | None = None
) -> dict[str, Any]:
    """N requests at once: wall time, per-request latency, correctness, the server loop's longest stall, and the CPU
    used by the service (all its processes) and by this harness (the load and the fake LLM) per request."""
    await client.delete(f"{url}{PROBE_PATH}")

    async def one(i: int) -> tuple[float, httpx.Response]:
        start = time.perf_counter()
        try:
            response = await client.post(f"{url}/generate", json=payload(i, evaluators))
        except httpx.HTTPError as exc:  # a dropped connection counts as a wrong answer, not a crashed benchmark
            response = httpx.Response(599, text=f"{type(exc).__name__}: {exc}")
        return time.perf_counter() - start, response

    service_before, harness_before = cpu.seconds(), time.process_time()
    start = time.perf_counter()
    done = await asyncio.gather(*(one(i) for i in range(n)))
    wall = time.perf_counter() - start
    service_cpu, harness_cpu = cpu.seconds() - service_before, time.process_time() - harness_before
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
        "service_cpu_ms_per_request": round(service_cpu * 1000 / n, 2),
        "harness_cpu_ms_per_request": round(harness_cpu * 1000 / n, 2),
        # The wall time no scheduling can beat: all the CPU used, spread evenly over every core.
        "cpu_floor_ms": round((service_cpu + harness_cpu) * 1000 / (os.cpu_count() or 1), 1),
    }


def _median_row(bursts: list[dict[str, Any]]) -> dict[str, Any]:
    """One row from a stack's rounds: the median of every figure, the worst correctness and its first error."""
    row: dict[str, Any] = {}
    for key in bursts[0]:
        values = [b[key] for b in bursts]
        if key == "correct":
            row[key] = min(values)
        elif key == "first_error":
            row[key] = next((v for v in values if v), None)
        else:
            row[key] = round(statistics.median(values), 2)
    return row


async def _drive(
    targets: dict[str, tuple[str, CpuGroup, list[str] | None]],
    levels: tuple[int, ...],
    rounds: int,
    latency: float,
    warmups: int = 3,
) -> list[dict[str, Any]]:
    """Warm every stack up, then per level `rounds` interleaved bursts per stack (order rotated each round)."""
    # One client (connection pool) per stack, its connections kept as long as the servers keep theirs. With one
    # shared pool, each request's connection lookup walked every stack's idle connections (a poll() each) until they
    # expired 5 s later, so a burst was slower the sooner it followed its own last one: the first of a round took up
    # to 3x the wall time of the last, and its service more CPU per request as the requests trickled in.
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None, keepalive_expiry=KEEP_ALIVE_S)
    names = list(targets)
    async with AsyncExitStack() as stack:
        clients = {name: await stack.enter_async_context(httpx.AsyncClient(timeout=600, limits=limits))
                   for name in names}
        for name in names:  # docs, models, Bandit, Ruff and sandboxes loaded in every service before measuring
            url, cpu, evaluators = targets[name]
            for _ in range(warmups):
                await _burst(clients[name], url, cpu, 4, evaluators)
        rows = []
        for n in levels:
            bursts: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
            for r in range(rounds):
                for name in names[r % len(names):] + names[: r % len(names)]:
                    url, cpu, evaluators = targets[name]
                    bursts[name].append(await _burst(clients[name], url, cpu, n, evaluators))
            ideal_ms = CYCLES * latency * 1000
            for name in names:
                figures = _median_row(bursts[name])
                per_round = {key: [b[key] for b in bursts[name]] for key in ("wall_ms", "service_cpu_ms_per_request")}
                rows.append({"stack": name, "n": n, "ideal_ms": ideal_ms, **figures,
                             "ratio": round(figures["wall_ms"] / ideal_ms, 2), "rounds": rounds,
                             "per_round": per_round})
        return rows


def paired_ratio(ours: list[float], theirs: list[float]) -> float:
    """The median over rounds of ours / theirs, each pair measured back to back: a shared VM's slow minute moves
    both figures of a pair, so it cancels out of the ratio (a ratio of two medians would keep it)."""
    return round(statistics.median(a / max(b, 0.01) for a, b in zip(ours, theirs, strict=True)), 2)


def peer_ratios(rows: list[dict[str, Any]]) -> None:
    """Add to each dream_graph row its wall time and service CPU per request as multiples of each peer's (same N),
    paired round by round."""
    peers = {(r["stack"], r["n"]): r for r in rows if r["stack"] in PEERS}
    for row in rows:
        if row["stack"] in PEERS:
            continue
        for peer in PEERS:
            other = peers.get((peer, row["n"]))
            if not other:
                continue
            for key, name in (("wall_ms", "wall"), ("service_cpu_ms_per_request", "cpu")):
                row[f"{name}_vs_{peer}"] = paired_ratio(row["per_round"][key], other["per_round"][key])


def default_variants() -> dict[str, list[str] | None]:
    """dream_graph with the service's default checks, and, when that set has the sandboxed `aineko` check, without it."""
    sys.path.insert(0, str(ROOT))
    from dream_graph.context import default_evaluators

    defaults = list(default_evaluators())
    variants: dict[str, list[str] | None] = {"dream_graph": None}
    if "aineko" in defaults:
        variants["dream_graph_no_aineko"] = [e for e in defaults if e != "aineko"]
    return variants


def run(
    quick: bool = False,
    latency: float = LATENCY_S,
    levels: tuple[int, ...] | None = None,
    rounds: int | None = None,
    variants: dict[str, list[str] | None] | None = None,
    peers: tuple[str, ...] = PEERS,
) -> dict:
    """dream_graph (each evaluator variant) and each peer, served side by side and driven in interleaved bursts."""
    levels = levels or ((1, 4) if quick else CONCURRENCY)
    rounds = rounds or (1 if quick else ROUNDS)
    if variants is None:  # the quick (smoke) run leaves out the slowest variant, the sandboxed `aineko` check
        variants = default_variants()
        if quick and len(variants) > 1:
            variants.pop("dream_graph")
    llm = _fake_llm(latency)
    try:
        with ExitStack() as stack:
            targets: dict[str, tuple[str, CpuGroup, list[str] | None]] = {}
            if variants:
                server = stack.enter_context(_service("dream_graph", llm.base_url))
                targets.update({name: (server.url, server.cpu, checks) for name, checks in variants.items()})
            for peer in peers:
                server = stack.enter_context(_service(peer, llm.base_url))
                targets[peer] = (server.url, server.cpu, None)
            accounting = {name: "cgroup" if cpu.path else "/proc tree" for name, (_, cpu, _) in targets.items()}
            rows = asyncio.run(_drive(targets, levels, rounds, latency, warmups=1 if quick else 3))
    finally:
        llm.stop()
    peer_ratios(rows)
    at_64 = [r for r in rows if r["n"] == 64 and r["stack"] not in PEERS and "wall_vs_langgraph" in r]
    return {
        "latency_ms": latency * 1000,
        "cycles": CYCLES,
        "rounds": rounds,
        "variants": variants,
        "cpu_accounting": accounting,
        "rows": rows,
        "goal": "at N=64, dream_graph's wall time within 1.25x of the bare LangGraph peer's and its service CPU per "
        "request within 1.6x",
        "goal_met": {r["stack"]: r["wall_vs_langgraph"] <= GOAL["wall_vs_langgraph"]
                     and r["cpu_vs_langgraph"] <= GOAL["cpu_vs_langgraph"] for r in at_64},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.concurrency", description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="*", help=f"concurrency levels (default {CONCURRENCY})")
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="interleaved bursts per stack and level")
    parser.add_argument("--evaluators", action="append", metavar="NAME=CHECK,CHECK",
                        help="a dream_graph variant with these checks (`default` = the service's); repeatable")
    parser.add_argument("--peers", default=",".join(PEERS), help="peers to run, comma-separated ('' for none)")
    parser.add_argument("--output", type=Path, help="also write the JSON here")
    args = parser.parse_args(argv)
    variants = None
    if args.evaluators:
        variants = {}
        for spec in args.evaluators:
            name, _, checks = spec.partition("=")
            variants[name] = None if checks in ("", "default") else checks.split(",")
    peers = tuple(p for p in args.peers.split(",") if p)
    result = run(levels=tuple(args.n) if args.n else None, rounds=args.rounds, variants=variants, peers=peers)
    text = json.dumps(result, indent=2)
    if args.output:
        args.output.write_text(text + "\n", encoding="utf-8")
    keys = ("stack", "n", "wall_ms", "ratio", "service_cpu_ms_per_request", "harness_cpu_ms_per_request",
            "max_loop_stall_ms", "correct", "wall_vs_langgraph", "cpu_vs_langgraph", "wall_vs_openai", "cpu_vs_openai")
    for row in result["rows"]:
        print("  ".join(f"{k}={row.get(k)}" for k in keys if k in row))
    print("goal met:", result["goal_met"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
