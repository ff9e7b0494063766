"""The `dream-graph` command: run the loop from a terminal, with progress and a table of checks."""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from dream_graph.errors import ConfigError, DreamGraphError

# Plain help (no boxes, no `<bool>` on flags, fits 80 columns) and plain tracebacks for real bugs.
PLAIN = {"rich_markup_mode": None, "pretty_exceptions_enable": False}
app = typer.Typer(help="Turn a plain-language request into checked code with an LLM.", no_args_is_help=True, **PLAIN)
err = Console(stderr=True)
out = Console()

EXIT_PASSED, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
EXECUTING_CHECKS = frozenset({"aineko", "sandbox"})
"""Checks that execute the generated code (in the sandbox): the CLI says which sandbox runs it."""


def fail_usage(message: str) -> typer.Exit:
    """One line on stderr and exit status 2: what is wrong and how to fix it."""
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(EXIT_USAGE)


@contextmanager
def quiet_broken_pipe() -> Iterator[None]:
    """`... | head` closing the pipe early is the reader's choice, not an error: stop quietly with status 0."""
    try:
        yield
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the exit-time flush cannot fail again
        raise typer.Exit(EXIT_PASSED) from None


class OneLineWarnings(logging.Handler):
    """The library's warnings as one line each on stderr, each message once: a terminal is not a log file."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.seen: set[str] = set()

    def emit(self, record: logging.LogRecord) -> None:
        self.show(record.getMessage(), "error" if record.levelno >= logging.ERROR else "warning")

    def show(self, message: str, label: str) -> None:
        """Print the message's first line, unless it was already printed (a log line and a `docs_warnings` entry
        often say the same thing)."""
        message = (message.splitlines() or [""])[0]
        if message in self.seen:
            return
        self.seen.add(message)
        err.print(f"[bold yellow]{label}:[/] {escape(message)}", highlight=False, soft_wrap=True)


WARNINGS = OneLineWarnings()


def nothing_to_resume(thread: str) -> str:
    """The message for `--resume` of a thread with no checkpoint, saying how to start one."""
    return (
        f"thread {thread!r} has no interrupted run to resume in the run store (DREAM_GRAPH_DB); "
        f'start one with: dream-graph generate "PROMPT" --thread {thread}'
    )


def check_resumable(thread: str) -> None:
    """Refuse `--resume` of a thread with no checkpoint before anything else is printed or started."""
    from dream_graph.checkpoint import open_checkpointer, thread_config

    try:
        with open_checkpointer() as saver:
            found = saver.get_tuple(thread_config(thread))
    except OSError as exc:
        raise ConfigError(f"cannot open the run store: {exc.strerror or exc}; check DREAM_GRAPH_DB") from None
    if found is None:
        raise ConfigError(nothing_to_resume(thread))


def _jsonable(state: dict[str, Any]) -> dict[str, Any]:
    from dream_graph.store import to_jsonable  # late: `dream-graph --help` must not load SQLAlchemy

    return to_jsonable(state)


def checks_table(state: dict[str, Any]) -> Table:
    """One row per evaluator per cycle."""
    table = Table(title="Checks", show_lines=False)
    for col in ("cycle", "evaluator", "result", "findings"):
        table.add_column(col)
    for ev in sorted(state.get("evaluations") or [], key=lambda e: (e["cycle"], e["evaluator"])):
        found = "\n".join(
            f"[{f['rule']}] line {f['line']}: {f['message']}" if f.get("line") else f"[{f['rule']}] {f['message']}"
            for f in ev["findings"]
        )
        table.add_row(str(ev["cycle"]), ev["evaluator"], "[green]pass[/]" if ev["passed"] else "[red]FAIL[/]", found or "-")
    return table


def run_graph(
    prompt: str | None,
    context: dict[str, Any],
    show_progress: bool,
    *,
    thread: str | None = None,
    pipeline: str | None = None,
    examples: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Run the graph; with `thread`, checkpointed under that id (`prompt` None resumes the thread's interrupted run)."""
    from dream_graph.graph import graph

    config: dict[str, Any] = {"configurable": {"pipeline": pipeline}} if pipeline else {}
    inputs = {"prompt": prompt} if prompt is not None else None
    if inputs is not None and examples:
        inputs["examples"] = examples
    if thread is None:
        return stream_graph(graph, inputs, config, context, show_progress)
    from dream_graph.checkpoint import open_checkpointer, thread_config
    from dream_graph.graph import build_graph

    with open_checkpointer() as saver:
        return stream_graph(build_graph(checkpointer=saver), inputs, thread_config(thread, config), context, show_progress)


def stream_graph(
    graph: Any, inputs: dict[str, Any] | None, config: dict[str, Any], context: dict[str, Any], show_progress: bool
) -> dict[str, Any]:
    """Stream the graph's updates so the user sees each step as it happens."""
    final: dict[str, Any] = {}
    tokens = 0
    modes = ["updates", "values", "messages"] if show_progress else ["values"]
    with err.status("starting", spinner="dots") if show_progress else _nullcontext() as status:
        for mode, chunk in graph.stream(inputs, config, context=context, stream_mode=modes):
            if mode == "values":
                final = chunk
            elif mode == "messages":
                if status is not None and type(chunk[0]).__name__ == "AIMessageChunk":
                    tokens += 1  # one streamed chunk of the model's reply, as it arrives
                    status.update(f"generating: {tokens} tokens received")
            elif show_progress and status is not None:
                tokens = 0
                for node, update in chunk.items():
                    label = node
                    if node == "generate" and isinstance(update, dict):
                        label = f"generated reply {update.get('cycles')} with {update.get('model')}"
                    elif node.startswith("evaluate_") and isinstance(update, dict):
                        ev = (update.get("evaluations") or [{}])[0]
                        label = f"{ev.get('evaluator')}: {'pass' if ev.get('passed') else 'FAIL'}"
                    err.print(f"  [dim]•[/] {label}", highlight=False)
                    status.update(label)
    return final


class _nullcontext:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


@app.callback()
def _root() -> None:
    """Turn a plain-language request into checked code with an LLM."""


@app.command()
def generate(
    prompt: Optional[str] = typer.Argument(None, help="What the code should do, in plain language."),
    pipeline: Optional[str] = typer.Option(
        None, "--pipeline", "-p", help="A named pipeline from pipelines.toml (DREAM_GRAPH_PIPELINES); options override it."
    ),
    model: Optional[str] = typer.Option(
        None,
        "--model",
        "-m",
        help="auto, offline, openai:<model>, cohere:<model>; replaces a pipeline's model and its fallbacks.",
    ),
    max_cycles: Optional[int] = typer.Option(None, "--max-cycles", min=1, max=20, help="Most LLM generations."),
    evaluators: Optional[str] = typer.Option(None, "--evaluators", help="Comma-separated evaluator names."),
    docs_budget: Optional[int] = typer.Option(
        None, "--docs-budget", min=0, help="Most documentation tokens in the prompt (default 6000); 0 = all docs."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the output state as one JSON object, nothing else."),
    thread: Optional[str] = typer.Option(
        None, "--thread", help="Checkpoint the run under this thread id (in DREAM_GRAPH_DB) so it can be resumed."
    ),
    resume: bool = typer.Option(False, "--resume", help="Continue the interrupted run of --thread instead of PROMPT."),
    examples_file: Optional[str] = typer.Option(
        None,
        "--examples",
        metavar="FILE.json",
        help='Examples the code must reproduce: [{"inputs": {"<dataset>": [...]}, "outputs": {"<dataset>": [...]}}].',
    ),
) -> None:
    """Generate code for PROMPT, check it, and repair it until it passes."""
    from dream_graph.context import Context
    from dream_graph.examples import load_examples_file
    from dream_graph.llm import load_chain, resolve_model_spec
    from dream_graph.pipelines import get_pipeline
    from dream_graph.prompts import validate_request

    try:
        if resume and not thread:
            raise ConfigError("--resume needs --thread ID: the thread whose interrupted run to continue")
        if resume and prompt is not None:
            raise ConfigError("give either PROMPT or --resume, not both")
        if not resume:
            validate_request(prompt or "")
        else:
            check_resumable(thread)
        examples = load_examples_file(examples_file) if examples_file else None
        options = {"model": model, "max_cycles": max_cycles, "evaluators": evaluators, "docs_budget": docs_budget}
        defaults = get_pipeline(pipeline).context_values() if pipeline else {}
        if model is not None:  # `--model offline` must not still need the pipeline's fallback provider's key
            defaults.pop("fallbacks", None)
        ctx = Context(**{**defaults, **{k: v for k, v in options.items() if v is not None}})
        spec = resolve_model_spec(ctx.model)
        load_chain(  # fail fast on a missing key, for the fallbacks too
            spec, ctx.fallbacks, temperature=ctx.temperature, max_tokens=ctx.max_tokens, timeout=ctx.timeout
        )
        ctx.model = spec
    except (ConfigError, ValueError) as exc:
        raise fail_usage(str(exc)) from None
    from dream_graph.offline import OFFLINE_LABEL, OFFLINE_MODEL_ID

    if spec == OFFLINE_MODEL_ID:  # two short lines: a terminal of 80 columns must not break the sentence
        err.print(f"[bold yellow]Using the {OFFLINE_LABEL}.[/]", highlight=False, soft_wrap=True)
        err.print("For a real LLM set OPENAI_API_KEY or COHERE_API_KEY, or pass --model.", highlight=False, soft_wrap=True)
    elif spec.split(":", 1)[0] == "replay":
        from dream_graph.replay import REPLAY_LABEL

        err.print(f"[bold yellow]Using the {REPLAY_LABEL}.[/]", highlight=False, soft_wrap=True)
    if not as_json and EXECUTING_CHECKS & set(ctx.evaluators):
        from dream_graph.sandbox import backend_status

        box = backend_status()
        where = box["backend"] if box["available"] else f"unavailable ({box['detail']})"
        err.print(f"[dim]generated code runs in: {escape(where)}[/]", highlight=False, soft_wrap=True)
    from langgraph.errors import EmptyInputError

    try:
        state = run_graph(
            prompt, ctx.__dict__, show_progress=not as_json, thread=thread, pipeline=pipeline, examples=examples
        )
    except DreamGraphError as exc:
        raise fail_usage(str(exc)) from None
    except EmptyInputError:  # LangGraph's way of saying the thread has nothing left to continue
        raise fail_usage(nothing_to_resume(thread or "")) from None
    for warning in state.get("docs_warnings") or []:
        WARNINGS.show(warning, "docs")
    if as_json:
        with quiet_broken_pipe():
            sys.stdout.write(json.dumps(_jsonable(state), default=str) + "\n")
            sys.stdout.flush()
    else:
        out.print(state.get("response") or "", markup=False, highlight=False, soft_wrap=True)
        out.print(checks_table(state))
        status = state.get("status")
        colour = "green" if status == "passed" else "red"
        out.print(
            f"[bold {colour}]{status}[/] after {state.get('cycles')} cycle(s) with model {state.get('model')}"
            + (f" (stop reason: {state.get('stop_reason')})" if status != "passed" else "")
            + (f"\n{state.get('error')}" if state.get("error") else ""),
            highlight=False,
        )
    raise typer.Exit(EXIT_PASSED if state.get("status") == "passed" else EXIT_FAILED)


from dream_graph.cli.serve import serve  # noqa: E402

app.command("serve")(serve)  # a command, not a group: it has no subcommands

from dream_graph.cli.runs import runs_app  # noqa: E402

app.add_typer(runs_app, name="runs")

from dream_graph.cli.docs import docs_app  # noqa: E402

app.add_typer(docs_app, name="docs")


def main() -> None:
    """Console-script entry point."""
    library_log = logging.getLogger("dream_graph")
    library_log.addHandler(WARNINGS)
    library_log.propagate = False
    app()


if __name__ == "__main__":
    main()

from dream_graph.cli.eval import eval_command  # noqa: E402

app.command("eval")(eval_command)
