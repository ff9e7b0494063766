"""The bundled reference teaches by example, and the offline model copies those examples: every complete sample must
run under the real Aineko 0.4.0 (pipeline YAML through Aineko's own config loader, node modules imported, constructed
as the runner does with `test=True` and run on sample inputs through `setup_test` + `run_test`/`run_test_yield`).

Samples are our own trusted code, so they run in a plain subprocess of the venv's Python (one for the whole set:
importing Aineko costs ~0.5 s). A block whose fence says ```python fragment or ```yaml fragment is a snippet, not a
sample; every other python block must be a complete module with an `AbstractNode` subclass.
"""

from __future__ import annotations

import ast
import asyncio
import importlib.util
import json
import re
import subprocess  # nosec B404 - runs our own samples with the test interpreter
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from dream_graph.context import Context
from dream_graph.evaluators import EvalInput, get_registry, is_blocking
from dream_graph.sources.bundled import load_bundled

HAS_AINEKO = importlib.util.find_spec("aineko") is not None
needs_aineko = pytest.mark.skipif(not HAS_AINEKO, reason="aineko is not installed (pip install -e .[dev])")

# The child: runs every job in one interpreter, each in its own temp dir under a wall-clock alarm; writes JSON results.
RUNNER = r"""
import importlib, itertools, json, os, signal, sqlite3, sys, tempfile, threading, time, traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import yaml
from aineko.core.config_loader import ConfigLoader
from aineko.core.deploy_config_loader import generate_deploy_config
from aineko.core.node import AbstractNode
from aineko.utils.imports import import_from_string

DATASET_TYPE = "aineko.datasets.kafka.KafkaDataset"


class Echo(BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"path": self.path, "auth": self.headers.get("Authorization")}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def on_alarm(signum, frame):
    raise TimeoutError("the node did not finish in time (a loop that never ends?)")


def fill(value, base):
    if isinstance(value, str):
        return value.replace("{FAKE_HTTP}", base)
    if isinstance(value, dict):
        return {k: fill(v, base) for k, v in value.items()}
    return value


def place_module(root, dotted, code):
    parts = dotted.split(".")
    folder = root
    for part in parts[:-1]:
        folder = folder / part
        folder.mkdir(exist_ok=True)
        (folder / "__init__.py").touch()
    (folder / f"{parts[-1]}.py").write_text(code, encoding="utf-8")
    for name in list(sys.modules):
        if name == parts[0] or name.startswith(parts[0] + "."):
            del sys.modules[name]
    importlib.invalidate_caches()


def run_node(job, node_name, class_path, inputs, outputs, params, pipeline):
    stage = "import"
    cls = import_from_string(class_path, kind="class")
    stage = "subclass"
    if not issubclass(cls, AbstractNode):
        raise TypeError(f"{class_path} does not subclass AbstractNode")
    stage = "construct"
    node = cls(node_name=node_name, pipeline_name=pipeline, poison_pill=None, test=True)
    stage = "setup_test"
    feed = {name: job.get("inputs", {}).get(name, job.get("default_payloads", [])) for name in inputs}
    node.setup_test(dataset_type=DATASET_TYPE, inputs=feed, outputs=list(outputs), params=params)
    stage = "run_test" if inputs else "run_test_yield"
    signal.alarm(job.get("timeout", 10))
    try:
        if inputs:
            out = node.run_test()
        else:
            for _ in itertools.islice(node.run_test_yield(), job.get("source_steps", 3)):
                pass
            out = {name: ds.get_test_output_values() for name, ds in node.outputs.items()}
    finally:
        signal.alarm(0)
    return {name: [m["message"] for m in messages] for name, messages in out.items()}


def run_job(job, base):
    started = time.monotonic()
    result = {"id": job["id"], "ok": False, "stage": "setup", "error": None, "runs": {}, "tests": [], "files": {}}
    work = Path(tempfile.mkdtemp(prefix="sample-"))
    os.chdir(work)
    sys.path.insert(0, str(work))
    try:
        for name, text in job.get("files", {}).items():
            (work / name).write_text(text, encoding="utf-8")
        if job.get("deploy"):
            result["stage"] = "deploy_config"
            generate_deploy_config(yaml.safe_load(job["deploy"]))
        nodes, pipeline = {}, "test"
        if job.get("yaml"):
            result["stage"] = "config"
            (work / "pipeline.yml").write_text(job["yaml"], encoding="utf-8")
            os.environ.update(job.get("env", {}))
            config = ConfigLoader(str(work / "pipeline.yml")).load_config()
            nodes, pipeline = config.pipeline.nodes, config.pipeline.name
            result["nodes"] = sorted(nodes)
        if job.get("module"):
            result["stage"] = "import"
            place_module(work, job["module_path"], job["module"])
            if job.get("yaml"):
                chosen = [
                    (n, c.class_name, c.inputs or [], c.outputs or [], c.node_params or {})
                    for n, c in nodes.items()
                    if job.get("all_nodes") or c.class_name.rsplit(".", 1)[-1] == job.get("class")
                ]
            else:
                chosen = []
            if not chosen and job.get("class"):
                path = f"{job['module_path']}.{job['class']}"
                chosen = [(job["class"].lower(), path, job.get("input_names", []), job.get("output_names", []), {})]
            if not chosen:
                raise LookupError("no node of this module to run")
            for node_name, class_path, inputs, outputs, params in chosen:
                params = fill({**params, **job.get("params", {})}, base)
                result["stage"] = f"node {node_name}"
                result["runs"][node_name] = run_node(job, node_name, class_path, inputs, outputs, params, pipeline)
            module = importlib.import_module(job["module_path"])
            for name in sorted(vars(module)):
                if name.startswith("test_") and callable(getattr(module, name)):
                    result["stage"] = f"module test {name}"
                    getattr(module, name)()
                    result["tests"].append(name)
        for name in job.get("read_files", []):
            result["files"][name] = (work / name).read_text(encoding="utf-8")
        for database, query in job.get("sql", []):
            with sqlite3.connect(str(work / database)) as db:
                result["files"][database] = [list(row) for row in db.execute(query)]
        result["ok"], result["stage"] = True, "done"
    except BaseException as exc:
        result["error"] = f"{type(exc).__name__}: {exc}"
        result["traceback"] = traceback.format_exc(limit=-4)
    finally:
        sys.path.remove(str(work))
        result["seconds"] = round(time.monotonic() - started, 3)
    return result


def main():
    jobs = json.loads(Path(sys.argv[1]).read_text(encoding="utf-8"))
    signal.signal(signal.SIGALRM, on_alarm)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    results = [run_job(job, base) for job in jobs]
    server.shutdown()
    Path(sys.argv[2]).write_text(json.dumps(results), encoding="utf-8")


main()
"""


def run_jobs(jobs: list[dict[str, Any]], tmp_path: Path, timeout: float = 120) -> dict[str, dict[str, Any]]:
    """Run the jobs under the real Aineko in one child interpreter; results by job id."""
    script, jobs_file, out_file = tmp_path / "runner.py", tmp_path / "jobs.json", tmp_path / "results.json"
    script.write_text(RUNNER, encoding="utf-8")
    jobs_file.write_text(json.dumps(jobs), encoding="utf-8")
    proc = subprocess.run(  # nosec B603 - fixed argv: this interpreter, our script
        [sys.executable, str(script), str(jobs_file), str(out_file)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=tmp_path,
        check=False,
    )
    assert proc.returncode == 0 and out_file.exists(), f"runner failed ({proc.returncode}):\n{proc.stderr[-3000:]}"
    return {r["id"]: r for r in json.loads(out_file.read_text(encoding="utf-8"))}


def failures(results: dict[str, dict[str, Any]]) -> str:
    """Every failed job with the stage, Aineko's error and the end of the traceback."""
    return "\n\n".join(
        f"{r['id']}: {r['stage']}: {r['error']}\n{r.get('traceback', '')}" for r in results.values() if not r["ok"]
    )


# --- the samples ---------------------------------------------------------------------------------------------------

_FENCE = re.compile(r"^```([\w+-]*)([^\n]*)\n(.*?)^```[ \t]*$", re.DOTALL | re.MULTILINE)


@dataclass(frozen=True)
class Sample:
    """One fenced block of the bundled reference."""

    path: str
    index: int
    lang: str
    info: str
    body: str

    @property
    def fragment(self) -> bool:
        """Marked as a snippet (```python fragment): shown in the docs, not run."""
        return "fragment" in self.info.split()

    @property
    def ident(self) -> str:
        return f"{self.path}#{self.index}"


def _samples() -> list[Sample]:
    return [
        Sample(doc.path, i, m.group(1).lower(), m.group(2), m.group(3))
        for doc in load_bundled("aineko").docs
        for i, m in enumerate(_FENCE.finditer(doc.text))
    ]


SAMPLES = _samples()
PARSED = {s.ident: yaml.safe_load(s.body) or {} for s in SAMPLES if s.lang == "yaml" and not s.fragment}
PYTHON = [s for s in SAMPLES if s.lang == "python" and not s.fragment]
PIPELINES = [s for s in SAMPLES if "pipeline" in PARSED.get(s.ident, {})]
DEPLOYS = [s for s in SAMPLES if "environments" in PARSED.get(s.ident, {})]


def node_classes(code: str) -> list[str]:
    """The classes a module defines that subclass `AbstractNode` (by name, as the docs import it)."""
    tree = ast.parse(code)
    return [
        n.name
        for n in tree.body
        if isinstance(n, ast.ClassDef)
        and any(getattr(b, "id", getattr(b, "attr", "")) == "AbstractNode" for b in n.bases)
    ]


@dataclass(frozen=True)
class Run:
    """How a sample node is fed in the test, and what it must write (dict payloads: only the keys given are compared)."""

    inputs: dict[str, list] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    expect: dict[str, list] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)
    read_files: tuple[str, ...] = ()
    sql: tuple[tuple[str, str], ...] = ()
    source_steps: int = 3


RUNS: dict[str, Run] = {
    "RunningTotal": Run({"numbers": [1, 2, "x", 3.5]}, expect={"totals": [1.0, 3.0, 6.5]}),
    "RunningAverage": Run(
        {"readings": [2, "bad", 4]}, expect={"averages": [{"average": 2.0, "count": 1}, {"average": 3.0, "count": 2}]}
    ),
    "QuoteFetcher": Run(
        {"symbols": ["ABC"]},
        params={"url": "{FAKE_HTTP}/quote"},
        expect={"quotes": [{"symbol": "ABC", "quote": {"path": "/quote?symbol=ABC"}}]},
    ),
    "Greeter": Run({"names": ["Ada", 7]}, expect={"greetings": ["Hi, Ada!", "Hi, 7!"]}),
    "ApiPoller": Run(params={"url": "{FAKE_HTTP}/status"}, expect={"api_data": [{"path": "/status"}]}),
    "CsvRows": Run(
        params={"path": "rows.csv"},
        files={"rows.csv": "a,b\n1,2\n3,4\n"},
        source_steps=10,
        expect={"rows": [{"a": "1", "b": "2"}, {"a": "3", "b": "4"}]},
    ),
    "CityWeather": Run(
        {"cities": ["Oslo"]},
        params={"url": "{FAKE_HTTP}/weather"},
        env={"WEATHER_API_KEY": "k3y"},
        expect={"city_weather": [{"city": "Oslo", "weather": {"path": "/weather?city=Oslo", "auth": "Bearer k3y"}}]},
    ),
    "TextStats": Run(
        {"texts": ["a b c", "", 42]},
        expect={
            "text_stats": [{"words": 3, "characters": 5}, {"words": 0, "characters": 0}, {"words": 1, "characters": 2}]
        },
    ),
    "ThresholdFilter": Run(
        {"readings": [{"temperature": 31}, {"temperature": 29}, {"temperature": "hot"}, 35, True]},
        expect={"high_readings": [{"temperature": 31}, 35]},
    ),
    "WindowAverage": Run(
        {"values": [1, 2, "x", 3]},
        params={"window_seconds": 10**9},  # one window: the last is written by _post_loop_hook
        expect={"averages": [{"average": 2.0, "count": 3}]},
    ),
    "TradeQuoteJoin": Run(
        {"quotes": [{"symbol": "A", "bid": 1}], "trades": [{"symbol": "A", "qty": 5}, {"symbol": "B", "qty": 1}, "x"]},
        expect={"trades_with_quotes": [{"trade": {"symbol": "A", "qty": 5}, "quote": {"symbol": "A", "bid": 1}}]},
    ),
    "SeverityRouter": Run(
        {"alerts": [{"severity": "critical", "id": 1}, {"severity": "low", "id": 2}, "text"]},
        expect={"critical_alerts": [{"id": 1}], "other_alerts": [{"id": 2}, "text"]},
    ),
    "JsonLinesSink": Run(
        {"events": [{"id": 1}, "two"]},
        params={"path": "events.jsonl"},
        read_files=("events.jsonl",),
    ),
    "ReadingStore": Run(
        {"readings": [{"t": 20.5}, 3]},
        params={"database": "readings.db"},
        sql=(("readings.db", "SELECT payload FROM readings ORDER BY rowid"),),
    ),
    "DropDuplicates": Run(
        {"events": [{"id": 1, "v": "a"}, {"id": 1, "v": "b"}, {"id": 2}, {"id": 1}, "z", "z"]},
        params={"max_ids": 1},  # id 1 is forgotten once id 2 arrives
        expect={"unique_events": [{"id": 1, "v": "a"}, {"id": 2}, {"id": 1}, "z"]},
    ),
    "UpperCase": Run({"texts": ["x", "Yz"]}, expect={"upper_texts": ["X", "YZ"]}),
    "Counter": Run(params={"start": 0}, expect={"numbers": [1, 2, 3]}),
}


def _literal_datasets(code: str, kind: str) -> list[str]:
    return list(dict.fromkeys(re.findall(rf"self\.{kind}\[\"(\w+)\"\]", code)))


def _pipeline_for(name: str) -> Sample | None:
    """The docs' pipeline that runs the class `name`, if there is one."""
    for sample in PIPELINES:
        nodes = PARSED[sample.ident]["pipeline"].get("nodes") or {}
        if any(str(n.get("class", "")).rsplit(".", 1)[-1] == name for n in nodes.values()):
            return sample
    return None


def sample_jobs() -> list[dict[str, Any]]:
    """A job per complete python sample (with its docs pipeline, if any), per pipeline and per deploy.yml sample."""
    jobs, paired = [], set()
    for sample in PYTHON:
        (name,) = node_classes(sample.body)
        run, pipeline = RUNS[name], _pipeline_for(name)
        job = {
            "id": sample.ident,
            "class": name,
            "module": sample.body,
            "module_path": "docs_sample",
            "inputs": run.inputs,
            "params": run.params,
            "env": run.env,
            "files": run.files,
            "read_files": list(run.read_files),
            "sql": [list(q) for q in run.sql],
            "source_steps": run.source_steps,
            "input_names": _literal_datasets(sample.body, "inputs"),
            "output_names": _literal_datasets(sample.body, "outputs"),
        }
        if pipeline is not None:
            paired.add(pipeline.ident)
            class_path = next(
                str(n["class"])
                for n in PARSED[pipeline.ident]["pipeline"]["nodes"].values()
                if str(n["class"]).endswith(f".{name}")
            )
            job.update(yaml=pipeline.body, module_path=class_path.rsplit(".", 1)[0])
        jobs.append(job)
    jobs += [
        {"id": s.ident, "yaml": s.body, "env": {v: "set-by-test" for v in re.findall(r"\{\$(\w+)\}", s.body)}}
        for s in PIPELINES
        if s.ident not in paired
    ]
    jobs += [{"id": s.ident, "deploy": s.body} for s in DEPLOYS]
    return jobs


def matches(expected: Any, got: Any) -> bool:
    """Equal, except that an expected dict only constrains the keys it names."""
    if isinstance(expected, dict) and isinstance(got, dict):
        return all(k in got and matches(v, got[k]) for k, v in expected.items())
    if isinstance(expected, list) and isinstance(got, list):
        return len(expected) == len(got) and all(matches(e, g) for e, g in zip(expected, got))
    return expected == got


# --- tests -----------------------------------------------------------------------------------------------------------


def test_the_docs_hold_enough_runnable_samples():
    assert len(PYTHON) >= 10
    assert len(PIPELINES) >= 10
    assert len(DEPLOYS) >= 1
    assert any(s.fragment for s in SAMPLES), "fragments are marked with ```python fragment"


def test_every_unmarked_python_block_is_one_complete_node_module_with_a_test_run():
    for sample in PYTHON:
        assert len(node_classes(sample.body)) == 1, f"{sample.ident}: mark it ```python fragment or make it a module"
        assert "from aineko import AbstractNode" in sample.body, sample.ident
    names = [node_classes(s.body)[0] for s in PYTHON]
    assert len(names) == len(set(names)), "sample class names must be unique (pipelines pair with them by name)"
    assert set(names) == set(RUNS), "every runnable sample needs a Run entry, and every Run entry a sample"


def test_the_docs_teach_the_04_api_only():
    for sample in SAMPLES:
        assert not re.search(r"\.(consumers|producers)\b|\.produce\(", sample.body), f"{sample.ident}: 0.3 API"
        assert "run_test(max_calls" not in sample.body and "aineko deploy" not in sample.body, sample.ident


def test_fragments_are_marked_and_are_not_modules():
    for sample in (s for s in SAMPLES if s.fragment):
        assert not node_classes(sample.body) if sample.lang == "python" else True, sample.ident


def rejected_jobs() -> list[dict[str, Any]]:
    """Variants of a good sample that real Aineko refuses: the 0.3 API, an unset {$VAR}, a class with no module part,
    a read that never returns."""
    base = next(j for j in sample_jobs() if j.get("class") == "RunningTotal")
    good_read = 'self.inputs["numbers"].read(how="next", timeout=1)'
    return [
        {**base, "id": "old-api", "module": base["module"].replace(good_read, 'self.consumers["numbers"].next()')},
        {**base, "id": "unset-var", "yaml": base["yaml"].replace("start: 0", 'start: "{$DG_UNSET_VAR}"')},
        {**base, "id": "no-module", "yaml": base["yaml"].replace("my_project.nodes.RunningTotal", "RunningTotal")},
        {
            **base,
            "id": "hang",
            "inputs": {"numbers": []},
            "timeout": 1,
            "module": base["module"].replace(good_read, 'self.inputs["numbers"].next()'),
        },
    ]


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> dict[str, dict[str, Any]]:
    """Every sample and every rejected variant, in one child interpreter (Aineko is imported once)."""
    return run_jobs(sample_jobs() + rejected_jobs(), tmp_path_factory.mktemp("samples"))


@needs_aineko
@pytest.mark.slow
def test_every_sample_runs_under_real_aineko(results):
    jobs = sample_jobs()
    assert failures({j["id"]: results[j["id"]] for j in jobs}) == ""
    by_class = {j["class"]: results[j["id"]] for j in jobs if "class" in j}
    for name, run in RUNS.items():
        (outputs,) = by_class[name]["runs"].values()
        for dataset, expected in run.expect.items():
            assert matches(expected, outputs[dataset]), f"{name}.{dataset}: expected {expected}, got {outputs[dataset]}"
    assert by_class["JsonLinesSink"]["files"]["events.jsonl"] == '{"id": 1}\n"two"\n'
    assert by_class["ReadingStore"]["files"]["readings.db"] == [['{"t": 20.5}'], ["3"]]
    assert by_class["UpperCase"]["tests"] == ["test_upper_case_writes_each_text_in_upper_case"]
    assert by_class["Counter"]["tests"] == ["test_counter_writes_consecutive_numbers"]
    # the logging dataset is there in every test run, and self.log reaches it
    assert any(m["level"] == "warning" for m in by_class["RunningTotal"]["runs"]["total"]["logging"])
    assert results[next(s.ident for s in DEPLOYS)]["ok"]
    assert sum(1 for j in jobs if "class" in j) >= 10


@needs_aineko
@pytest.mark.slow
def test_the_runner_reports_what_real_aineko_rejects(results):
    assert results["old-api"]["stage"] == "node total" and "'consumers'" in results["old-api"]["error"]
    assert results["unset-var"]["stage"] == "config" and "DG_UNSET_VAR was not found" in results["unset-var"]["error"]
    assert results["no-module"]["stage"] == "node total" and "...module.Class" in results["no-module"]["error"]
    assert results["hang"]["stage"] == "node total" and results["hang"]["error"].startswith("TimeoutError")
    assert not any(r["ok"] for r in (results[j["id"]] for j in rejected_jobs()))


def blocking(name: str, code: str) -> list[dict]:
    found = asyncio.run(get_registry()[name].evaluate(code, EvalInput(config_yaml=None, options=Context())))
    return [f for f in found if is_blocking(f)]


@pytest.mark.parametrize("sample", PYTHON, ids=[s.ident for s in PYTHON])
@pytest.mark.parametrize("evaluator", ["syntax", "security", "lint"])
def test_every_python_sample_passes_the_static_checks(evaluator, sample):
    assert blocking(evaluator, sample.body) == [], f"{sample.ident}: {sample.body[:200]}"
