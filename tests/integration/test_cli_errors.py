"""The mistakes a user makes at the `dream-graph` command, at 80 columns (the width off a TTY): one line on stderr
that says what to change, the right exit status, tables and code that fit or stay whole."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dream_graph.store import RunStore

EXE = shutil.which("dream-graph", path=str(Path(sys.executable).parent)) or "dream-graph"
PROMPT = "a node that counts words in each message"
LONG_LINE = "total = " + " + ".join(str(i) for i in range(40))  # 165 characters: wrapped, it would break when copied

pytestmark = pytest.mark.slow


def env_for(tmp_path: Path, **values: str) -> dict[str, str]:
    """No keys or settings of the developer; 80 columns; the store under `tmp_path` unless `values` say otherwise."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DREAM_GRAPH_", "OPENAI_", "COHERE_", "GITHUB_"))}
    base.update(COLUMNS="80", DREAM_GRAPH_DB=str(tmp_path / "runs.sqlite"), DREAM_GRAPH_CACHE_DIR=str(tmp_path / "c"))
    return {**base, **values}


def cli(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [EXE, *args], capture_output=True, text=True, timeout=180, env=env_for(tmp_path, **env), cwd=tmp_path, check=False
    )


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    """The whole of stderr, asserted to be one `error:` line (no traceback, no wrapped second line)."""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: "), lines[0]
    return lines[0]


def test_resume_of_an_unknown_thread(tmp_path):
    proc = cli(tmp_path, "generate", "--resume", "--thread", "nosuch")

    assert proc.returncode == 2
    line = one_error_line(proc)
    assert "thread 'nosuch' has no interrupted run" in line and '--thread nosuch' in line


def test_runs_list_with_a_store_path_under_a_file(tmp_path):
    proc = cli(tmp_path, "runs", "list", DREAM_GRAPH_DB="/dev/null/runs.sqlite")

    assert proc.returncode == 2
    assert "cannot open the run store at /dev/null" in one_error_line(proc)


def test_generate_with_an_unwritable_store_passes_with_one_warning(tmp_path):
    proc = cli(tmp_path, "generate", PROMPT, "--json", "--evaluators", "syntax", DREAM_GRAPH_DB="/dev/null/runs.sqlite")

    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["record_error"]  # the run says it was not recorded
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "could not record run" in warnings[0], proc.stderr
    assert "Traceback" not in proc.stderr


def test_offline_banner_is_whole_sentences_within_80_columns(tmp_path):
    proc = cli(tmp_path, "generate", PROMPT, "--json", "--evaluators", "syntax", DREAM_GRAPH_DB="off")

    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.splitlines() == [
        "Using the offline demo model (a fixed template, not AI).",
        "For a real LLM set OPENAI_API_KEY or COHERE_API_KEY, or pass --model.",
    ]


def test_export_into_a_closed_pipe_stops_quietly(tmp_path):
    RunStore.from_url(f"sqlite:///{tmp_path / 'runs.sqlite'}").record_state(
        {"run_id": "a" * 32, "prompt": PROMPT, "status": "passed", "cycles": 1, "model": "offline", "messages": []}
    )
    process = subprocess.Popen(
        [EXE, "runs", "export", "--format", "csv"], env=env_for(tmp_path), cwd=tmp_path,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    process.stdout.close()  # the reader is gone before the first byte, as `| head` is after its lines
    stderr = process.stderr.read().decode()
    assert process.wait(timeout=60) == 0
    assert stderr == ""


def test_a_pipelines_missing_key_hint_names_a_change_that_works(tmp_path):
    refused = cli(tmp_path, "generate", "--pipeline", "gpt4", PROMPT)
    assert refused.returncode == 2
    line = one_error_line(refused)
    assert "OPENAI_API_KEY" in line and "--model offline" in line

    # the hint, followed: the pipeline's Cohere fallback goes with its model
    followed = cli(tmp_path, "generate", "--pipeline", "gpt4", "--model", "offline", PROMPT, "--json",
                   "--evaluators", "syntax", DREAM_GRAPH_DB="off")
    assert followed.returncode == 0, followed.stderr
    assert json.loads(followed.stdout)["model"] == "offline"


def test_unknown_provider_lists_the_known_ones(tmp_path):
    proc = cli(tmp_path, "generate", PROMPT, DREAM_GRAPH_MODEL="opnai:gpt-4o")

    assert proc.returncode == 2
    line = one_error_line(proc)
    assert "unknown model provider 'opnai'" in line and "did you mean openai:gpt-4o?" in line
    assert "known providers: offline, openai, cohere" in line


def test_help_is_plain_and_fits(tmp_path):
    serve = cli(tmp_path, "serve", "--help")
    generate = cli(tmp_path, "generate", "--help")

    assert serve.returncode == 0 and generate.returncode == 0
    assert "Usage: dream-graph serve [OPTIONS]\n" in serve.stdout and "COMMAND" not in serve.stdout
    assert "<bool>" not in generate.stdout and "--json" in generate.stdout
    assert max(len(line) for line in serve.stdout.splitlines() + generate.stdout.splitlines()) <= 80


@pytest.fixture
def store_with_a_long_run(tmp_path: Path) -> str:
    run_id = "0123456789abcdef" * 2
    RunStore.from_url(f"sqlite:///{tmp_path / 'runs.sqlite'}").record_state(
        {
            "run_id": run_id, "prompt": "a request that goes on " * 8, "status": "passed", "stop_reason": "passed",
            "cycles": 1, "model": "openai:gpt-3.5-turbo-16k", "code": f"{LONG_LINE}\n", "messages": [],
        },
        {"configurable": {"pipeline": "a-pipeline-with-a-long-name"}},
    )
    return run_id


def test_runs_list_fits_80_columns_and_keeps_ids_whole(tmp_path, store_with_a_long_run):
    narrow = cli(tmp_path, "runs", "list")
    wide = cli(tmp_path, "runs", "list", "--wide")

    assert narrow.returncode == 0, narrow.stderr
    assert max(len(line) for line in narrow.stdout.splitlines()) <= 80
    assert f" {store_with_a_long_run[:12]} " in narrow.stdout  # the prefix `runs show` takes, never cut with "…"
    assert store_with_a_long_run in wide.stdout


def test_runs_show_prints_code_unwrapped(tmp_path, store_with_a_long_run):
    proc = cli(tmp_path, "runs", "show", store_with_a_long_run[:8])

    assert proc.returncode == 0, proc.stderr
    assert LONG_LINE in proc.stdout.splitlines()


def test_github_docs_fallback_warning_is_printed_once(tmp_path):
    proc = cli(
        tmp_path, "generate", PROMPT, "--json", "--evaluators", "syntax",
        DREAM_GRAPH_DB="off", DREAM_GRAPH_DOCS_SOURCE="github", GITHUB_API_URL="http://127.0.0.1:9",
        DREAM_GRAPH_DOCS_FETCH_ATTEMPTS="1", DREAM_GRAPH_DOCS_RETRY_WAIT="0",
    )

    assert proc.returncode == 0, proc.stderr
    fallback = [line for line in proc.stderr.splitlines() if "using the bundled snapshot" in line]
    assert len(fallback) == 1, proc.stderr
