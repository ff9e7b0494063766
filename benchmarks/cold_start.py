"""Cold start: `dream-graph --help` and a first offline `generate`, against `python -c pass`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.common import summarise, time_calls


def run(quick: bool = False) -> dict:
    """Median wall time of each command and its ratio to starting a bare interpreter."""
    exe = shutil.which("dream-graph", path=str(Path(sys.executable).parent)) or "dream-graph"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DREAM_GRAPH_", "OPENAI_", "COHERE_"))}
    env["DREAM_GRAPH_DB"] = "off"
    cwd = tempfile.mkdtemp(prefix="dream_graph_bench_")
    repeat = 2 if quick else 8

    def cmd(*args: str):
        return lambda: subprocess.run(list(args), capture_output=True, env=env, cwd=cwd, check=True)

    baseline = summarise(time_calls(cmd(sys.executable, "-c", "pass"), repeat, warmup=1))
    help_ = summarise(time_calls(cmd(exe, "--help"), repeat, warmup=1))
    first = summarise(time_calls(cmd(exe, "generate", "a node that counts words", "--json"), repeat, warmup=1))
    return {
        "python_c_pass": baseline,
        "help": help_,
        "first_generate_offline": first,
        "help_vs_python": round(help_["median_ms"] / baseline["median_ms"], 2),
        "generate_vs_python": round(first["median_ms"] / baseline["median_ms"], 2),
    }
