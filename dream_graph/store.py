"""The run store: every run and every cycle as rows (SQLite by default, PostgreSQL by URL), the app's own dataset."""

from __future__ import annotations

import logging
import os
import re
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from langchain_core.runnables import RunnableConfig
from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Engine,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    create_engine,
    event,
    func,
    inspect,
    select,
    update,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, InterfaceError, OperationalError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship, selectinload
from sqlalchemy.schema import CreateIndex, CreateTable

from dream_graph.context import run_options
from dream_graph.errors import ConfigError
from dream_graph.extract import extract_python, extract_yaml
from dream_graph.settings import Settings, get_settings

logger = logging.getLogger(__name__)

DISABLED_VALUES = frozenset({"", "off", "none", "false", "0", "disabled"})


# --------------------------------------------------------------------------- text both databases accept

_SURROGATE = re.compile("[\ud800-\udfff]")


def clean_text(value: str) -> str:
    """`value` as text both SQLite and PostgreSQL store: NUL (PostgreSQL refuses it) and lone surrogates (not
    UTF-8, both refuse them) become U+FFFD; a valid surrogate pair is joined into its character first."""
    if "\x00" in value:
        value = value.replace("\x00", "\ufffd")
    if _SURROGATE.search(value):
        value = value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
        value = _SURROGATE.sub("\ufffd", value)
    return value


def clean_json(value: Any) -> Any:
    """`clean_text` over every string (keys too) of a JSON value."""
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, dict):
        return {clean_json(k) if isinstance(k, str) else k: clean_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean_json(v) for v in value]
    return value


class SafeText(TypeDecorator[str]):
    """TEXT that never fails on NUL or lone surrogates (see `clean_text`), identically on both databases."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Any) -> Any:
        return clean_text(value) if isinstance(value, str) else value


class SafeString(SafeText):
    """VARCHAR(n) with the same cleaning as `SafeText`."""

    impl = String
    cache_ok = True


class SafeJSON(TypeDecorator[Any]):
    """JSON whose strings are cleaned like `SafeText`, so a reply or finding with a NUL is kept, not lost."""

    impl = JSON
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Any) -> Any:
        return clean_json(value)


# --------------------------------------------------------------------------- schema


class Base(DeclarativeBase):
    """One schema for SQLite and PostgreSQL: portable types only, JSON for nested lists."""


class Run(Base):
    """One graph run: the request, how it ended, and the final answer; written when it starts (`running`), after
    each cycle, and when it ends; `interrupted` when the process running it died first."""

    __tablename__ = "runs"

    id: Mapped[str] = mapped_column(SafeString(32), primary_key=True)
    thread_id: Mapped[str | None] = mapped_column(SafeString(200), index=True)
    request: Mapped[str] = mapped_column(SafeText)
    pipeline: Mapped[str | None] = mapped_column(SafeString(100), index=True)
    model: Mapped[str | None] = mapped_column(SafeString(200), index=True)
    status: Mapped[str] = mapped_column(SafeString(20), index=True)
    stop_reason: Mapped[str | None] = mapped_column(SafeString(50))
    cycles: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(SafeText)
    response: Mapped[str | None] = mapped_column(SafeText)
    code: Mapped[str | None] = mapped_column(SafeText)
    config_yaml: Mapped[str | None] = mapped_column(SafeText)
    messages: Mapped[list[dict[str, Any]]] = mapped_column(SafeJSON, default=list)
    options: Mapped[dict[str, Any]] = mapped_column(SafeJSON, default=dict)
    docs_source: Mapped[str | None] = mapped_column(SafeString(300))
    doc_sections: Mapped[list[dict[str, Any]]] = mapped_column(SafeJSON, default=list)
    prompt_tokens: Mapped[int | None] = mapped_column(Integer)
    input_tokens: Mapped[int | None] = mapped_column(Integer)
    output_tokens: Mapped[int | None] = mapped_column(Integer)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), index=True)
    duration_ms: Mapped[float | None] = mapped_column(Float)
    target: Mapped[str | None] = mapped_column(SafeString(100))
    owner: Mapped[str | None] = mapped_column(SafeString(200))
    """The process writing the run, `host:boot:pid:start` (see `process_owner`): how a dead one's runs are found."""
    updated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    """The last write (start, each cycle, the end): when the run was last seen alive."""
    tokens_used: Mapped[int | None] = mapped_column(Integer)
    """Tokens sent and received over all cycles, as the token budget counts them."""
    experiment: Mapped[str | None] = mapped_column(SafeString(100), index=True)
    """The experiment (`dream-graph eval`) the run belongs to; `configurable.experiment`."""
    task: Mapped[str | None] = mapped_column(SafeString(100))
    """The suite task the run answers; `configurable.task`."""

    cycle_rows: Mapped[list[Cycle]] = relationship(
        back_populates="run", cascade="all, delete-orphan", order_by="Cycle.cycle"
    )


class Cycle(Base):
    """One LLM generation and its checks; `message_index` is the reply's position in `runs.messages`."""

    __tablename__ = "cycles"
    __table_args__ = (UniqueConstraint("run_id", "cycle"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    cycle: Mapped[int] = mapped_column(Integer)
    model: Mapped[str | None] = mapped_column(SafeString(200))
    message_index: Mapped[int | None] = mapped_column(Integer)
    prompt_messages: Mapped[list[dict[str, Any]] | None] = mapped_column(SafeJSON)
    reply: Mapped[str | None] = mapped_column(SafeText)
    code: Mapped[str | None] = mapped_column(SafeText)
    config_yaml: Mapped[str | None] = mapped_column(SafeText)
    passed: Mapped[bool | None] = mapped_column(Boolean)
    latency_ms: Mapped[float | None] = mapped_column(Float)
    input_tokens: Mapped[int | None] = mapped_column(Integer)
    output_tokens: Mapped[int | None] = mapped_column(Integer)
    llm_ok: Mapped[bool | None] = mapped_column(Boolean)
    llm_error: Mapped[str | None] = mapped_column(SafeText)
    llm_calls: Mapped[list[dict[str, Any]]] = mapped_column(SafeJSON, default=list)

    run: Mapped[Run] = relationship(back_populates="cycle_rows")
    evaluations: Mapped[list[EvaluationRow]] = relationship(
        back_populates="cycle_row", cascade="all, delete-orphan", order_by="EvaluationRow.evaluator"
    )


class EvaluationRow(Base):
    """One evaluator's verdict on one cycle."""

    __tablename__ = "evaluations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    cycle_id: Mapped[int] = mapped_column(ForeignKey("cycles.id", ondelete="CASCADE"), index=True)
    run_id: Mapped[str] = mapped_column(SafeString(32), index=True)
    cycle: Mapped[int] = mapped_column(Integer)
    evaluator: Mapped[str] = mapped_column(SafeString(100), index=True)
    passed: Mapped[bool] = mapped_column(Boolean)
    duration_ms: Mapped[float | None] = mapped_column(Float)

    cycle_row: Mapped[Cycle] = relationship(back_populates="evaluations")
    findings: Mapped[list[FindingRow]] = relationship(
        back_populates="evaluation", cascade="all, delete-orphan", order_by="FindingRow.id"
    )


class FindingRow(Base):
    """One finding; its own table so "most frequent findings by rule" is a GROUP BY."""

    __tablename__ = "findings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    evaluation_id: Mapped[int] = mapped_column(ForeignKey("evaluations.id", ondelete="CASCADE"), index=True)
    run_id: Mapped[str] = mapped_column(SafeString(32), index=True)
    evaluator: Mapped[str] = mapped_column(SafeString(100))
    rule: Mapped[str] = mapped_column(SafeString(100), index=True)
    line: Mapped[int | None] = mapped_column(Integer)
    severity: Mapped[str | None] = mapped_column(SafeString(20))
    message: Mapped[str] = mapped_column(SafeText)

    evaluation: Mapped[EvaluationRow] = relationship(back_populates="findings")


# --------------------------------------------------------------------------- configuration


def default_db_path() -> Path:
    """A per-user file, so recording works out of the box and never litters the working directory."""
    from platformdirs import user_data_path

    return user_data_path("dream_graph", appauthor=False) / "runs.sqlite"


def store_url(settings: Settings | None = None) -> str | None:
    """`DREAM_GRAPH_DB` as a SQLAlchemy URL, or None when recording is off."""
    raw = (settings or get_settings()).db
    if raw is None:
        return f"sqlite:///{default_db_path()}"
    raw = raw.strip()
    if raw.lower() in DISABLED_VALUES:
        return None
    if "://" not in raw:  # a plain file path
        return f"sqlite:///{Path(raw).expanduser().resolve()}"
    try:
        url = make_url(raw)
    except ArgumentError as exc:
        raise ConfigError(
            f"DREAM_GRAPH_DB={raw!r} is not a database URL ({exc}); use a file path, "
            "sqlite:///path, postgresql://user@host/db, or off"
        ) from None
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    return url.render_as_string(hide_password=False)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    """WAL lets the service read while a run is written (the checkpointer uses the same mode); NORMAL sync is safe in WAL."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def make_engine(url: str) -> Engine:
    """An engine for `url`; a SQLite file gets its folder created and a generous busy timeout."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30}, hide_parameters=True)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    # A database that is down must cost a run seconds, not the OS's TCP timeout: recording waits for it.
    timeout = {} if "connect_timeout" in parsed.query else {"connect_timeout": 5}
    return create_engine(url, pool_pre_ping=True, connect_args=timeout, hide_parameters=True)


# --------------------------------------------------------------------------- which process is running a run

_BOOT_ID = Path("/proc/sys/kernel/random/boot_id")
_owners: dict[int, str] = {}


def _boot_id() -> str:
    """This boot of this host (Linux), so pids from before a reboot are never taken for live ones; `-` elsewhere."""
    try:
        return _BOOT_ID.read_text(encoding="ascii").strip() or "-"
    except OSError:
        return "-"


def _process_start(pid: int) -> str | None:
    """When `pid` started (clock ticks after boot, from /proc), or None when no such live process (zombies count as
    gone); this tells a reused pid from the writer."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[-1].split()
    if len(fields) < 20 or fields[0] in ("Z", "X"):
        return None
    return fields[19]


def process_owner() -> str:
    """This process as `host:boot:pid:start`, written on every run it records (computed once per pid, fork-safe)."""
    pid = os.getpid()
    owner = _owners.get(pid)
    if owner is None:
        start = _process_start(pid) if _BOOT_ID.exists() else None
        owner = f"{socket.gethostname()}:{_boot_id()}:{pid}:{start or '-'}"
        _owners[pid] = owner
    return owner


def owner_is_gone(owner: str | None) -> bool:
    """True when `owner` was a process of this host that is no longer running. A process of another host is never
    judged gone: its pid means nothing here (the documented multi-host limit)."""
    parts = (owner or "").rsplit(":", 3)
    if len(parts) != 4:
        return True  # no owner recorded: nothing can be writing it
    host, boot, pid_text, start = parts
    if host != socket.gethostname():
        return False
    if boot != _boot_id() or not pid_text.isdigit() or int(pid_text) <= 0:
        return True
    pid = int(pid_text)
    if start != "-":
        return _process_start(pid) != start
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


# --------------------------------------------------------------------------- building rows from a state


def _now() -> datetime:
    return datetime.now(UTC)


def _utc(value: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; everything stored is UTC."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


def _iso(value: datetime | None) -> str | None:
    value = _utc(value)
    return value.isoformat() if value else None


def message_dict(message: Any) -> dict[str, Any]:
    """A message as plain `{role, content}` (the shape chat fine-tuning datasets use)."""
    if isinstance(message, dict):
        return {
            "role": str(message.get("role") or message.get("type") or "unknown"),
            "content": str(message.get("content", "")),
        }
    content = message.content if isinstance(message.content, str) else str(message.content)
    return {"role": getattr(message, "type", "unknown"), "content": content}


def _reply_cycles(state: dict[str, Any], messages: list[Any]) -> dict[int, int]:
    """Map cycle -> index of its reply in `messages`, aligned from the end (a trimmed history loses old replies)."""
    cycles = int(state.get("cycles") or 0)
    last_with_reply = cycles - 1 if state.get("status") == "error" else cycles
    replies = [
        i
        for i, m in enumerate(messages)
        if getattr(m, "type", None) == "ai" or (isinstance(m, dict) and m.get("role") == "ai")
    ]
    pairs = zip(range(last_with_reply, 0, -1), reversed(replies))
    return {cycle: index for cycle, index in pairs}


def _sum(values: list[Any]) -> int | float | None:
    present = [v for v in values if isinstance(v, (int, float))]
    return sum(present) if present else None


def _cycle_llm(calls: list[dict[str, Any]], message: Any) -> dict[str, Any]:
    """Latency and tokens for one cycle: from `llm_calls` when recorded, else from the reply's usage metadata."""
    usage = getattr(message, "usage_metadata", None) or {}
    if not calls:
        return {
            "latency_ms": None,
            "input_tokens": usage.get("input_tokens"),
            "output_tokens": usage.get("output_tokens"),
            "llm_ok": None if message is None else True,
            "llm_error": None,
            "model": None,
        }
    errors = [c.get("error") for c in calls if c.get("error")]
    return {
        "latency_ms": _sum([c.get("latency_ms") for c in calls]),
        "input_tokens": _sum([c.get("input_tokens") for c in calls]) or usage.get("input_tokens"),
        "output_tokens": _sum([c.get("output_tokens") for c in calls]) or usage.get("output_tokens"),
        "llm_ok": any(c.get("ok") for c in calls),
        "llm_error": errors[-1] if errors else None,
        "model": calls[-1].get("model"),  # a cycle's calls end with the one that answered, if any did
    }


def _pipeline(state: dict[str, Any], config: RunnableConfig | None) -> str | None:
    """The pipeline name where another part of the app put it: the state, the context, or `configurable`."""
    if state.get("pipeline"):
        return str(state["pipeline"])
    try:
        value = getattr(run_options(config), "pipeline", None)
    except Exception:  # options that cannot be read must not stop the recording
        value = None
    if value is None:
        value = ((config or {}).get("configurable") or {}).get("pipeline")
    return str(value) if value else None


def _options(config: RunnableConfig | None) -> dict[str, Any]:
    try:
        return {
            k: v
            for k, v in asdict(run_options(config)).items()
            if isinstance(v, (str, int, float, bool, list, type(None)))
        }
    except Exception:  # the options are a nice-to-have in the record
        return {}


def _target_spec() -> str | None:
    """The target framework runs are written for (`name==version`); None when it cannot be loaded."""
    try:
        from dream_graph.targets import get_target

        return get_target().spec
    except Exception:  # a broken target setting fails the run elsewhere, with its own message
        return None


def run_from_state(state: dict[str, Any], config: RunnableConfig | None = None, *, final: bool = True) -> Run:
    """A graph state as a `Run` with its cycles, evaluations and findings; `final=False` is a run still going
    (status `running`, no finish time), as written when it starts and after each cycle."""
    messages: list[Any] = list(state.get("messages") or [])
    reply_at = _reply_cycles(state, messages)
    calls: list[dict[str, Any]] = [c for c in state.get("llm_calls") or [] if isinstance(c, dict)]
    evaluations = state.get("evaluations") or []
    cycles = int(state.get("cycles") or 0)
    now = _now()
    finished = now if final else None
    started = _parse_time(state.get("started_at"))
    run_id = state.get("run_id") or uuid.uuid4().hex
    configurable = (config or {}).get("configurable") or {}
    run = Run(
        id=run_id,
        thread_id=configurable.get("thread_id"),
        request=str(state.get("prompt") or ""),
        pipeline=_pipeline(state, config),
        model=state.get("model"),
        status=str(state.get("status") or "unknown") if final else "running",
        stop_reason=state.get("stop_reason") if final else None,
        cycles=cycles,
        error=state.get("error"),
        response=state.get("response"),
        code=state.get("code"),
        config_yaml=state.get("config_yaml"),
        messages=[message_dict(m) for m in messages],
        options=_options(config),
        docs_source=state.get("docs_source"),
        doc_sections=list(state.get("doc_sections") or []),
        prompt_tokens=state.get("prompt_tokens"),
        started_at=started,
        finished_at=finished,
        duration_ms=round((finished - started).total_seconds() * 1000, 3) if started and finished else None,
        target=state.get("target") or _target_spec(),
        owner=process_owner(),
        tokens_used=state.get("tokens_used"),
        experiment=_short_key(configurable.get("experiment")),
        task=_short_key(configurable.get("task")),
        updated_at=now,
    )
    for number in range(1, cycles + 1):
        index = reply_at.get(number)
        message = messages[index] if index is not None else None
        reply = message_dict(message)["content"] if message is not None else None
        answered = next((c for c in calls if c.get("cycle") == number and c.get("reply") is not None), None)
        sent = answered or next((c for c in calls if c.get("cycle") == number and "sent_after_prompt" in c), None)
        prompt_messages = None
        if answered is not None:  # exact, even when the conversation was trimmed since
            reply = answered["reply"]
        if sent is not None:  # what this cycle asked, kept for a cycle whose provider failed as well
            prompt_messages = run.messages[:2] + list(sent.get("sent_after_prompt") or [])
        llm = _cycle_llm([c for c in calls if c.get("cycle") == number], message)
        current = [e for e in evaluations if e.get("cycle") == number]
        last = number == cycles
        row = Cycle(
            cycle=number,
            model=llm.pop("model") or state.get("model"),
            message_index=index,
            prompt_messages=prompt_messages,
            reply=reply,
            code=state.get("code") if last and reply is not None else (extract_python(reply) if reply else None),
            config_yaml=state.get("config_yaml")
            if last and reply is not None
            else (extract_yaml(reply) if reply else None),
            passed=all(e.get("passed") for e in current) if current else None,
            llm_calls=[
                {k: v for k, v in c.items() if k not in ("reply", "sent_after_prompt")}
                for c in calls
                if c.get("cycle") == number
            ],
            **llm,
        )
        for ev in sorted(current, key=lambda e: str(e.get("evaluator"))):
            ev_row = EvaluationRow(
                run_id=run_id,
                cycle=number,
                evaluator=str(ev.get("evaluator")),
                passed=bool(ev.get("passed")),
                duration_ms=ev.get("duration_ms"),
            )
            ev_row.findings = [
                FindingRow(
                    run_id=run_id,
                    evaluator=str(ev.get("evaluator")),
                    rule=str(f.get("rule") or "unknown"),
                    line=f.get("line"),
                    severity=f.get("severity"),
                    message=str(f.get("message") or ""),
                )
                for f in ev.get("findings") or []
            ]
            row.evaluations.append(ev_row)
        run.cycle_rows.append(row)
    run.input_tokens = _sum([c.input_tokens for c in run.cycle_rows])
    run.output_tokens = _sum([c.output_tokens for c in run.cycle_rows])
    return run


def _parse_time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return _utc(value)
    if isinstance(value, str) and value:
        try:
            return _utc(datetime.fromisoformat(value))
        except ValueError:
            return None
    return None


# --------------------------------------------------------------------------- reading rows back


def _short_key(value: Any) -> str | None:
    """An experiment or task id as the store keeps it (text, at most 100 characters)."""
    return None if value is None else str(value)[:100]


def run_summary(run: Run) -> dict[str, Any]:
    """The list view of a run."""
    return {
        "id": run.id,
        "thread_id": run.thread_id,
        "request": run.request,
        "pipeline": run.pipeline,
        "model": run.model,
        "status": run.status,
        "stop_reason": run.stop_reason,
        "cycles": run.cycles,
        "input_tokens": run.input_tokens,
        "output_tokens": run.output_tokens,
        "started_at": _iso(run.started_at),
        "finished_at": _iso(run.finished_at),
        "updated_at": _iso(run.updated_at),
        "duration_ms": run.duration_ms,
        "target": run.target,
        "owner": run.owner,
        "tokens_used": run.tokens_used,
        "experiment": run.experiment,
        "task": run.task,
    }


def _evaluation_dict(ev: EvaluationRow) -> dict[str, Any]:
    return {
        "evaluator": ev.evaluator,
        "passed": ev.passed,
        "duration_ms": ev.duration_ms,
        "findings": [
            {"rule": f.rule, "line": f.line, "severity": f.severity, "message": f.message} for f in ev.findings
        ],
    }


def _cycle_dict(cycle: Cycle) -> dict[str, Any]:
    return {
        "cycle": cycle.cycle,
        "model": cycle.model,
        "message_index": cycle.message_index,
        "reply": cycle.reply,
        "code": cycle.code,
        "config_yaml": cycle.config_yaml,
        "prompt_messages": cycle.prompt_messages,
        "passed": cycle.passed,
        "latency_ms": cycle.latency_ms,
        "input_tokens": cycle.input_tokens,
        "output_tokens": cycle.output_tokens,
        "llm_ok": cycle.llm_ok,
        "llm_error": cycle.llm_error,
        "llm_calls": cycle.llm_calls or [],
        "evaluations": [_evaluation_dict(ev) for ev in cycle.evaluations],
    }


def run_detail(run: Run) -> dict[str, Any]:
    """Everything recorded about one run."""
    return {
        **run_summary(run),
        "error": run.error,
        "response": run.response,
        "code": run.code,
        "config_yaml": run.config_yaml,
        "messages": run.messages or [],
        "options": run.options or {},
        "docs_source": run.docs_source,
        "doc_sections": run.doc_sections or [],
        "prompt_tokens": run.prompt_tokens,
        "cycle_details": [_cycle_dict(c) for c in run.cycle_rows],
    }


def cycle_record(run: Run, cycle: Cycle) -> dict[str, Any]:
    """One cycle as one flat export line: the prompt messages and the reply, ready for a dataset."""
    messages = run.messages or []
    if cycle.prompt_messages is not None:
        prompt = cycle.prompt_messages
    else:
        prompt = messages[: cycle.message_index] if cycle.message_index is not None else []
    findings = [
        {"evaluator": ev.evaluator, "rule": f.rule, "line": f.line, "severity": f.severity, "message": f.message}
        for ev in cycle.evaluations
        for f in ev.findings
    ]
    return {
        "run_id": run.id,
        "thread_id": run.thread_id,
        "cycle": cycle.cycle,
        "request": run.request,
        "pipeline": run.pipeline,
        "model": cycle.model or run.model,
        "messages": prompt,
        "reply": cycle.reply,
        "code": cycle.code,
        "config_yaml": cycle.config_yaml,
        "passed": cycle.passed,
        "evaluations": {ev.evaluator: ev.passed for ev in cycle.evaluations},
        "findings": findings,
        "latency_ms": cycle.latency_ms,
        "input_tokens": cycle.input_tokens,
        "output_tokens": cycle.output_tokens,
        "run_status": run.status,
        "stop_reason": run.stop_reason,
        "final_cycle": cycle.cycle == run.cycles,
        "finished_at": _iso(run.finished_at),
    }


# --------------------------------------------------------------------------- the store


INTERRUPTED = "interrupted"
"""The status of a run whose process stopped (killed, crashed, shut down) before the run ended."""


def _last_seen() -> Any:
    """The order key of a run: when it ended, else when it was last written (a run still going or interrupted)."""
    return func.coalesce(Run.finished_at, Run.updated_at, Run.started_at)


class RunStore:
    """Write and read runs through SQLAlchemy; the tables are created on first use, and a store made by an older
    version gets the columns it lacks (there is no migration tool: `upgrade_schema` is the whole migration)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        Base.metadata.create_all(engine)
        self.upgrade_schema()

    def upgrade_schema(self) -> list[str]:
        """Add the `runs` columns an older store lacks and let `finished_at` be empty (a run still going has none);
        returns what was changed. Safe to run from several processes at once."""
        columns = {c["name"]: c for c in inspect(self.engine).get_columns("runs")}
        missing = [c for c in Run.__table__.columns if c.name not in columns]
        if not missing and columns["finished_at"]["nullable"]:
            return []
        if self.engine.dialect.name == "sqlite":
            return self._upgrade_sqlite()
        return self._upgrade_in_place(missing, not columns["finished_at"]["nullable"])

    def _upgrade_in_place(self, missing: list[Any], finished_required: bool) -> list[str]:
        """PostgreSQL (and others): ALTER TABLE, idempotent so that concurrent start-ups do not trip on each other."""
        dialect = self.engine.dialect
        guard = "IF NOT EXISTS " if dialect.name == "postgresql" else ""
        changes = []
        with self.engine.begin() as conn:
            for column in missing:
                conn.exec_driver_sql(f"ALTER TABLE runs ADD COLUMN {guard}{column.name} {column.type.compile(dialect)}")
                changes.append(f"added runs.{column.name}")
            if finished_required and dialect.name == "postgresql":
                conn.exec_driver_sql("ALTER TABLE runs ALTER COLUMN finished_at DROP NOT NULL")
                changes.append("runs.finished_at may be empty")
            elif finished_required:
                logger.warning(
                    "runs.finished_at is NOT NULL in this %s store: runs in progress cannot be recorded "
                    "until it is made nullable",
                    dialect.name,
                )
        if changes:
            logger.info("run store upgraded: %s", "; ".join(changes))
        return changes

    def _upgrade_sqlite(self) -> list[str]:
        """SQLite cannot drop NOT NULL in place: copy `runs` into a table of the new shape (under a write lock,
        re-checked inside it, so two processes opening one file upgrade it once)."""
        table = Run.__table__
        changes = []
        with self.engine.connect() as conn:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
            columns = {row[1]: row for row in conn.exec_driver_sql("PRAGMA table_info(runs)")}
            if columns["finished_at"][3]:  # notnull
                create = str(CreateTable(table).compile(dialect=conn.dialect))
                conn.exec_driver_sql(create.replace("CREATE TABLE runs (", "CREATE TABLE runs_upgrade (", 1))
                shared = ", ".join(c.name for c in table.columns if c.name in columns)
                conn.exec_driver_sql(f"INSERT INTO runs_upgrade ({shared}) SELECT {shared} FROM runs")
                conn.exec_driver_sql("DROP TABLE runs")
                conn.exec_driver_sql("ALTER TABLE runs_upgrade RENAME TO runs")
                for index in table.indexes:
                    conn.exec_driver_sql(str(CreateIndex(index).compile(dialect=conn.dialect)))
                changes.append("rebuilt runs: finished_at may be empty")
                columns = {c.name: None for c in table.columns}
            for column in table.columns:
                if column.name not in columns:
                    conn.exec_driver_sql(
                        f"ALTER TABLE runs ADD COLUMN {column.name} {column.type.compile(conn.dialect)}"
                    )
                    changes.append(f"added runs.{column.name}")
            conn.commit()
        if changes:
            logger.info("run store upgraded: %s", "; ".join(changes))
        return changes

    @classmethod
    def from_url(cls, url: str) -> RunStore:
        """A store on `url` (a SQLAlchemy URL; `postgresql://` means psycopg 3)."""
        parsed = make_url(url)
        if parsed.drivername in ("postgresql", "postgres"):
            url = parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
        return cls(make_engine(url))

    def record(self, run: Run) -> str:
        """Insert `run`, replacing a row with the same id (a resumed run may be recorded twice)."""
        run_id = run.id
        with Session(self.engine) as session, session.begin():
            old = session.get(Run, run_id)
            if old is not None:
                session.delete(old)
                session.flush()
            session.add(run)
        return run_id

    def record_state(self, state: dict[str, Any], config: RunnableConfig | None = None, *, final: bool = True) -> str:
        """Record a graph state (finished, or with `final=False` still going); returns the run id."""
        return self.record(run_from_state(state, config, final=final))

    def mark_interrupted(
        self, *, only: set[str] | None = None, owner: str | None = None, reason: str | None = None
    ) -> list[str]:
        """Runs left `running` by a process of this host that is gone become `interrupted` (with `owner`: that
        process's runs, gone or not, e.g. at its own shutdown); returns their ids. Runs of live processes and of
        other hosts are left alone; each row is changed only if still `running` under the same owner."""
        query = select(Run.id, Run.owner, Run.thread_id).where(Run.status == "running")
        if only is not None:
            query = query.where(Run.id.in_(sorted(only)))
        with Session(self.engine) as session:
            rows = session.execute(query).all()
        chosen = [r for r in rows if (r.owner == owner if owner is not None else owner_is_gone(r.owner))]
        marked = []
        with Session(self.engine) as session, session.begin():
            for run_id, run_owner, thread_id in chosen:
                hint = (
                    f"; if it was checkpointed, resume it with `dream-graph generate --resume --thread {thread_id}`"
                    if thread_id
                    else ""
                )
                same_owner = Run.owner.is_(None) if run_owner is None else Run.owner == run_owner
                result = session.execute(
                    update(Run)
                    .where(Run.id == run_id, Run.status == "running", same_owner)
                    .values(
                        status=INTERRUPTED,
                        stop_reason=INTERRUPTED,
                        error=(
                            reason or f"the process running it ({run_owner or 'unknown'}) stopped before the run ended"
                        )
                        + hint,
                    )
                )
                if result.rowcount:
                    marked.append(run_id)
        return marked

    def _resolve(self, session: Session, run_id: str) -> Run | None:
        run = session.get(Run, run_id)
        if run is not None or len(run_id) < 4:
            return run
        matches = session.scalars(select(Run).where(Run.id.startswith(run_id, autoescape=True)).limit(2)).all()
        return matches[0] if len(matches) == 1 else None

    def get_run(self, run_id: str) -> dict[str, Any] | None:
        """One run with its cycles, by id or a unique id prefix (at least 4 characters)."""
        with Session(self.engine) as session:
            run = self._resolve(session, run_id)
            return run_detail(run) if run is not None else None

    def list_runs(
        self,
        *,
        limit: int = 50,
        offset: int = 0,
        status: str | None = None,
        pipeline: str | None = None,
        model: str | None = None,
        thread_id: str | None = None,
        experiment: str | None = None,
    ) -> list[dict[str, Any]]:
        """Newest first, optionally filtered."""
        query = select(Run).order_by(_last_seen().desc(), Run.id).limit(limit).offset(offset)
        for column, value in (
            (Run.status, status),
            (Run.pipeline, pipeline),
            (Run.model, model),
            (Run.thread_id, thread_id),
            (Run.experiment, experiment),
        ):
            if value is not None:
                query = query.where(column == value)
        with Session(self.engine) as session:
            return [run_summary(r) for r in session.scalars(query)]

    def count_runs(self) -> int:
        """How many runs are recorded."""
        with Session(self.engine) as session:
            return int(session.scalar(select(func.count()).select_from(Run)) or 0)

    def iter_cycles(self, *, batch: int = 200) -> Iterator[dict[str, Any]]:
        """Every recorded cycle as a flat record, oldest run first, loaded in batches."""
        offset = 0
        while True:
            with Session(self.engine) as session:
                runs = session.scalars(
                    select(Run)
                    .order_by(_last_seen(), Run.id)
                    .limit(batch)
                    .offset(offset)
                    .options(
                        selectinload(Run.cycle_rows)
                        .selectinload(Cycle.evaluations)
                        .selectinload(EvaluationRow.findings)
                    )
                ).all()
                records = [cycle_record(run, cycle) for run in runs for cycle in run.cycle_rows]
            yield from records
            if len(runs) < batch:
                return
            offset += batch


# --------------------------------------------------------------------------- the process-wide store used by the graph

_lock = threading.Lock()
_current: tuple[str, RunStore] | None = None
_record_errors = 0


def get_store(url: str | None = None) -> RunStore | None:
    """The store for `url` (default: `DREAM_GRAPH_DB`), kept open between runs; None when recording is off."""
    global _current
    url = url if url is not None else store_url()
    if url is None:
        return None
    with _lock:
        if _current is not None and _current[0] == url:
            return _current[1]
        if _current is not None:
            _current[1].engine.dispose()
        store = RunStore.from_url(url)
        _current = (url, store)
        return store


def record_error_count() -> int:
    """Run-store writes this process failed (each logged: a run's start, a cycle, its end); the runs went on."""
    return _record_errors


def _count_error() -> None:
    global _record_errors
    with _lock:
        _record_errors += 1


_open_runs: set[str] = set()
"""Runs this process wrote as `running` and has not finished: marked `interrupted` at its shutdown."""

_run_scope: ContextVar[list[str] | None] = ContextVar("dream_graph_run_scope", default=None)
"""The runs one graph call (one `stream`/`astream`) started, so it can close them if it ends early."""

IN_FLIGHT_BACKOFF_SECONDS = 30.0
"""After a write failed for want of a database, in-flight writes (start, cycles) are skipped this long (until a write
succeeds): a database that is down costs a run one connect timeout (its final write), not one per cycle."""
_last_failure = float("-inf")


def safe_error(exc: BaseException) -> str:
    """A store failure in one line, for callers: the database's own message, never the SQL or its parameters."""
    cause = getattr(exc, "orig", None) or exc
    lines = str(cause).strip().splitlines()
    text = lines[0] if lines else ""
    text = text.split("[SQL:", 1)[0].split("[parameters:", 1)[0].strip()
    return f"{type(cause).__name__}: {text[:300]}" if text else type(cause).__name__


def record_safely(state: dict[str, Any], config: RunnableConfig | None = None, *, final: bool = True) -> dict[str, Any]:
    """Write a run (finished, or with `final=False` just started or after a cycle); any store failure is logged
    and counted, never raised, so the run goes on and its result stands."""
    global _last_failure
    if not final and time.monotonic() - _last_failure < IN_FLIGHT_BACKOFF_SECONDS:
        return {"record_error": "not written: the run store failed moments ago (the final write will try again)"}
    try:
        store = get_store()
        if store is None:
            return {}
        run_id = store.record_state(state, config, final=final)
    except Exception as exc:  # recording must never fail a run
        _count_error()
        if isinstance(exc, (OperationalError, InterfaceError, OSError)):  # the database, not this row
            _last_failure = time.monotonic()
        message = safe_error(exc)
        logger.warning("could not record run %s: %s", state.get("run_id"), message, exc_info=True)
        return {"record_error": message}
    with _lock:
        (_open_runs.discard if final else _open_runs.add)(run_id)
    scope = _run_scope.get()
    if not final and scope is not None and run_id not in scope:
        scope.append(run_id)
    _last_failure = float("-inf")
    return {"run_id": run_id, "record_error": None}


def recover_interrupted_runs(url: str | None = None) -> list[str]:
    """Start-up hook (service lifespan, `dream-graph runs`): runs left `running` by a process of this host that
    died become `interrupted`; a store that cannot be read is logged, never fatal."""
    try:
        store = get_store(url)
        marked = store.mark_interrupted() if store is not None else []
    except Exception as exc:  # start-up goes on; the next start tries again
        logger.warning("could not look for interrupted runs: %s", safe_error(exc))
        return []
    if marked:
        logger.warning(
            "%d run(s) left running by a stopped process marked interrupted: %s", len(marked), " ".join(marked)
        )
    return marked


def open_run_scope() -> list[str]:
    """Start collecting the runs this graph call writes (the nodes see it: their contexts are copies of this one)."""
    scope: list[str] = []
    _run_scope.set(scope)
    return scope


def close_run_scope(scope: list[str], exc: BaseException) -> list[str]:
    """A graph call ended early (an exception, a cancelled request, a consumer that stopped reading): its runs that
    were not finished become `interrupted` now, not at the next start of this process."""
    with _lock:
        mine = {run_id for run_id in scope if run_id in _open_runs}
        _open_runs.difference_update(mine)
    if not mine:
        return []
    reason = f"the run stopped early, before its end was written: {safe_error(exc)}"
    try:
        store = get_store()
        return store.mark_interrupted(only=mine, owner=process_owner(), reason=reason) if store is not None else []
    except Exception as failure:  # the caller's exception is what matters
        logger.warning("could not mark runs %s interrupted: %s", " ".join(sorted(mine)), safe_error(failure))
        return []


def interrupt_own_runs() -> list[str]:
    """Shutdown hook: this process's runs still `running` (cancelled, or failed before their end was written) become
    `interrupted`, so a live service never leaves them looking in progress after it stops."""
    with _lock:
        mine = set(_open_runs)
        _open_runs.clear()
    if not mine:
        return []
    try:
        store = get_store()
        return store.mark_interrupted(only=mine, owner=process_owner()) if store is not None else []
    except Exception as exc:  # shutting down regardless
        logger.warning("could not mark this process's unfinished runs interrupted: %s", safe_error(exc))
        return []


def new_run_fields() -> dict[str, Any]:
    """A run id and a start time, set when the conversation starts so a resumed run keeps them."""
    return {"run_id": uuid.uuid4().hex, "started_at": _now().isoformat()}


__all__ = [
    "Cycle",
    "EvaluationRow",
    "FindingRow",
    "Run",
    "RunStore",
    "close_run_scope",
    "get_store",
    "interrupt_own_runs",
    "new_run_fields",
    "open_run_scope",
    "record_error_count",
    "record_safely",
    "recover_interrupted_runs",
    "run_from_state",
    "store_url",
]


def to_jsonable(state: dict[str, Any]) -> dict[str, Any]:
    """The output state as plain JSON (messages as role/content pairs, as the run store keeps them)."""
    return {**state, "messages": [message_dict(m) for m in state.get("messages") or []]}
