"""One compiled graph per shipped pipeline, for langgraph.json; models load on first use, so no key is needed here."""

from __future__ import annotations

from dream_graph.graph import build_graph
from dream_graph.pipelines import SHIPPED_PIPELINES, load_pipelines

_shipped = load_pipelines(SHIPPED_PIPELINES)

gpt35 = build_graph(pipeline=_shipped["gpt35"])
gpt4 = build_graph(pipeline=_shipped["gpt4"])
cohere = build_graph(pipeline=_shipped["cohere"])
offline = build_graph(pipeline=_shipped["offline"])
replay = build_graph(pipeline=_shipped["replay"])
