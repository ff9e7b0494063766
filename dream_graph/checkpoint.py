"""LangGraph checkpointers on the run store's database, so a run keyed by thread id survives a killed process."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any, Literal

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.types import StateSnapshot
from sqlalchemy.engine import make_url

from dream_graph.errors import ConfigError
from dream_graph.store import store_url

Backend = Literal["sqlite", "postgres"]


def saver_target(url: str | None = None) -> tuple[Backend, str]:
    """The saver kind and what it connects with: a file path for SQLite, a libpq URL for PostgreSQL."""
    url = url if url is not None else store_url()
    if url is None:
        raise ConfigError("checkpointing needs a database: set DREAM_GRAPH_DB to a file path or a postgresql:// URL")
    parsed = make_url(url) if "://" in url else make_url(f"sqlite:///{Path(url).expanduser().resolve()}")
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        database = parsed.database or ":memory:"
        if database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        return "sqlite", database
    if backend == "postgresql":
        return "postgres", parsed.set(drivername="postgresql").render_as_string(hide_password=False)
    raise ConfigError(f"no LangGraph checkpointer for {backend!r} databases; use SQLite or PostgreSQL")


@contextmanager
def open_checkpointer(url: str | None = None) -> Iterator[BaseCheckpointSaver[Any]]:
    """A ready sync saver (`SqliteSaver` / `PostgresSaver`) on `url` (default `DREAM_GRAPH_DB`); closed on exit."""
    backend, target = saver_target(url)
    if backend == "sqlite":
        from langgraph.checkpoint.sqlite import SqliteSaver

        with SqliteSaver.from_conn_string(target) as saver:
            saver.setup()
            yield saver
        return
    from langgraph.checkpoint.postgres import PostgresSaver

    with PostgresSaver.from_conn_string(target) as saver:
        saver.setup()
        yield saver


@asynccontextmanager
async def open_async_checkpointer(url: str | None = None) -> AsyncIterator[BaseCheckpointSaver[Any]]:
    """The async twin of `open_checkpointer`, for `ainvoke`/`astream` and the service."""
    backend, target = saver_target(url)
    if backend == "sqlite":
        from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

        async with AsyncSqliteSaver.from_conn_string(target) as saver:
            await saver.setup()
            yield saver
        return
    from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver

    async with AsyncPostgresSaver.from_conn_string(target) as saver:
        await saver.setup()
        yield saver


def thread_config(thread_id: str, config: RunnableConfig | None = None) -> RunnableConfig:
    """`config` with `configurable.thread_id` set: the key every checkpoint of a run is stored under."""
    if not thread_id or not str(thread_id).strip():
        raise ConfigError("a thread id must be a non-empty string")
    merged: dict[str, Any] = dict(config or {})
    merged["configurable"] = {**(merged.get("configurable") or {}), "thread_id": str(thread_id)}
    return merged  # type: ignore[return-value]


def can_resume(graph: Any, thread_id: str) -> bool:
    """True when the thread has a checkpoint with steps still to run (an interrupted run)."""
    snapshot = graph.get_state(thread_config(thread_id))
    return bool(snapshot.next)


def thread_history(graph: Any, thread_id: str) -> list[StateSnapshot]:
    """Every checkpoint of a thread, oldest first (LangGraph returns newest first)."""
    return list(reversed(list(graph.get_state_history(thread_config(thread_id)))))
