"""Timing helpers and generated inputs shared by the benchmarks."""

from __future__ import annotations

import contextlib
import os
import statistics
import time
from collections.abc import Callable, Iterable
from pathlib import Path


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


CPUACCT_ROOT = Path("/sys/fs/cgroup/cpuacct")
"""cgroup v1's CPU accounting hierarchy (cgroup v2's `cpu.stat` is used when that is what the machine has)."""


class CpuGroup:
    """The CPU used by a process and everything it ever starts, exited and orphaned processes included.

    A sandbox that is killed before it reaps its own child leaves that child's CPU with init, so summing /proc over a
    process tree can lose (and even report negative) CPU; a cgroup counts every task that was ever in it. Without a
    writable cgroup, `seconds()` falls back to the /proc walk (`fallback`)."""

    def __init__(self, name: str, fallback: Callable[[], float]) -> None:
        self.fallback = fallback
        self.path: Path | None = None
        for root, usage in ((CPUACCT_ROOT, "cpuacct.usage"), (Path("/sys/fs/cgroup/unified"), "cpu.stat"),
                            (Path("/sys/fs/cgroup"), "cpu.stat")):
            path = root / "dream_graph_bench" / f"{name}-{os.getpid()}"
            try:
                path.mkdir(parents=True, exist_ok=True)
                if (path / usage).exists():
                    self.path, self.usage_file = path, usage
                    break
                path.rmdir()
            except OSError:
                continue

    def adopt(self, pids: Iterable[int]) -> bool:
        """Move these processes in (their later children follow them); False when there is no usable cgroup."""
        if self.path is None:
            return False
        try:
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    (self.path / "cgroup.procs").write_text(str(pid))
        except OSError:
            self.path = None
        return self.path is not None

    def seconds(self) -> float:
        """CPU seconds used by the group so far."""
        if self.path is None:
            return self.fallback()
        text = (self.path / self.usage_file).read_text()
        if self.usage_file == "cpuacct.usage":
            return int(text) / 1e9
        return int(dict(line.split() for line in text.splitlines())["usage_usec"]) / 1e6

    def close(self) -> None:
        """Remove the group (its processes must have exited, or moved back to the root)."""
        if self.path is None:
            return
        with contextlib.suppress(OSError):
            for pid in (self.path / "cgroup.procs").read_text().split():
                with contextlib.suppress(OSError):
                    (self.path.parent.parent / "cgroup.procs").write_text(pid)
            self.path.rmdir()
