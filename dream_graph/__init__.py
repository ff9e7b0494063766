"""dream_graph: turn a plain-language request into checked code with an LLM, as a LangGraph loop."""

from __future__ import annotations

from dream_graph.graph import build_graph, graph

__version__ = "0.1.0"
__all__ = ["__version__", "build_graph", "graph"]
