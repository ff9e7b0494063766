"""`python -m benchmarks.mutation [MODULE ...]`: mutation testing of the modules that decide a run's outcome.

mutmut (configured under [tool.mutmut] in pyproject.toml) makes one small change at a time to those modules (a
flipped comparison, a dropped `abs`, an off-by-one...) in a copy under `mutants/` (git-ignored) and runs the unit tests
that reach the changed function; a change no test notices "survived". This prints the score per module: killed (or
timed out) out of the mutants that some test reaches. Not run in CI: a full run takes tens of minutes on 2 cores.

    python -m benchmarks.mutation                          # every configured module
    python -m benchmarks.mutation repair settings          # dream_graph/repair.py and dream_graph/settings.py
    python -m benchmarks.mutation --fresh --max-children 2 # forget earlier results; two test processes
    python -m benchmarks.mutation --survivors              # list what survived (then `mutmut show NAME`)
    python -m benchmarks.mutation store:reply sandbox:limit # only the functions whose names contain these words
    python -m benchmarks.mutation --slow runtime_check      # with the tests marked slow (sandboxes, real Aineko)
    PYTEST_ADDOPTS="--deselect tests/unit/test_x.py::test_y" python -m benchmarks.mutation repair

mutmut runs in a snapshot of the tree (`mutants/snapshot/`, git-ignored), so the tree may be edited while it runs;
each run re-syncs only the files that changed, and mutmut regenerates the mutants of changed functions only. Every
configured module is mutated (so `cd mutants/snapshot && mutmut show NAME` works for any of them); a run tests the
mutants of the modules asked for, with their TESTS. mutmut keeps each mutant's verdict; a second run only tests
mutants without one. After adding tests, `--retest-survivors` runs the survivors again. The clean test run must pass
first: skip a test that fails for unrelated reasons with PYTEST_ADDOPTS, which pytest reads in every run mutmut
starts. Plain `mutmut run` in the repository root also works, with every configured module and the unit tests.

Each module is tested by the test files that exercise it (TESTS below; the unit tests for a module not listed), so a
mutant of the API-key check runs the service's tests, not all 900: mutmut then picks, among those, the tests that
reach the mutated function.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import re
import shutil
import subprocess
import sys
import tomllib
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SNAPSHOT = ROOT / "mutants" / "snapshot"
COPIED = ("dream_graph", "tests", "benchmarks", "langgraph.json")
_MODULE = re.compile(r"^(?P<module>.+?)\.x(?:_|ǁ)")
KILLED = frozenset({"killed", "timeout"})
TESTS = {
    "dream_graph.repair": ["tests/unit/test_repair.py", "tests/unit/test_repair_messages.py", "tests/unit/test_graph_loop.py"],
    "dream_graph.evaluators.base": ["tests/unit/test_plugins.py", "tests/unit/test_graph_loop.py"],
    "dream_graph.evaluators.syntax": ["tests/unit/test_security.py", "tests/unit/test_graph_loop.py"],
    "dream_graph.evaluators.security": ["tests/unit/test_security.py"],
    "dream_graph.evaluators.lint": ["tests/unit/test_lint.py", "tests/unit/test_lint_paths.py"],
    "dream_graph.service.auth": ["tests/unit/test_auth.py", "tests/security/test_service_gate.py"],
    "dream_graph.service.webhooks": ["tests/security/test_service_webhooks.py"],
    "dream_graph.service.slack": ["tests/security/test_service_webhooks.py"],
    "dream_graph.service.limits": ["tests/security/test_service_gate.py"],
    "dream_graph.retrieval": ["tests/unit/test_retrieval.py", "tests/unit/test_retrieval_packing.py"],
    "dream_graph.store": ["tests/unit/test_store.py", "tests/unit/test_report.py"],
    "dream_graph.sandbox": ["tests/unit/test_sandbox.py", "tests/security/test_sandbox_limits.py"],
    "dream_graph.settings": ["tests/unit/test_settings.py"],
    "dream_graph.targets.aineko.config_check": ["tests/unit/test_config_check.py"],
    "dream_graph.targets.aineko.runtime_check": ["tests/unit/test_aineko_check.py"],
}
"""The test files that exercise each module (a mutant of it is run against these). The service's own tests
(test_server.py) run whole default graphs, sandboxed Aineko check included, so they stay out where focused tests
exist: a mutant of the gate, which every request passes, would otherwise cost minutes."""
UNREACHED = frozenset({"no tests", "skipped"})


def configured_modules() -> list[str]:
    """Dotted names of the modules [tool.mutmut] mutates (those that exist now)."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["mutmut"]
    paths = [ROOT / p for p in config["only_mutate"]]
    return [".".join(p.relative_to(ROOT).with_suffix("").parts) for p in paths if p.is_file()]


def module_for(short: str, known: list[str]) -> str:
    """`repair`, `service.auth` or `dream_graph.service.auth` -> the configured module it names."""
    short = short.partition(":")[0]
    matches = [m for m in known if m == short or m.endswith("." + short)]
    if len(matches) != 1:
        raise SystemExit(f"{short!r} names {len(matches)} configured modules; choose from: {', '.join(known)}")
    return matches[0]


def sync_snapshot(modules: list[str], slow: bool = False) -> None:
    """Copy the package and the tests into SNAPSHOT (only files whose bytes changed, so mutmut's per-file cache
    holds), and write a pyproject.toml whose [tool.mutmut] runs the TESTS of `modules`."""
    wanted: set[Path] = set()
    tests_changed = False
    for top in COPIED:
        for source in [ROOT / top] if (ROOT / top).is_file() else (ROOT / top).rglob("*"):
            if "__pycache__" in source.parts or not source.is_file():
                continue
            target = SNAPSHOT / source.relative_to(ROOT)
            wanted.add(target)
            if not target.is_file() or target.read_bytes() != source.read_bytes():
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, target)
                tests_changed |= top == "tests"
    for top in COPIED:  # files deleted from the tree leave the snapshot too
        for target in (SNAPSHOT / top).rglob("*") if (SNAPSHOT / top).is_dir() else []:
            if target.is_file() and "__pycache__" not in target.parts and target not in wanted:
                target.unlink()
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")  # every configured module stays mutated (so
    # `mutmut show` works for all of them); the run itself names the mutants of `modules` only
    if slow:  # the sandbox's and the real-framework check's own tests run real sandboxes: marked slow
        text = text.replace('"-m", "not slow", ', "", 1)
    tests = sorted({t for m in modules for t in TESTS.get(m, ["tests/unit"])})
    selection = ", ".join(f'"{t}"' for t in tests)
    text = re.sub(r"(?m)^pytest_add_cli_args_test_selection = .*$", f"pytest_add_cli_args_test_selection = [{selection}]",
                  text, count=1)
    target = SNAPSHOT / "pyproject.toml"
    if not target.is_file() or target.read_text(encoding="utf-8") != text or tests_changed:
        target.write_text(text, encoding="utf-8")
        # Other tests or another selection: which tests reach which function is measured again (verdicts are kept).
        (SNAPSHOT / "mutants" / "mutmut-stats.json").unlink(missing_ok=True)


def mutmut(*args: str) -> subprocess.CompletedProcess[str]:
    """The `mutmut` of this interpreter's environment, run in the snapshot (where its config is)."""
    exe = Path(sys.executable).with_name("mutmut")
    return subprocess.run([str(exe), *args], cwd=SNAPSHOT, text=True, check=False)


def results() -> dict[str, str]:
    """Every mutant mutmut has made so far, with its status (killed, survived, timeout, no tests, ...), read from the
    verdicts mutmut keeps beside each mutated file (`mutmut results` lists only the modules of the latest run)."""
    from mutmut.stats import status_by_exit_code

    found = {}
    for meta in (SNAPSHOT / "mutants").rglob("*.py.meta"):
        codes = json.loads(meta.read_text(encoding="utf-8")).get("exit_code_by_key", {})
        for name, code in codes.items():
            found[name] = status_by_exit_code.get(code, f"exit {code}")
    return found


def forget_unreached(patterns: list[str]) -> int:
    """Clear the "no tests" verdicts of the mutants matching `patterns`, so a run with more tests (`--slow`) tries
    them again; returns how many."""
    from mutmut.stats import status_by_exit_code

    forgotten = 0
    for meta in (SNAPSHOT / "mutants").rglob("*.py.meta"):
        data = json.loads(meta.read_text(encoding="utf-8"))
        codes = data.get("exit_code_by_key", {})
        stale = [n for n, c in codes.items()
                 if status_by_exit_code.get(c) == "no tests" and any(fnmatch.fnmatchcase(n, p) for p in patterns)]
        for name in stale:
            codes[name] = None
        if stale:
            meta.write_text(json.dumps(data), encoding="utf-8")
            forgotten += len(stale)
    return forgotten


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
    parser.add_argument("--slow", action="store_true", help="run the tests marked slow too (sandboxes, real Aineko)")
    args = parser.parse_args(argv)
    known = configured_modules()
    modules = list(dict.fromkeys(module_for(m, known) for m in args.modules)) or known
    # `module:word` -> the mutants of the functions and methods whose names contain `word`
    patterns = [f"{module_for(m, known)}.*{m.partition(':')[2]}*__mutmut_*" if ":" in m else f"{module_for(m, known)}.*"
                for m in args.modules] or [f"{m}.*" for m in modules]
    if args.fresh:
        shutil.rmtree(SNAPSHOT, ignore_errors=True)
    if not (args.survivors or args.report):
        sync_snapshot(modules, slow=args.slow)
        if args.slow:
            forget_unreached(patterns)
        names = patterns
        if args.retest_survivors:
            names = [n for n, s in results().items()
                     if s == "survived" and any(fnmatch.fnmatchcase(n, p) for p in patterns)]
        if names:
            mutmut("run", "--max-children", str(args.max_children), *names)
    statuses = results()
    if args.survivors:
        for name, status in sorted(statuses.items()):
            if status == "survived" and any(fnmatch.fnmatchcase(name, p) for p in patterns):
                print(name)
        return 0
    if any(":" in m for m in args.modules):  # score only the functions asked for
        statuses = {n: s for n, s in statuses.items() if any(fnmatch.fnmatchcase(n, p) for p in patterns)}
    table = scores(statuses, modules)
    print(f"{'module':45} {'killed':>7} {'survived':>9} {'unreached':>10} {'pending':>8} {'score':>7}")
    for module, row in table.items():
        score = "-" if row["score"] is None else f"{row['score']}%"
        print(f"{module:45} {row['killed']:>7} {row['survived']:>9} {row['unreached']:>10} {row['pending']:>8} {score:>7}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
