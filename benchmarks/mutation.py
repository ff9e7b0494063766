"""`python -m benchmarks.mutation [MODULE ...]`: mutation testing of the modules that decide a run's outcome.

mutmut (configured under [tool.mutmut] in pyproject.toml) makes one small change at a time to those modules (a
flipped comparison, a dropped `abs`, an off-by-one...) in a copy under `mutants/` (git-ignored) and runs the unit tests
that reach the changed function; a change no test notices "survived". This prints the score per module: killed (or
timed out) out of the mutants that some test reaches. Not run in CI: a full run takes tens of minutes on 2 cores.

    python -m benchmarks.mutation                          # every configured module
    python -m benchmarks.mutation repair settings          # dream_graph/repair.py and dream_graph/settings.py
    python -m benchmarks.mutation --fresh --max-children 2 # forget earlier results; two test processes
    python -m benchmarks.mutation --survivors              # list what survived (then `mutmut show NAME`)
    PYTEST_ADDOPTS="--deselect tests/unit/test_x.py::test_y" python -m benchmarks.mutation repair

mutmut runs in a snapshot of the tree (`mutants/snapshot/`, git-ignored) whose [tool.mutmut] mutates only the modules
asked for: other modules may be edited meanwhile without mutmut regenerating them, and each run re-syncs only the files
that changed. mutmut keeps each mutant's verdict; a second run only tests mutants without one. After adding tests,
`--retest-survivors` runs the survivors again. The clean test run must pass first: skip a test that fails for
unrelated reasons with PYTEST_ADDOPTS, which pytest reads in every run mutmut starts. Plain `mutmut run` in the
repository root also works, with every configured module.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tomllib
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SNAPSHOT = ROOT / "mutants" / "snapshot"
COPIED = ("dream_graph", "tests")
_RESULT = re.compile(r"^\s+(?P<name>\S+): (?P<status>.+)$")
_MODULE = re.compile(r"^(?P<module>.+?)\.x(?:_|ǁ)")
KILLED = frozenset({"killed", "timeout"})
UNREACHED = frozenset({"no tests", "skipped"})


def configured_modules() -> list[str]:
    """Dotted names of the modules [tool.mutmut] mutates (those that exist now)."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["mutmut"]
    paths = [ROOT / p for p in config["only_mutate"]]
    return [".".join(p.relative_to(ROOT).with_suffix("").parts) for p in paths if p.is_file()]


def module_for(short: str, known: list[str]) -> str:
    """`repair`, `service.auth` or `dream_graph.service.auth` -> the configured module it names."""
    matches = [m for m in known if m == short or m.endswith("." + short)]
    if len(matches) != 1:
        raise SystemExit(f"{short!r} names {len(matches)} configured modules; choose from: {', '.join(known)}")
    return matches[0]


def sync_snapshot(modules: list[str]) -> None:
    """Copy the package and the tests into SNAPSHOT (only files whose bytes changed, so mutmut's per-file cache
    holds), and write a pyproject.toml whose [tool.mutmut] mutates only `modules`."""
    wanted: set[Path] = set()
    for top in COPIED:
        for source in (ROOT / top).rglob("*"):
            if "__pycache__" in source.parts or not source.is_file():
                continue
            target = SNAPSHOT / source.relative_to(ROOT)
            wanted.add(target)
            if not target.is_file() or target.read_bytes() != source.read_bytes():
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, target)
    for top in COPIED:  # files deleted from the tree leave the snapshot too
        for target in (SNAPSHOT / top).rglob("*"):
            if target.is_file() and "__pycache__" not in target.parts and target not in wanted:
                target.unlink()
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    paths = ", ".join(f'"{m.replace(".", "/")}.py"' for m in modules)
    text = re.sub(r"(?ms)^only_mutate = \[.*?^\]", f"only_mutate = [{paths}]", text, count=1)
    target = SNAPSHOT / "pyproject.toml"
    if not target.is_file() or target.read_text(encoding="utf-8") != text:
        target.write_text(text, encoding="utf-8")


def mutmut(*args: str) -> subprocess.CompletedProcess[str]:
    """The `mutmut` of this interpreter's environment, run in the snapshot (where its config is)."""
    exe = Path(sys.executable).with_name("mutmut")
    return subprocess.run([str(exe), *args], cwd=SNAPSHOT, text=True, capture_output=args[0] == "results", check=False)


def results() -> dict[str, str]:
    """Every mutant mutmut has made so far, with its status (killed, survived, timeout, no tests, ...)."""
    done = mutmut("results", "--all", "true")
    found = {}
    for line in done.stdout.splitlines():
        match = _RESULT.match(line)
        if match:
            found[match["name"]] = match["status"].strip()
    return found


def scores(statuses: dict[str, str], modules: list[str]) -> dict[str, dict[str, int | float | None]]:
    """Per module: killed, survived, not reached by any test, not run yet, and killed / (killed + survived) in %."""
    counts: dict[str, dict[str, int]] = {m: defaultdict(int) for m in modules}
    for name, status in statuses.items():
        match = _MODULE.match(name)
        if match and match["module"] in counts:
            key = "killed" if status in KILLED else "unreached" if status in UNREACHED else status
            counts[match["module"]][key] += 1
    table = {}
    for module, c in counts.items():
        scored = c["killed"] + c["survived"]
        score = round(100 * c["killed"] / scored, 1) if scored else None
        table[module] = {"killed": c["killed"], "survived": c["survived"], "unreached": c["unreached"],
                         "pending": c["not checked"], "score": score}
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.mutation", description=__doc__.splitlines()[0])
    parser.add_argument("modules", nargs="*", help="module names (default: every configured module)")
    parser.add_argument("--max-children", type=int, default=1, help="parallel test processes (default 1)")
    parser.add_argument("--fresh", action="store_true", help="forget every earlier verdict first")
    parser.add_argument("--retest-survivors", action="store_true", help="run the survivors again (after new tests)")
    parser.add_argument("--survivors", action="store_true", help="only list the survivors of earlier runs")
    parser.add_argument("--report", action="store_true", help="only print the scores of earlier runs")
    args = parser.parse_args(argv)
    known = configured_modules()
    modules = [module_for(m, known) for m in args.modules] or known
    if args.fresh:
        shutil.rmtree(SNAPSHOT, ignore_errors=True)
    if not (args.survivors or args.report):
        sync_snapshot(modules)
        names = [f"{m}.*" for m in modules]
        if args.retest_survivors:
            names = [n for n, s in results().items() if s == "survived" and _MODULE.match(n)["module"] in modules]
        if names:
            mutmut("run", "--max-children", str(args.max_children), *names)
    statuses = results()
    if args.survivors:
        for name, status in sorted(statuses.items()):
            if status == "survived" and _MODULE.match(name) and _MODULE.match(name)["module"] in modules:
                print(name)
        return 0
    table = scores(statuses, modules)
    print(f"{'module':45} {'killed':>7} {'survived':>9} {'unreached':>10} {'pending':>8} {'score':>7}")
    for module, row in table.items():
        score = "-" if row["score"] is None else f"{row['score']}%"
        print(f"{module:45} {row['killed']:>7} {row['survived']:>9} {row['unreached']:>10} {row['pending']:>8} {score:>7}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
