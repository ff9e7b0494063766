"""`dream-graph docs ...`: see which documentation grounds the prompts, and fetch it now."""

from __future__ import annotations

import json
import sys
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from dream_graph.errors import ConfigError

docs_app = typer.Typer(
    help="The documentation that grounds the prompts: show it, fetch it now.", no_args_is_help=True, rich_markup_mode=None
)
out = Console()
err = Console(stderr=True)

SOURCE_HELP = (
    "Docs source (default DREAM_GRAPH_DOCS_SOURCE): bundled, local:<dir>, github, "
    "github:<owner>/<repo>[@<branch>][:<path>,...]."
)


def _fail(message: str) -> typer.Exit:
    from dream_graph.cli import fail_usage

    return fail_usage(message)


def describe(snapshot: Any) -> dict[str, Any]:
    """A snapshot as plain JSON: where it came from and what it holds, section by section."""
    from dream_graph.docs import count_tokens
    from dream_graph.sandbox import backend_status
    from dream_graph.targets import get_target

    docset = snapshot.docset
    return {
        "target": get_target().spec,
        "sandbox": backend_status(),
        "key": snapshot.key,
        "source": docset.source,
        "commit": docset.commit,
        "fetched_at": docset.fetched_at,
        "warnings": list(docset.warnings),
        "files": [{"path": d.path, "tokens": count_tokens(d.text)} for d in docset.docs],
        "sections": [
            {"path": s.path, "heading": s.heading, "tokens": s.tokens, "core": core}
            for s, core in zip(snapshot.sections, snapshot.core)
        ],
        "total_tokens": sum(s.tokens for s in snapshot.sections),
    }


def _print(info: dict[str, Any]) -> None:
    files = ", ".join(f["path"] for f in info["files"])
    out.print(f"[bold]target[/]     {escape(info['target'])}", highlight=False)
    box = info["sandbox"]
    out.print(f"[bold]sandbox[/]    {escape(box['backend'] if box['available'] else 'unavailable: ' + box['detail'])}",
              highlight=False, soft_wrap=True)
    out.print(f"[bold]source[/]     {escape(info['source'])}", highlight=False)
    out.print(f"[bold]commit[/]     {info['commit'] or '-'}", highlight=False)
    out.print(f"[bold]fetched at[/] {info['fetched_at'] or '-'}", highlight=False)
    out.print(f"[bold]files[/]      {len(info['files'])}: {escape(files)}", highlight=False)
    for warning in info["warnings"]:
        err.print(f"[bold yellow]warning:[/] {escape(warning)}", highlight=False, soft_wrap=True)
    table = Table(title=f"{len(info['sections'])} sections, {info['total_tokens']} tokens")
    for col in ("path", "heading", "tokens", "core"):
        table.add_column(col, justify="right" if col == "tokens" else "left")
    for s in info["sections"]:
        table.add_row(escape(s["path"]), escape(s["heading"]), str(s["tokens"]), "always" if s["core"] else "")
    out.print(table)


@docs_app.command("show")
def show(
    source: str | None = typer.Option(None, "--source", "-s", help=SOURCE_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object, nothing else."),
) -> None:
    """Which docs a run gets: source, commit, fetch time, warnings, files, and sections with token counts."""
    from dream_graph.docs import docs_for

    try:
        snapshot = docs_for(source)
    except ConfigError as exc:
        raise _fail(str(exc)) from None
    info = describe(snapshot)
    if as_json:
        sys.stdout.write(json.dumps(info) + "\n")
    else:
        _print(info)


@docs_app.command("refresh")
def refresh(
    source: str | None = typer.Option(None, "--source", "-s", help=SOURCE_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object, nothing else."),
) -> None:
    """Fetch the docs now; a GitHub copy becomes the cached last good copy. Exit 1 when the fetch fails."""
    from dream_graph.docs import DocsFetchError, docs_holder

    try:
        snapshot = docs_holder.refresh(source)
    except ConfigError as exc:
        raise _fail(str(exc)) from None
    except DocsFetchError as exc:
        err.print(f"[bold red]fetch failed:[/] {escape(str(exc))}; the cached copy, if any, stays in use", highlight=False)
        raise typer.Exit(1) from None
    info = describe(snapshot)
    if as_json:
        sys.stdout.write(json.dumps(info) + "\n")
    else:
        commit = f" at commit {info['commit']}" if info["commit"] else ""
        counts = f"{len(info['files'])} files, {len(info['sections'])} sections, {info['total_tokens']} tokens"
        out.print(f"fetched {escape(info['source'])}{commit}: {counts}", highlight=False, soft_wrap=True)
