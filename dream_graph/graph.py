"""The generate-and-check loop: docs -> prompt -> generate -> extract -> parallel evaluators -> decide."""

from __future__ import annotations

import asyncio
import time
from functools import partial
from typing import Any, Literal

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage, SystemMessage
from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langchain_core.runnables import RunnableLambda

from dream_graph.aio import run_sync
from dream_graph.context import Context, run_options
from dream_graph.docs import Section, count_tokens, docs_holder
from dream_graph.errors import ConfigError
from dream_graph.evaluators import EvalInput, finding, get_registry, is_blocking
from dream_graph.extract import extract_python, extract_yaml
from dream_graph.llm import load_chat_model, model_id, resolve_model_spec
from dream_graph.prompts import render, validate_request
from dream_graph.repair import findings_signature, fix_message
from dream_graph.sources import DocSet
from dream_graph.state import Evaluation, InputState, OutputState, State


def _docs_update(docset: DocSet, sections: list[Section]) -> dict[str, Any]:
    return {
        "documentation": "\n\n".join(s.text for s in sections),
        "doc_sections": [{"path": s.path, "heading": s.heading, "tokens": s.tokens} for s in sections],
        "docs_source": docset.source,
    }


def retrieve_docs(state: State) -> dict[str, Any]:
    """Ground the model in the framework's own docs so it does not invent APIs."""
    validate_request(state.get("prompt") or "")
    return _docs_update(*docs_holder.get())


async def aretrieve_docs(state: State) -> dict[str, Any]:
    """Same as `retrieve_docs`, with the file reads off the event loop."""
    validate_request(state.get("prompt") or "")
    return _docs_update(*await asyncio.to_thread(docs_holder.get))


def build_prompt(state: State) -> dict[str, Any]:
    """Guidelines + docs + request, from the template files, as the first conversation."""
    user = "\n\n".join(
        [
            render("guidelines"),
            render("documentation", documentation=state["documentation"]),
            render("instructions", instructions=state["prompt"].strip()),
        ]
    )
    messages = [SystemMessage(render("system")), HumanMessage(user)]
    return {
        "messages": messages,
        "prompt_tokens": count_tokens(render("system")) + count_tokens(user),
        "cycles": 0,
        "status": "running",
        "stop_reason": None,
        "error": None,
    }


def _model_for(config: RunnableConfig, chat_model: BaseChatModel | None) -> tuple[BaseChatModel, str | None]:
    ctx = run_options(config)
    if chat_model is not None:
        return chat_model, None
    spec = resolve_model_spec(ctx.model)
    return load_chat_model(spec, temperature=ctx.temperature, max_tokens=ctx.max_tokens), spec


def _after_reply(state: State, model: BaseChatModel, spec: str | None, reply: Any) -> dict[str, Any]:
    """A reply is appended to the conversation; an exception ends the run as `error` and keeps the state."""
    cycle = state.get("cycles", 0) + 1
    if isinstance(reply, BaseException):
        return {
            "cycles": cycle,
            "model": model_id(model, spec),
            "status": "error",
            "stop_reason": "provider_error",
            "error": f"{type(reply).__name__}: {reply}",
        }
    return {
        "messages": [*state["messages"], reply],
        "response": reply.text if isinstance(reply.text, str) else str(reply.content),
        "cycles": cycle,
        "model": model_id(model, spec),
    }


def generate(state: State, config: RunnableConfig, *, chat_model: BaseChatModel | None = None) -> dict[str, Any]:
    """Ask the model for a reply (or a fixed reply) to the conversation so far."""
    model, spec = _model_for(config, chat_model)
    try:
        reply: Any = model.invoke(state["messages"], config)
    except Exception as exc:  # any provider failure: keep the state, report it
        reply = exc
    return _after_reply(state, model, spec, reply)


async def agenerate(state: State, config: RunnableConfig, *, chat_model: BaseChatModel | None = None) -> dict[str, Any]:
    """Same as `generate`, without blocking the event loop while the model answers."""
    model, spec = _model_for(config, chat_model)
    try:
        reply: Any = await model.ainvoke(state["messages"], config)
    except Exception as exc:  # any provider failure: keep the state, report it
        reply = exc
    return _after_reply(state, model, spec, reply)


def extract(state: State) -> dict[str, Any]:
    """Checks need the code and the config as separate texts."""
    response = state.get("response") or ""
    return {"code": extract_python(response), "config_yaml": extract_yaml(response)}


def make_evaluator_node(name: str) -> RunnableLambda:
    """One graph node per evaluator, so each runs as its own parallel branch."""
    evaluator = get_registry()[name]

    async def aevaluate(state: State, config: RunnableConfig) -> dict[str, Any]:
        ctx = run_options(config)
        started = time.perf_counter()
        try:
            findings = await evaluator.evaluate(
                state.get("code"),
                EvalInput(response=state.get("response") or "", config_yaml=state.get("config_yaml"), options=ctx),
            )
        except Exception as exc:  # a broken evaluator fails its check, not the run
            findings = [finding("evaluator-error", f"{name} evaluator crashed: {exc!r}")]
        result: Evaluation = {
            "cycle": state["cycles"],
            "evaluator": name,
            "passed": not any(is_blocking(f) for f in findings),
            "findings": list(findings),
            "duration_ms": round((time.perf_counter() - started) * 1000, 3),
        }
        return {"evaluations": [result]}

    def evaluate(state: State, config: RunnableConfig) -> dict[str, Any]:
        return run_sync(aevaluate(state, config))

    return RunnableLambda(evaluate, afunc=aevaluate, name=f"evaluate_{name}")


def decide(state: State, config: RunnableConfig) -> dict[str, Any]:
    """Stop on success, on no progress or at max_cycles; otherwise ask for a fix."""
    ctx = run_options(config)
    cycle = state["cycles"]
    evaluations = state.get("evaluations") or []
    current = [e for e in evaluations if e["cycle"] == cycle]
    if all(e["passed"] for e in current):
        return {"status": "passed", "stop_reason": "passed"}
    if cycle >= ctx.max_cycles:
        return {"status": "failed", "stop_reason": "max_cycles"}
    previous = [e for e in evaluations if e["cycle"] == cycle - 1]
    if previous and findings_signature(current) == findings_signature(previous):
        return {"status": "failed", "stop_reason": "no_progress"}
    fix = fix_message(current, state.get("code"), cycle, ctx.max_cycles)
    return {"messages": [*state["messages"], HumanMessage(fix)]}


def route_after_generate(state: State) -> Literal["extract", "__end__"]:
    """A provider error ends the run; a reply goes on to be checked."""
    return END if state.get("status") == "error" else "extract"


def route_evaluators(state: State, config: RunnableConfig) -> list[str]:
    """Fan out to the evaluators this run asked for, all in one parallel step."""
    names = run_options(config).evaluators
    known = get_registry()
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ConfigError(f"unknown evaluator(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    return [f"evaluate_{n}" for n in names] or ["decide"]


def route_after_decide(state: State) -> Literal["generate", "__end__"]:
    """Loop back only while the run is still open."""
    return "generate" if state.get("status") == "running" else END


def build_graph(*, chat_model: BaseChatModel | None = None, checkpointer: Any = None, name: str = "dream") -> CompiledStateGraph:
    """Wire the loop; `chat_model` overrides the configured model (tests, notebooks)."""
    builder = StateGraph(State, context_schema=Context, input_schema=InputState, output_schema=OutputState)
    builder.add_node("retrieve_docs", RunnableLambda(retrieve_docs, afunc=aretrieve_docs, name="retrieve_docs"))
    builder.add_node("build_prompt", build_prompt)
    builder.add_node(
        "generate",
        RunnableLambda(
            partial(generate, chat_model=chat_model), afunc=partial(agenerate, chat_model=chat_model), name="generate"
        ),
    )
    builder.add_node("extract", extract)
    evaluator_nodes = [f"evaluate_{n}" for n in get_registry()]
    for node_name in evaluator_nodes:
        builder.add_node(node_name, make_evaluator_node(node_name.removeprefix("evaluate_")))
        builder.add_edge(node_name, "decide")
    builder.add_node("decide", decide)

    builder.add_edge(START, "retrieve_docs")
    builder.add_edge("retrieve_docs", "build_prompt")
    builder.add_edge("build_prompt", "generate")
    builder.add_conditional_edges("generate", route_after_generate, ["extract", END])
    builder.add_conditional_edges("extract", route_evaluators, [*evaluator_nodes, "decide"])
    builder.add_conditional_edges("decide", route_after_decide, ["generate", END])
    return builder.compile(checkpointer=checkpointer, name=name)


graph = build_graph()
