"""dream_graph: turn a plain-language request into checked code with an LLM, as a LangGraph loop."""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["__version__", "build_graph", "graph"]

if TYPE_CHECKING:
    from dream_graph.graph import build_graph, graph


class _Package(types.ModuleType):
    """Imports LangGraph only when the graph is asked for, so `dream-graph --help` starts fast.

    `dream_graph.graph` is both the compiled graph (the public name) and the module that builds it; Python binds
    a submodule to its package's attribute once imported, so the property's setter ignores that binding and
    `from dream_graph import graph` always gives the graph. Import the module with `from dream_graph.graph import ...`.
    """

    @property
    def graph(self) -> Any:
        return importlib.import_module("dream_graph.graph").graph

    @graph.setter
    def graph(self, value: Any) -> None:
        pass

    @property
    def build_graph(self) -> Any:
        return importlib.import_module("dream_graph.graph").build_graph


sys.modules[__name__].__class__ = _Package
