"""QA cost per cycle: dream_graph's default evaluator suite against the original app's way and the Bandit CLI."""

from __future__ import annotations

import ast
import asyncio
import os
import subprocess
import sys
import tempfile

from benchmarks.common import generated_module, summarise, time_calls

SIZES = (50, 200, 1000)


def original_way(code: str) -> None:
    """Aineko Dream: Bandit on a temp file with a new config and manager per request, then ast, one after the other."""
    from bandit.core import config as b_config
    from bandit.core import manager as b_manager

    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as fh:
        fh.write(code)
    try:
        manager = b_manager.BanditManager(b_config.BanditConfig(), "file")
        manager.discover_files([fh.name])
        manager.run_tests()
        manager.get_issue_list("LOW", "LOW")
    finally:
        os.unlink(fh.name)
    ast.parse(code)


def bandit_cli(code: str) -> None:
    """Bandit as a subprocess, the way a shell pipeline would call it."""
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as fh:
        fh.write(code)
    try:
        subprocess.run([sys.executable, "-m", "bandit", "-q", "-f", "json", fh.name], capture_output=True, check=False)
    finally:
        os.unlink(fh.name)


def suite_runner(names: list[str]):
    """One cycle of the evaluators as the graph runs them: concurrently, on one event loop."""
    from dream_graph.context import Context
    from dream_graph.evaluators import EvalInput, get_registry
    from dream_graph.evaluators.base import forget_parses

    registry = get_registry()
    evaluators = [registry[n] for n in names]
    options = Context(evaluators=names)
    loop = asyncio.new_event_loop()

    async def cycle(code: str, config_yaml: str) -> None:
        ctx = EvalInput(response="", config_yaml=config_yaml, options=options)
        await asyncio.gather(*(e.evaluate(code, ctx) for e in evaluators))

    def run(code: str, config_yaml: str) -> None:
        forget_parses()  # a cycle's shared parse is fair; one carried over from the last repeat is not
        loop.run_until_complete(cycle(code, config_yaml))

    return run


def _with_processes(n: int):
    """Point the evaluators at a pool of `n` worker processes (0: threads) for the calls that follow."""
    from dream_graph.settings import get_settings
    from dream_graph.workers import shutdown_pool

    shutdown_pool()
    os.environ["DREAM_GRAPH_EVAL_PROCESSES"] = str(n)
    get_settings.cache_clear()


def _each_alone(names: list[str], repeat: int) -> dict[str, float]:
    """Median of each evaluator on its own (threads), to see where a cycle's time goes."""
    code, config_yaml = generated_module(200)
    runners = {n: suite_runner([n]) for n in names}
    return {n: summarise(time_calls(lambda r=r: r(code, config_yaml), repeat))["median_ms"] for n, r in runners.items()}


def run(quick: bool = False) -> dict:
    """Median/p95 per size for the suite (threads, and a 2-process pool), the original way and the Bandit CLI."""
    from dream_graph.evaluators import get_registry
    from dream_graph.workers import shutdown_pool

    names = [n for n in ("syntax", "security", "lint", "config") if n in get_registry()]
    suite = suite_runner(names)
    repeat = 5 if quick else 40
    previous = os.environ.get("DREAM_GRAPH_EVAL_PROCESSES")
    rows = []
    try:
        for size in SIZES[:1] if quick else SIZES:
            code, config_yaml = generated_module(size)
            _with_processes(0)
            threads = summarise(time_calls(lambda: suite(code, config_yaml), repeat))
            _with_processes(2)
            pool = summarise(time_calls(lambda: suite(code, config_yaml), repeat, warmup=3))
            orig = summarise(time_calls(lambda: original_way(code), repeat))
            cli = summarise(time_calls(lambda: bandit_cli(code), max(3, repeat // 8), warmup=1))
            rows.append(
                {
                    "lines": code.count("\n"),
                    "suite_threads": threads,
                    "suite_2_processes": pool,
                    "original_way": orig,
                    "bandit_cli": cli,
                    "threads_vs_original": round(threads["median_ms"] / orig["median_ms"], 3),
                    "processes_vs_original": round(pool["median_ms"] / orig["median_ms"], 3),
                    "processes_vs_bandit_cli": round(pool["median_ms"] / cli["median_ms"], 3),
                }
            )
    finally:
        shutdown_pool()
        if previous is None:
            os.environ.pop("DREAM_GRAPH_EVAL_PROCESSES", None)
        else:
            os.environ["DREAM_GRAPH_EVAL_PROCESSES"] = previous
    return {
        "evaluators": names,
        "per_evaluator_ms_at_200_lines": _each_alone(names, repeat),
        "rows": rows,
        "goal": "full suite < 30 ms median at 200 lines, below the original at every size",
    }
