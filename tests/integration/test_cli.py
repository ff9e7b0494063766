"""The `dream-graph` command end to end, offline, in a subprocess like a user would run it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

EXE = shutil.which("dream-graph", path=str(Path(sys.executable).parent)) or "dream-graph"


def cli(*args: str, env: dict[str, str] | None = None, cwd=None) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DREAM_GRAPH_", "OPENAI_", "COHERE_"))}
    base["DREAM_GRAPH_DB"] = "off"
    return subprocess.run([EXE, *args], capture_output=True, text=True, timeout=120, env={**base, **(env or {})}, cwd=cwd)


@pytest.mark.slow
def test_generate_json_offline(tmp_path):
    proc = cli("generate", "a node that counts words in each message", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    state = json.loads(proc.stdout)  # stdout is exactly one JSON object
    assert state["status"] == "passed" and state["model"] == "offline"
    assert state["messages"][0]["role"] == "system"
    assert proc.stdout.count("\n") == 1


@pytest.mark.slow
def test_generate_human_output_offline(tmp_path):
    proc = cli("generate", "a node that counts words", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "offline demo model" in proc.stderr
    assert "Checks" in proc.stdout and "security" in proc.stdout and "passed after 1 cycle" in proc.stdout


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["generate", ""], {}, "prompt is empty"),
        (["generate", "x", "--model", "openai:gpt-4o"], {}, "OPENAI_API_KEY"),
        (["generate", "x", "--model", "nonsense"], {}, "provider:model"),
        (["generate", "x", "--evaluators", "syntax,nope"], {}, "unknown evaluator"),
        (["generate", "x"], {"DREAM_GRAPH_MAX_CYCLES": "zero"}, "DREAM_GRAPH_MAX_CYCLES"),
    ],
)
def test_usage_errors_exit_2_with_one_line(tmp_path, args, env, message):
    proc = cli(*args, env=env, cwd=tmp_path)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stdout == ""
