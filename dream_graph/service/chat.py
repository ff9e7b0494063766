"""The chat playground at `/<pipeline>/chat/playground/`: type a request, watch the run, read the answer as text.

LangServe's chat playground (`playground_type="chat"`) sends `{"messages": [...]}` and shows the streamed string
as plain text with its line breaks, so the answer is laid out to read well as text: status, the code and the
pipeline YAML in fenced blocks, an aligned table of checks, the findings that remain. A follow-up message revises
the last answer: the first request, the earlier changes and the last answer's code and YAML go into the new request.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from typing import Any, Literal

from fastapi import FastAPI
from langchain_core.runnables import Runnable, RunnableConfig, RunnableGenerator
from langserve import add_routes
from pydantic import BaseModel, Field

from dream_graph.errors import DreamGraphError
from dream_graph.extract import extract_python, extract_yaml

log = logging.getLogger(__name__)

CODE_HEADING = "code:"
# What the chat playground and an API client need; fewer routes, a faster start (each route costs its schemas).
CHAT_ENDPOINTS = (
    "invoke", "stream", "stream_log", "playground", "input_schema", "output_schema", "config_schema", "config_hashes"
)


class ChatTurn(BaseModel):
    """One message of the chat, as the chat playground sends it."""

    type: Literal["human", "ai", "system", "function", "tool"] = Field(description="Who wrote it.")
    content: str = Field(description="The text.")


class ChatInput(BaseModel):
    """The chat so far; the last human message is the request (or the change to the last answer)."""

    messages: list[ChatTurn] = Field(description="The conversation, oldest first.")


# ---------------------------------------------------------------- the request a chat makes


def _field(turn: Any, key: str) -> str:
    """A turn's field, whether it came in as a model or as a plain dict."""
    value = turn.get(key) if isinstance(turn, dict) else getattr(turn, key, None)
    return value if isinstance(value, str) else ""


def chat_prompt(messages: list[Any]) -> str:
    """The graph's prompt for this chat: the request, or a revision of the last answer that quotes its code."""
    requests = [_field(m, "content").strip() for m in messages if _field(m, "type") == "human"]
    requests = [r for r in requests if r]
    if not requests:
        return ""
    last_answer = next((_field(m, "content") for m in reversed(messages) if _field(m, "type") == "ai"), "")
    code, yaml = extract_python(last_answer), extract_yaml(last_answer)
    if len(requests) == 1 or not code:
        return requests[-1]
    parts = [
        f"Revise this earlier answer to: {requests[0]}",
        *(f"Change already asked for: {r}" for r in requests[1:-1]),
        f"Now change it so that: {requests[-1]}",
        f"Keep everything else. The current code:\n```python\n{code.rstrip()}\n```",
    ]
    if yaml:
        parts.append(f"The current pipeline configuration:\n```yaml\n{yaml.rstrip()}\n```")
    return "\n\n".join(parts)


def chat_messages(item: Any) -> list[Any]:
    """The messages of one chat input (LangServe hands the runnable plain dicts)."""
    messages = item.get("messages") if isinstance(item, dict) else getattr(item, "messages", None)
    return messages if isinstance(messages, list) else []


# ---------------------------------------------------------------- the answer as text


def table(header: list[str], rows: list[list[str]]) -> str:
    """A pipe table, cells padded to the widest in their column: aligned in a fixed-width font (a terminal, a copy),
    and still readable row by row in the chat playground's proportional font, where the pipes keep cells apart."""
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(str(cell).ljust(width) for cell, width in zip(cells, widths)) + " |"

    return "\n".join([line(header), "|" + "|".join("-" * (width + 2) for width in widths) + "|", *map(line, rows)])


def _finding_line(evaluator: str, finding: dict[str, Any]) -> str:
    where = f" line {finding['line']}" if finding.get("line") else ""
    return f"- {evaluator} {finding.get('rule')}{where} ({finding.get('severity')}): {finding.get('message')}"


def render_answer(state: dict[str, Any]) -> str:
    """The final state laid out for a person: status, code, YAML, checks, remaining findings."""
    status = state.get("status") or "unknown"
    lines = [f"status: {status} after {state.get('cycles') or 0} cycle(s) with model {state.get('model') or '-'}"]
    if status != "passed" and state.get("stop_reason"):
        lines[0] += f" (stop reason: {state['stop_reason']})"
    if state.get("error"):
        lines.append(f"error: {state['error']}")
    if state.get("code"):
        lines += ["", CODE_HEADING, "```python", state["code"].rstrip("\n"), "```"]
    if state.get("config_yaml"):
        lines += ["", "pipeline YAML:", "```yaml", state["config_yaml"].rstrip("\n"), "```"]
    evaluations = sorted(state.get("evaluations") or [], key=lambda e: (e["cycle"], e["evaluator"]))
    if evaluations:
        rows = [
            [str(e["cycle"]), e["evaluator"], "pass" if e["passed"] else "FAIL", str(len(e.get("findings") or []))]
            for e in evaluations
        ]
        lines += ["", "checks:", table(["cycle", "check", "result", "findings"], rows)]
    last = max((e["cycle"] for e in evaluations), default=None)
    remaining = [_finding_line(e["evaluator"], f) for e in evaluations if e["cycle"] == last for f in e["findings"]]
    lines += ["", "remaining findings:", *remaining] if remaining else ["", "remaining findings: none"]
    if state.get("run_id"):
        lines += ["", f"run id: {state['run_id']}"]
    return "\n".join(lines) + "\n"


def render_progress(node: str, update: Any) -> str:
    """One step of the run as a line of text, or "" for steps a person need not see."""
    if not isinstance(update, dict):
        return ""
    if node == "retrieve_docs":
        headings = [s.get("heading") for s in update.get("doc_sections") or []]
        return f"docs: {len(headings)} section(s) from {update.get('docs_source')}: {', '.join(map(str, headings))}\n"
    if node == "generate":
        if update.get("status") == "error":
            return f"cycle {update.get('cycles')}: the model failed: {update.get('error')}\n"
        return f"cycle {update.get('cycles')}: reply from {update.get('model')}\n"
    if node.startswith("evaluate_"):
        lines = []
        for ev in update.get("evaluations") or []:
            count = len(ev.get("findings") or [])
            verdict = "pass" if ev.get("passed") else "FAIL"
            lines.append(f"  {ev.get('evaluator')}: {verdict}" + (f" ({count} finding(s))" if count else ""))
        return "".join(line + "\n" for line in lines)
    if node == "decide" and update.get("status") == "running":
        return "  checks failed: asking the model to fix the findings\n"
    return ""


async def answer_stream(graph: Runnable, input: Any, config: RunnableConfig) -> AsyncIterator[str]:
    """Run the graph, yielding a progress line per step and then the answer; a failure ends with its message."""
    final: dict[str, Any] = {}
    try:
        async for mode, chunk in graph.astream(input, config, stream_mode=["updates", "values"]):
            if mode == "values":
                final = chunk
                continue
            for node, update in chunk.items():
                text = render_progress(node, update)
                if text:
                    yield text
    except DreamGraphError as exc:
        yield f"\nerror: {exc}\n"
        return
    except Exception:  # a bug: logged with its traceback; the person still sees that the run broke
        log.exception("chat run failed")
        yield "\nerror: internal error; see the server log\n"
        return
    yield "\n" + render_answer(final)


# ---------------------------------------------------------------- the routes


def text_runnable(graph: Runnable, graph_input: Callable[[Any], Any], name: str) -> RunnableGenerator:
    """A run that streams `graph`'s progress and answer as text (or a refused request's reason). Being a run of its
    own, it opens the run log the playgrounds read (`stream_log` patches the output of the outermost run)."""
    from dream_graph.service.langserve_routes import flags, refusal_text, run_config

    async def answer(inputs: AsyncIterator[Any], config: RunnableConfig) -> AsyncIterator[str]:
        _, refusal = flags(config)
        if refusal:
            yield refusal_text(refusal)
            return
        async for item in inputs:
            async for text in answer_stream(graph, graph_input(item), run_config(config)):
                yield text

    return RunnableGenerator(answer, name=name)


def chat_runnable(graph: Runnable, name: str) -> Runnable:
    """Messages in, text out: the shape LangServe's chat playground accepts."""
    from dream_graph.service.langserve_routes import WithOptions, options_schema_for

    return WithOptions.with_options(
        options_schema_for(graph, f"{name}_chat"),
        bound=text_runnable(graph, lambda item: {"prompt": chat_prompt(chat_messages(item))}, "dream_graph_chat"),
        custom_input_type=ChatInput,
        custom_output_type=str,
    )


def add_chat_routes(app: FastAPI, name: str, graph: Runnable, dependencies: list[Any]) -> None:
    """`/<name>/chat/...`: the chat playground and its invoke/stream routes, with the pipeline's options."""
    from dream_graph.service.langserve_routes import request_checker

    add_routes(
        app,
        chat_runnable(graph, name),
        path=f"/{name}/chat",
        dependencies=dependencies,
        playground_type="chat",
        enabled_endpoints=CHAT_ENDPOINTS,
        per_req_config_modifier=request_checker(graph, lambda item: chat_prompt(chat_messages(item))),
    )
