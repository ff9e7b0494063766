"""`python -m benchmarks [--quick] [--only NAME ...]`: run every benchmark, print a table, write benchmarks/results.json."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

BENCHMARKS = ("qa_cost", "concurrency", "prompt_tokens", "cold_start")
RESULTS = Path(__file__).with_name("results.json")


def machine() -> dict:
    """What the figures were measured on."""
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
    }


def flatten(row: dict, prefix: str = "") -> dict:
    """Nested figures as `outer.inner` columns."""
    flat: dict = {}
    for key, value in row.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        elif not isinstance(value, list):
            flat[f"{prefix}{key}"] = value
    return flat


def tables(results: dict) -> list[Table]:
    """One table per benchmark: a row per configuration, a column per figure."""
    out = []
    for name, result in results["benchmarks"].items():
        rows = [flatten(r) for r in (result.get("rows") or [result])]
        table = Table(title=name)
        columns = list(dict.fromkeys(k for r in rows for k in r))
        for column in columns:
            table.add_column(column.replace("_ms", " ms").replace("median", "med"), overflow="fold")
        for row in rows:
            table.add_row(*(str(row.get(c, "")) for c in columns))
        out.append(table)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny configuration (smoke test)")
    parser.add_argument("--only", nargs="*", choices=BENCHMARKS, help="run only these")
    parser.add_argument("--output", type=Path, default=RESULTS, help="where to write the JSON results")
    args = parser.parse_args(argv)
    os.environ.setdefault("DREAM_GRAPH_DB", "off")
    results = {"machine": machine(), "quick": args.quick, "started": time.strftime("%Y-%m-%dT%H:%M:%S"), "benchmarks": {}}
    console = Console(width=max(160, Console().width))
    for name in args.only or BENCHMARKS:
        console.print(f"[bold]running {name}[/]")
        module = importlib.import_module(f"benchmarks.{name}")
        results["benchmarks"][name] = module.run(quick=args.quick)
    args.output.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    for table in tables(results):
        console.print(table)
    console.print(f"results written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
