"""The generate-and-check loop: docs -> prompt -> generate -> parallel evaluators -> decide."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from functools import partial
from typing import Any, Literal

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage, SystemMessage
from langchain_core.runnables import Runnable, RunnableConfig, RunnableLambda
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph

try:
    from langgraph.utils.runnable import RunnableCallable
except ImportError:  # pragma: no cover
    RunnableCallable = None

from dream_graph.aio import run_sync
from dream_graph.context import Context, run_options
from dream_graph.docs import check_run_source, count_tokens, docs_for
from dream_graph.errors import ConfigError
from dream_graph.evaluators import EvalInput, Evaluator, checks_for, finding, get_registry, is_blocking
from dream_graph.examples import examples_prompt, validate_examples
from dream_graph.extract import extract_python, extract_yaml
from dream_graph.llm import Outcome, acall_models, call_models, load_chain, model_id, resolve_model_spec
from dream_graph.pipelines import Pipeline, get_pipeline
from dream_graph.prompts import render, validate_request
from dream_graph.repair import autofix, repair_step
from dream_graph.state import Evaluation, InputState, OutputState, State
from dream_graph.store import (
    close_run_scope,
    message_dict,
    new_run_fields,
    open_run_scope,
    record_safely,
    store_url,
)
from dream_graph.targets import get_target


def _node(func: Callable[..., Any], afunc: Callable[..., Any], name: str) -> Runnable:
    """A node with a body for `invoke` and one for `ainvoke`, wrapped the way LangGraph wraps plain functions: without
    a LangChain run of its own per call, which (with a signature inspection per call) took about an eighth of the
    service's CPU under load. LangGraph's stream modes, checkpoints and the model's callbacks are unchanged."""
    if RunnableCallable is None:  # a LangGraph that moved it: the public wrapper, slower
        return RunnableLambda(func, afunc=afunc, name=name)
    return RunnableCallable(func, afunc, name=name, trace=False)


def _docs_update(prompt: str, ctx: Context) -> dict[str, Any]:
    """This run's docs snapshot, taken once: a refresh during the run does not change its prompt."""
    snapshot = docs_for(check_run_source(ctx.docs))
    chosen = snapshot.select(prompt, ctx.docs_budget)
    warnings = [*snapshot.docset.warnings, *chosen.warnings]
    if not chosen.sections:
        warnings.append(f"the documentation from {snapshot.docset.source} is empty: the prompt has no docs")
    return {
        "documentation": "\n\n".join(s.text for s in chosen.sections),
        "doc_sections": [{"path": s.path, "heading": s.heading, "tokens": s.tokens} for s in chosen.sections],
        "docs_source": snapshot.docset.source,
        "docs_warnings": warnings,
    }


def retrieve_docs(state: State, config: RunnableConfig) -> dict[str, Any]:
    """Ground the model in the framework's own docs: the sections that matter to this request, within budget."""
    validate_request(state.get("prompt") or "")
    examples = validate_examples(state.get("examples"))
    return {**_docs_update(state["prompt"], run_options(config)), "examples": examples}


async def aretrieve_docs(state: State, config: RunnableConfig) -> dict[str, Any]:
    """Same as `retrieve_docs`, with the first-use fetch and the ranking off the event loop."""
    validate_request(state.get("prompt") or "")
    examples = validate_examples(state.get("examples"))
    return {**await asyncio.to_thread(_docs_update, state["prompt"], run_options(config)), "examples": examples}


def build_prompt(state: State) -> dict[str, Any]:
    """Guidelines + docs + request, from the template files, as the first conversation."""
    user = "\n\n".join(
        [
            get_target().prompt_part("guidelines"),
            render("documentation", documentation=state["documentation"]),
            render("instructions", instructions=state["prompt"].strip()),
            *examples_prompt(state.get("examples")),
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
        "tokens_used": 0,
        "autofixes": [],
        "target": get_target().spec,
        **new_run_fields(),
    }


def _models_for(config: RunnableConfig, chat_model: BaseChatModel | None) -> list[tuple[str, BaseChatModel]]:
    """The run's model and its fallbacks (cached by parameters, so cheap per cycle), or the caller's model."""
    if chat_model is not None:
        return [(model_id(chat_model), chat_model)]
    ctx = run_options(config)
    return load_chain(
        ctx.model,
        ctx.fallbacks,
        temperature=ctx.temperature,
        max_tokens=ctx.max_tokens,
        timeout=ctx.timeout,
        max_retries=ctx.max_retries,
    )


def _after_reply(state: State, outcome: Outcome) -> dict[str, Any]:
    """A reply is appended to the conversation; a provider that kept failing ends the run as `error`."""
    cycle = state.get("cycles", 0) + 1
    call = outcome.record(cycle)
    # The repair loop trims old replies from `messages`; the call record keeps what this cycle sent and got.
    call["sent_after_prompt"] = [message_dict(m) for m in state["messages"][2:]]
    call["reply"] = None if outcome.reply is None else message_dict(outcome.reply)["content"]
    update: dict[str, Any] = {"cycles": cycle, "model": outcome.spec, "llm_calls": [call]}
    if outcome.error is not None:
        return {
            **update,
            "status": "error",
            "stop_reason": "provider_error",
            "error": str(outcome.error),
            "provider_status": outcome.error.status,
        }
    reply = outcome.reply
    return {
        **update,
        "messages": [*state["messages"], reply],
        "response": reply.text if isinstance(reply.text, str) else str(reply.content),
        "provider_status": None,
    }


def _extracted(state: State) -> dict[str, Any]:
    response = state.get("response") or ""
    return {"code": extract_python(response), "config_yaml": extract_yaml(response)}


async def _checkable(state: State, update: dict[str, Any], config: RunnableConfig) -> dict[str, Any]:
    """Checks need the code and the config as separate texts; Ruff's safe fixes (if on) spare an LLM call."""
    if update.get("status") == "error":
        return update
    update = {**update, **_extracted(update)}  # a reply's update carries its `response`
    return {**update, **await autofix({**state, **update}, run_options(config).autofix)}


async def agenerate(state: State, config: RunnableConfig, *, chat_model: BaseChatModel | None = None) -> dict[str, Any]:
    """Ask the model (then its fallbacks) for a reply to the conversation so far, without blocking the event loop,
    and take the code and config out of it in the same step (a step of its own cost a LangGraph superstep)."""
    update = _after_reply(state, await acall_models(_models_for(config, chat_model), state["messages"], config))
    return await _checkable(state, update, config)


def generate(state: State, config: RunnableConfig, *, chat_model: BaseChatModel | None = None) -> dict[str, Any]:
    """Same as `agenerate`, for `graph.invoke`."""
    update = _after_reply(state, call_models(_models_for(config, chat_model), state["messages"], config))
    return run_sync(_checkable(state, update, config))


def make_evaluator_node(name: str, evaluator: Evaluator) -> Runnable:
    """One graph node per evaluator, so each runs as its own parallel branch."""

    async def aevaluate(state: State, config: RunnableConfig) -> dict[str, Any]:
        ctx = run_options(config)
        started = time.perf_counter()
        try:
            findings = await evaluator.evaluate(
                state.get("code"),
                EvalInput(
                    response=state.get("response") or "",
                    config_yaml=state.get("config_yaml"),
                    options=ctx,
                    examples=state.get("examples"),
                ),
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

    return _node(evaluate, aevaluate, f"evaluate_{name}")


def decide(state: State, config: RunnableConfig) -> dict[str, Any]:
    """Stop on success, max_cycles, no progress or an exhausted token budget; otherwise ask for a fix."""
    ctx = run_options(config)
    return repair_step(dict(state), ctx.max_cycles, ctx.token_budget)


def route_evaluators(state: State, config: RunnableConfig, *, evaluators: Mapping[str, Evaluator]) -> list[str]:
    """A provider error ends the run; a reply fans out to the evaluators this run asked for, in one parallel step
    (on code that does not parse, only to those that can add to the syntax check's finding). `evaluators`: the
    graph's own, as its nodes run them."""
    if state.get("status") == "error":
        return ["record"]
    names = run_options(config).evaluators
    unknown = [n for n in names if n not in evaluators]
    if unknown:
        raise ConfigError(f"unknown evaluator(s) {', '.join(unknown)}; known: {', '.join(sorted(evaluators))}")
    return [f"evaluate_{n}" for n in checks_for(names, state.get("code"), evaluators)] or ["decide"]


def route_after_decide(state: State) -> Literal["generate", "record"]:
    """Loop back only while the run is still open."""
    return "generate" if state.get("status") == "running" else "record"


def _started(
    state: State, update: dict[str, Any], config: RunnableConfig, chat_model: BaseChatModel | None
) -> dict[str, Any]:
    """The state a run starts with, as the run store's first row: the request, and the model it will ask first."""
    first = model_id(chat_model) if chat_model is not None else resolve_model_spec(run_options(config).model)
    return {**state, **update, "model": state.get("model") or first}


def start_run(state: State, config: RunnableConfig, *, chat_model: BaseChatModel | None = None) -> dict[str, Any]:
    """`build_prompt`, then the run's first row (status `running`), so a run killed from here on is never lost."""
    update = build_prompt(state)
    if store_url() is None:
        return update
    return {**update, **_written(record_safely(_started(state, update, config, chat_model), config, final=False))}


async def astart_run(
    state: State, config: RunnableConfig, *, chat_model: BaseChatModel | None = None
) -> dict[str, Any]:
    """Same as `start_run`, with the database write off the event loop."""
    update = build_prompt(state)
    if store_url() is None:
        return update
    started = _started(state, update, config, chat_model)
    return {**update, **_written(await asyncio.to_thread(record_safely, started, config, final=False))}


def _written(result: dict[str, Any]) -> dict[str, Any]:
    """Only a failed in-flight write reaches the state (`record_error`); the final write reports its own outcome."""
    return {"record_error": result["record_error"]} if result.get("record_error") else {}


def decide_and_record(state: State, config: RunnableConfig) -> dict[str, Any]:
    """`decide`; when the loop goes on, the cycle just checked is written (its reply, LLM calls and evaluations).
    When it stops, `record` writes the whole run next."""
    update = decide(state, config)
    if update.get("status", state.get("status")) != "running" or store_url() is None:
        return update
    return {**update, **_written(record_safely(dict(state), config, final=False))}


async def adecide_and_record(state: State, config: RunnableConfig) -> dict[str, Any]:
    """Same as `decide_and_record`, with the database write off the event loop."""
    update = decide(state, config)
    if update.get("status", state.get("status")) != "running" or store_url() is None:
        return update
    return {**update, **_written(await asyncio.to_thread(record_safely, dict(state), config, final=False))}


def close_runs_on_early_end(graph: CompiledStateGraph) -> CompiledStateGraph:
    """`graph` whose `stream`/`astream` (which `invoke`, `ainvoke`, `batch` and LangServe's routes go through) mark
    the runs they started `interrupted` when they end early: an exception, a cancelled request, a consumer that
    stopped reading. Without it such a run would look in progress until its process stops."""
    stream, astream = graph.stream, graph.astream

    def guarded_stream(*args: Any, **kwargs: Any) -> Iterator[Any]:
        scope = open_run_scope()
        try:
            yield from stream(*args, **kwargs)
        except BaseException as exc:
            if scope and store_url() is not None:
                close_run_scope(scope, exc)
            raise

    async def guarded_astream(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        scope = open_run_scope()
        try:
            async for chunk in astream(*args, **kwargs):
                yield chunk
        except BaseException as exc:
            if scope and store_url() is not None:  # not awaited: a cancelled task must not wait on the database
                asyncio.get_running_loop().run_in_executor(None, close_run_scope, scope, exc)
            raise

    graph.stream, graph.astream = guarded_stream, guarded_astream  # type: ignore[method-assign]
    return graph


def record(state: State, config: RunnableConfig) -> dict[str, Any]:
    """Keep every finished run in the run store; a store failure is logged and counted, never fatal."""
    return record_safely(state, config)


async def arecord(state: State, config: RunnableConfig) -> dict[str, Any]:
    """Same as `record`, with the database write off the event loop (no thread hop when recording is off)."""
    if store_url() is None:
        return {}
    return await asyncio.to_thread(record_safely, state, config)


def build_graph(
    *,
    chat_model: BaseChatModel | None = None,
    checkpointer: Any = None,
    name: str | None = None,
    pipeline: str | Pipeline | None = None,
) -> CompiledStateGraph:
    """Wire the loop; `chat_model` overrides the configured model (tests, notebooks).

    `pipeline` (a name in pipelines.toml, or a `Pipeline`) bakes that pipeline's options in as the defaults of
    the graph's context schema and of its `configurable`; a caller's runtime `context` or `configurable` keys
    still override them.
    """
    if isinstance(pipeline, str):
        pipeline = get_pipeline(pipeline)
    context_schema = pipeline.context_schema() if pipeline else Context
    builder = StateGraph(State, context_schema=context_schema, input_schema=InputState, output_schema=OutputState)
    builder.add_node("retrieve_docs", _node(retrieve_docs, aretrieve_docs, "retrieve_docs"))
    starts = partial(start_run, chat_model=chat_model), partial(astart_run, chat_model=chat_model)
    builder.add_node("build_prompt", _node(*starts, "build_prompt"))
    bodies = partial(generate, chat_model=chat_model), partial(agenerate, chat_model=chat_model)
    builder.add_node("generate", _node(*bodies, "generate"))
    evaluators = dict(get_registry())  # the nodes and the routing see the same checks, whatever registers later
    evaluator_nodes = [f"evaluate_{n}" for n in evaluators]
    for check, evaluator in evaluators.items():
        builder.add_node(f"evaluate_{check}", make_evaluator_node(check, evaluator))
        builder.add_edge(f"evaluate_{check}", "decide")
    builder.add_node("decide", _node(decide_and_record, adecide_and_record, "decide"))
    builder.add_node("record", _node(record, arecord, "record"))

    builder.add_edge(START, "retrieve_docs")
    builder.add_edge("retrieve_docs", "build_prompt")
    builder.add_edge("build_prompt", "generate")
    routes = partial(route_evaluators, evaluators=evaluators)
    builder.add_conditional_edges("generate", routes, [*evaluator_nodes, "decide", "record"])
    builder.add_conditional_edges("decide", route_after_decide, ["generate", "record"])
    builder.add_edge("record", END)
    compiled = close_runs_on_early_end(
        builder.compile(checkpointer=checkpointer, name=name or (pipeline.name if pipeline else "dream"))
    )
    if pipeline is None:
        return compiled
    # `pipeline` names the run in the run store; Context ignores keys that are not run options.
    return compiled.with_config(configurable={**pipeline.context_values(), "pipeline": pipeline.name})


graph = build_graph()
