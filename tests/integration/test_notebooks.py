"""The notebooks run top to bottom offline (nbclient, the `python3` kernel of this interpreter), so they never rot."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from dream_graph.store import get_store

pytestmark = pytest.mark.slow

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"


def execute(name: str, cwd: Path) -> nbformat.NotebookNode:
    """Run every cell in a fresh kernel; a failing cell raises CellExecutionError naming the cell."""
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    assert nb.metadata.kernelspec.name == "python3"
    NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}).execute()
    return nb


def text_output(nb: nbformat.NotebookNode) -> str:
    return "\n".join(
        out.get("text", "") or "".join(out.get("data", {}).get("text/plain", ""))
        for cell in nb.cells
        if cell.cell_type == "code"
        for out in cell.outputs
    )


def test_every_notebook_is_tested():
    assert sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")) == [
        "01_quickstart.ipynb",
        "02_compare_pipelines.ipynb",
        "03_run_dataset.ipynb",
    ]


def test_quickstart(tmp_path):
    text = text_output(execute("01_quickstart.ipynb", tmp_path))
    assert "passed after 1 cycle(s) with model offline" in text
    assert "(AbstractNode):" in text and "pipeline:" in text
    assert "evaluate_syntax" in text and "record" in text
    assert get_store().count_runs() == 2  # the kernel recorded into this test's store


def test_compare_pipelines(tmp_path):
    text = text_output(execute("02_compare_pipelines.ipynb", tmp_path))
    assert "offline-all-checks" in text and "offline-one-shot" in text
    assert "100%" in text
    runs = get_store().list_runs(limit=100)
    assert len(runs) == 12
    assert {r["pipeline"] for r in runs} == {"offline", "offline-all-checks", "offline-one-shot"}


def test_run_dataset(tmp_path):
    nb = execute("03_run_dataset.ipynb", tmp_path)
    text = text_output(nb)
    assert '"runs": 3' in text and "cycle(s) recorded" in text
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if "image/png" in o.get("data", {})]
    assert len(images) == 1
    assert (tmp_path / "runs_report.png").read_bytes()[:4] == b"\x89PNG"
