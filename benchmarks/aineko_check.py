"""The `aineko` check's cost per cycle: a small valid node through real Aineko in bubblewrap, warm spare vs cold start.

Warm: the sandbox module keeps a spare sandbox with Aineko imported; between checks the benchmark waits until the
spare is ready (as a repair loop waits for the model's reply; `refill_ms` is how long that took, the model time that
hides it) and at least `gap` seconds. Cold: no spare (DREAM_GRAPH_SANDBOX_WARM=0), each check starts a sandbox and
imports Aineko. Run: `python -m benchmarks.aineko_check [--quick] [--gap S] [--repeat N]`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import select
import time

from benchmarks.common import summarise
from dream_graph.evaluators.base import EvalInput, is_blocking

NODE = """from typing import Optional

from aineko import AbstractNode


class Doubler(AbstractNode):
    def _execute(self, params: Optional[dict] = None) -> Optional[bool]:
        msg = self.inputs["numbers"].next()
        self.outputs["doubled"].write(msg["message"] * 2)
        return True
"""
CONFIG = """pipeline:
  name: bench
  nodes:
    doubler:
      class: nodes.Doubler
      inputs: [numbers]
      outputs: [doubled]
  datasets:
    numbers:
      type: aineko.datasets.kafka.KafkaDataset
    doubled:
      type: aineko.datasets.kafka.KafkaDataset
"""
EXAMPLES = [{"inputs": {"numbers": [1, 2, 3]}, "outputs": {"doubled": [2, 4, 6]}}]


def _spare_ready() -> bool:
    """Whether a spare sandbox for the check has imported Aineko (its status fd is readable). Benchmark-only peek."""
    from dream_graph import sandbox
    from dream_graph.targets.aineko.runtime_check import PRELOAD

    with sandbox._POOL_LOCK:
        fds = [s.status_fd for (_, preload), group in sandbox._POOL.items() if preload == PRELOAD for s in group]
    return bool(fds) and bool(select.select(fds, [], [], 0)[0])


async def _wait_for_spare(limit_s: float = 60.0) -> float:
    """Ms until a spare is ready (0 when spares are off)."""
    from dream_graph.settings import get_settings

    started = time.perf_counter()
    while get_settings().sandbox_warm and not _spare_ready() and time.perf_counter() - started < limit_s:
        await asyncio.sleep(0.02)
    return (time.perf_counter() - started) * 1000


async def _checks(repeat: int, gap: float, refills: list[float]) -> list[float]:
    """Wall ms of each check (the first, which may start the spare, is not counted)."""
    from dream_graph.sandbox import reset
    from dream_graph.targets.aineko.runtime_check import AinekoEvaluator

    evaluator, times = AinekoEvaluator(), []
    for index in range(repeat + 1):
        if index:
            refills.append(await _wait_for_spare())
        started = time.perf_counter()
        findings = await evaluator.evaluate(NODE, EvalInput(config_yaml=CONFIG, examples=EXAMPLES))
        elapsed = (time.perf_counter() - started) * 1000
        if any(is_blocking(f) for f in findings):
            raise RuntimeError(f"the benchmark node failed the check: {findings}")
        if index:
            times.append(elapsed)
        await asyncio.sleep(gap)
    reset()
    return times


def _measure(warm: bool, repeat: int, gap: float) -> dict:
    """One configuration, with the settings it needs."""
    from dream_graph.settings import get_settings

    os.environ["DREAM_GRAPH_SANDBOX_WARM"] = "1" if warm else "0"
    get_settings.cache_clear()
    refills: list[float] = []
    times = asyncio.run(_checks(repeat, gap if warm else 0.0, refills))
    row = {"mode": "warm spare" if warm else "cold start", "checks": len(times), **summarise(times)}
    if warm:
        row["refill_median_ms"] = summarise(refills)["median_ms"]
    return row


def run(quick: bool = False, gap: float = 0.5, repeat: int | None = None) -> dict:
    """Median and spread of the check's wall time, warm and cold."""
    repeat = repeat or (3 if quick else 20)
    return {"rows": [_measure(True, repeat, gap), _measure(False, repeat, gap)]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--gap", type=float, default=0.5, help="least seconds between warm checks")
    parser.add_argument("--repeat", type=int, default=None)
    args = parser.parse_args()
    print(json.dumps(run(args.quick, args.gap, args.repeat), indent=2))


if __name__ == "__main__":
    main()
