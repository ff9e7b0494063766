"""Timing helpers and generated inputs shared by the benchmarks."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    index = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def summarise(samples_ms: list[float]) -> dict[str, float]:
    """Median and p95 in milliseconds."""
    return {"median_ms": round(statistics.median(samples_ms), 3), "p95_ms": round(percentile(samples_ms, 95), 3)}


def time_calls(fn: Callable[[], object], repeat: int, warmup: int = 2) -> list[float]:
    """Wall time of each call in milliseconds, after a warm-up."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    return samples


_NODE = '''

class Counter{i}(AbstractNode):
    """Counts messages on stream {i} and writes the running total."""

    def _pre_loop_hook(self, params: Optional[dict] = None) -> None:
        self.count = 0
        self.every = (params or {{}}).get("every", 1)

    def _execute(self, params: Optional[dict] = None) -> Optional[bool]:
        message = self.consumers["in_{i}"].next()
        if message is None:
            return None
        self.count += 1
        if self.count % self.every == 0:
            self.producers["out_{i}"].produce({{"count": self.count, "source": {i}}})
        return None
'''


def generated_module(lines: int) -> tuple[str, str]:
    """An Aineko module of about `lines` lines, and a pipeline YAML that uses every node in it."""
    code = "from typing import Optional\n\nfrom aineko import AbstractNode\n"
    i = 0
    while code.count("\n") < lines:
        code += _NODE.format(i=i)
        i += 1
    nodes = "".join(
        f"    counter_{n}:\n      class: generated.Counter{n}\n      inputs:\n        - in_{n}\n      outputs:\n        - out_{n}\n"
        for n in range(i)
    )
    datasets = "".join(
        f"    {kind}_{n}:\n      type: aineko.datasets.kafka.KafkaDataset\n" for n in range(i) for kind in ("in", "out")
    )
    return code, f"pipeline:\n  name: bench\n  nodes:\n{nodes}  datasets:\n{datasets}"
