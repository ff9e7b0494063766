"""The package's public names, and a CLI that starts without loading LangGraph."""

from __future__ import annotations

import subprocess
import sys


def test_graph_is_the_compiled_graph_even_after_the_module_is_imported():
    from dream_graph import build_graph, graph
    from dream_graph.graph import build_graph as from_module  # binds the submodule on the package, as Python does

    assert type(graph).__name__ == "CompiledStateGraph"
    assert build_graph is from_module
    assert "evaluate_security" in graph.get_graph().nodes


def test_importing_the_cli_does_not_load_langgraph():
    code = "import sys, dream_graph.cli; print(sorted(m for m in sys.modules if m.startswith(('langgraph', 'langchain'))))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
