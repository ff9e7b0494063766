"""The HTTP service: LangServe routes per pipeline, /generate, the Slack command, the GitHub webhook, /healthz."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import re
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import fields
from typing import Any
from urllib.parse import parse_qs

from asgi_correlation_id import CorrelationIdMiddleware, correlation_id
from fastapi import BackgroundTasks, Depends, FastAPI, Header, HTTPException, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from langchain_core.runnables import Runnable, RunnableBinding
from langserve import add_routes
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from dream_graph import __version__
from dream_graph.service import slack
from dream_graph.service.auth import require_api_key
from dream_graph.store import to_jsonable
from dream_graph.context import Context
from dream_graph.docs import docs_holder
from dream_graph.errors import ConfigError, DreamGraphError, PromptError
from dream_graph.evaluators.ruff_server import shutdown_server
from dream_graph.llm import load_chat_model, resolve_model_spec
from dream_graph.offline import OFFLINE_LABEL, OFFLINE_MODEL_ID
from dream_graph.prompts import validate_request
from dream_graph.service.runs_api import router as runs_router
from dream_graph.settings import get_settings
from dream_graph.service.webhooks import SignatureError, verify_github_signature
from dream_graph.workers import shutdown_pool

log = logging.getLogger(__name__)

DEFAULT_PIPELINE = "dream"
RETRY_AFTER_SECONDS = 5
MAX_BODY_BYTES = 1_000_000
RESERVED_PATHS = frozenset({"generate", "healthz", "slack", "github", "docs", "redoc", "openapi.json", "runs"})
_RUN_PATH = re.compile(r"^/(generate|[\w.-]+/(invoke|batch|stream|stream_log|stream_events))/?$")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


# ---------------------------------------------------------------- concurrency


class Busy(Exception):
    """Every run slot and every queue place is taken."""


class RunLimiter:
    """At most `limit` graph runs at once and `queue` more waiting; beyond that callers are told to retry."""

    def __init__(self, limit: int, queue: int) -> None:
        self.limit, self.queue = limit, queue
        self._slots = asyncio.Semaphore(limit)
        self._admitted = 0

    @property
    def admitted(self) -> int:
        """Runs running or waiting now."""
        return self._admitted

    def admit(self) -> None:
        """Take a place (running or queued) now, or raise Busy; pair with `running(admitted=True)`."""
        if self._admitted >= self.limit + self.queue:
            raise Busy(f"{self.limit} runs are in progress and {self.queue} more are queued; retry later")
        self._admitted += 1

    @asynccontextmanager
    async def running(self, *, admitted: bool = False) -> AsyncIterator[None]:
        """Wait for a run slot; the place taken by `admit` is given back on exit, even on cancellation."""
        if not admitted:
            self.admit()
        try:
            async with self._slots:
                yield
        finally:
            self._admitted -= 1


def _error(status: int, detail: Any, headers: dict[str, str] | None = None) -> JSONResponse:
    """The one error shape: `{detail, request_id}`."""
    return JSONResponse({"detail": detail, "request_id": correlation_id.get()}, status_code=status, headers=headers)


class RunGateMiddleware:
    """Puts every graph-running request (including LangServe streams) through the limiter, and caps body size."""

    def __init__(self, app: ASGIApp, limiter: RunLimiter) -> None:
        self.app, self.limiter = app, limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length", b"0")
        if length.isdigit() and int(length) > MAX_BODY_BYTES:
            await _error(413, f"request body is {int(length)} bytes; the limit is {MAX_BODY_BYTES}")(scope, receive, send)
            return
        if not _RUN_PATH.match(scope["path"]):
            await self.app(scope, receive, send)
            return
        try:
            self.limiter.admit()
        except Busy as exc:  # Retry-After, so well-behaved clients back off instead of hammering the queue
            await _error(503, str(exc), {"Retry-After": str(RETRY_AFTER_SECONDS)})(scope, receive, send)
            return
        async with self.limiter.running(admitted=True):
            await self.app(scope, receive, send)


# ---------------------------------------------------------------- pipelines


def default_graphs() -> dict[str, Runnable]:
    """`dream` (the default pipeline, options from the environment) plus one graph per named pipeline."""
    from dream_graph.graph import build_graph, graph
    from dream_graph.pipelines import load_pipelines

    graphs: dict[str, Runnable] = {DEFAULT_PIPELINE: graph}
    for name, pipeline in load_pipelines().items():
        graphs.setdefault(name, build_graph(pipeline=pipeline))
    return graphs


def without_null(schema: Any) -> Any:
    """`X | None` fields as plain `X`: the playground's form renderer fails on `{"type": "null"}`."""
    if isinstance(schema, list):
        return [without_null(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    schema = {key: without_null(value) for key, value in schema.items()}
    options = [o for o in schema.get("anyOf", []) if o != {"type": "null"}]
    if "anyOf" in schema and len(options) == 1:
        del schema["anyOf"]
        schema = {**options[0], **schema}
    return schema


BULKY_KEYS = frozenset({"documentation", "messages", "doc_sections"})


def slim_update(chunk: Any) -> Any:
    """A step's update without the prompt-sized keys, so a stream (and the playground) shows the reply, not the docs."""
    if not isinstance(chunk, dict):
        return chunk
    return {
        node: {k: v for k, v in update.items() if k not in BULKY_KEYS} if isinstance(update, dict) else update
        for node, update in chunk.items()
    }


class ServedGraph(RunnableBinding):
    """A graph as LangServe serves it: the same runs; `/stream` and the playground get slim step updates (the full
    state comes from `/invoke`), and the config schema is one the playground can render as a form."""

    async def astream(self, input: Any, config: Any = None, **kwargs: Any) -> AsyncIterator[Any]:
        async for chunk in super().astream(input, config, **kwargs):
            yield slim_update(chunk)

    def config_schema(self, *, include: Sequence[str] | None = None) -> type[BaseModel]:
        base = super().config_schema(include=include)

        def model_json_schema(cls: type[BaseModel], *args: Any, **kwargs: Any) -> dict[str, Any]:
            return without_null(base.model_json_schema(*args, **kwargs))

        return type(base.__name__, (base,), {"model_json_schema": classmethod(model_json_schema)})


def _check_route_names(graphs: dict[str, Any]) -> None:
    """A pipeline named like an endpoint would shadow it; refuse at start-up rather than misroute."""
    for name in graphs:
        if name in RESERVED_PATHS or not re.fullmatch(r"[\w.-]+", name):
            raise ConfigError(f"pipeline name {name!r} cannot be served at /{name}; rename it in the pipelines file")


# ---------------------------------------------------------------- request handling helpers


class GenerateRequest(BaseModel):
    """Body of POST /generate."""

    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(..., description="What the code should do, in plain language.")
    pipeline: str | None = Field(None, description="Pipeline name (GET /healthz lists them); default `dream`.")
    options: dict[str, Any] = Field(
        default_factory=dict, description="Per-run options: model, max_cycles, temperature, evaluators, ..."
    )


def _options_for(graph: Runnable, options: dict[str, Any]) -> Context:
    """The run's effective options (request over pipeline over environment); bad ones are the caller's error (422)."""
    known = {f.name for f in fields(Context)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise HTTPException(422, f"unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    try:
        return Context.from_run(options, getattr(graph, "config", None) or {})
    except (TypeError, ValueError) as exc:
        raise HTTPException(422, f"invalid options: {exc}") from None


def _check_model(ctx: Context) -> None:
    """Build the model once, so a missing key is a 400 before any work is done."""
    load_chat_model(resolve_model_spec(ctx.model), temperature=ctx.temperature, max_tokens=ctx.max_tokens)


def _provider_failure(result: dict[str, Any]) -> JSONResponse:
    """A run the provider broke is a bad gateway; the provider's own status is passed on."""
    status = result.get("provider_status")
    return JSONResponse(
        {
            "detail": f"the model provider failed: {result.get('error')}",
            "provider_status": status,
            "request_id": correlation_id.get(),
            "result": jsonable_encoder(to_jsonable(result)),
        },
        status_code=502,
    )


def _valid_request_id(value: str) -> bool:
    """Echo a caller's ID only when it is safe to put in logs and headers."""
    return bool(_REQUEST_ID.match(value))


# ---------------------------------------------------------------- the app


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    """The Bandit worker processes and the Ruff server belong to this service process: they stop with it."""
    yield
    await asyncio.to_thread(_stop_helpers)


def _stop_helpers() -> None:
    shutdown_pool()
    shutdown_server()


def create_app(
    graphs: dict[str, Runnable] | None = None,
    *,
    max_concurrent_runs: int | None = None,
    max_queued_runs: int | None = None,
) -> FastAPI:
    """Build the service; tests pass their own graphs (e.g. with a fake chat model) and limits."""
    settings = get_settings()
    graphs = graphs if graphs is not None else default_graphs()
    _check_route_names(graphs)
    limiter = RunLimiter(
        max_concurrent_runs or settings.max_concurrent_runs,
        settings.max_queued_runs if max_queued_runs is None else max_queued_runs,
    )
    app = FastAPI(
        title="dream_graph",
        version=__version__,
        description="Turn a plain-language request into checked code with an LLM. See the README's API section.",
        lifespan=_lifespan,
    )
    app.state.graphs, app.state.limiter, app.state.background = graphs, limiter, set()
    app.add_middleware(RunGateMiddleware, limiter=limiter)
    app.add_middleware(CorrelationIdMiddleware, header_name="X-Request-ID", validator=_valid_request_id)
    _add_error_handlers(app)
    _add_routes(app, graphs, limiter)
    app.include_router(runs_router)
    return app


def _add_error_handlers(app: FastAPI) -> None:
    """Every error is JSON `{detail, request_id}` with a status the caller can act on."""

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error(exc.status_code, exc.detail, getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _error(422, jsonable_encoder(exc.errors(), exclude={"input", "ctx", "url"}))

    @app.exception_handler(PromptError)
    async def prompt_error(request: Request, exc: PromptError) -> JSONResponse:
        return _error(422, str(exc))

    @app.exception_handler(ConfigError)
    async def config_error(request: Request, exc: ConfigError) -> JSONResponse:
        return _error(400, str(exc))

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        response = _error(500, "internal error; quote the request_id when reporting it")
        response.headers["X-Request-ID"] = correlation_id.get() or ""
        return response


def _add_routes(app: FastAPI, graphs: dict[str, Runnable], limiter: RunLimiter) -> None:
    """Wire every endpoint; the handlers are closures over this app's graphs and limiter."""
    guarded = [Depends(require_api_key)]
    for name, graph in graphs.items():
        add_routes(app, ServedGraph(bound=graph), path=f"/{name}", dependencies=guarded)

    def pick_graph(name: str | None) -> Runnable:
        name = name or DEFAULT_PIPELINE
        if name not in graphs:
            raise HTTPException(404, f"unknown pipeline {name!r}; known: {', '.join(sorted(graphs))}")
        return graphs[name]

    async def run(pipeline: str | None, prompt: str, options: dict[str, Any]) -> dict[str, Any]:
        """One graph run, never blocking the loop: model set-up in a thread, the graph via ainvoke."""
        graph = pick_graph(pipeline)
        prompt = validate_request(prompt)
        await asyncio.to_thread(_check_model, _options_for(graph, options))
        result = await graph.ainvoke({"prompt": prompt}, context=options)
        log.info("run finished: pipeline=%s status=%s cycles=%s model=%s",
                 pipeline or DEFAULT_PIPELINE, result.get("status"), result.get("cycles"), result.get("model"))
        return result

    @app.post("/generate", dependencies=guarded, tags=["generate"])
    async def generate(body: GenerateRequest) -> JSONResponse:
        """Generate and check code for a prompt; returns the output contract (see the README)."""
        result = await run(body.pipeline, body.prompt, body.options)
        if result.get("status") == "error":
            return _provider_failure(result)
        return JSONResponse(jsonable_encoder(to_jsonable(result)))

    @app.post("/slack/commands", tags=["integrations"])
    async def slack_command(
        request: Request,
        background: BackgroundTasks,
        x_slack_signature: str | None = Header(None),
        x_slack_request_timestamp: str | None = Header(None),
    ) -> JSONResponse:
        """Slack slash command: acknowledge at once, post the result to response_url when the run ends."""
        secret = get_settings().slack_signing_secret
        if secret is None:
            raise HTTPException(503, "Slack commands are disabled: set SLACK_SIGNING_SECRET to the app's signing secret")
        body = await request.body()
        try:
            slack.verify_slack_signature(secret.get_secret_value(), body, x_slack_request_timestamp, x_slack_signature)
        except SignatureError as exc:
            raise HTTPException(401, str(exc)) from None
        form = {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}
        if form.get("ssl_check"):
            return JSONResponse({})
        response_url = form.get("response_url", "")
        if not response_url.startswith(("https://", "http://")):
            raise HTTPException(422, "form field response_url is missing or not an http(s) URL")
        command = form.get("command", "/dream")
        try:
            prompt = validate_request(form.get("text", ""))
        except PromptError as exc:
            return JSONResponse(slack.error_message(f"{exc}. Usage: {command} <what the code should do>"))
        try:
            limiter.admit()
        except Busy:
            return JSONResponse(slack.error_message("dream_graph is busy right now; try the command again in a minute."))
        background.add_task(slack_run, prompt, response_url)
        return JSONResponse(slack.error_message(f"Working on: {prompt[:200]}\nThe result will be posted here."))

    async def slack_run(prompt: str, response_url: str) -> None:
        """The background half of a slash command; every outcome ends as a message to the user."""
        try:
            async with limiter.running(admitted=True):
                result = await run(None, prompt, {})
            message = slack.format_result(prompt, result)
        except DreamGraphError as exc:
            message = slack.error_message(f"dream_graph could not run the request: {exc}")
        except Exception:
            log.exception("Slack command run failed")
            message = slack.error_message(f"internal error (request id {correlation_id.get()})")
        await slack.post_response(response_url, message)

    @app.post("/github/webhook", tags=["integrations"])
    async def github_webhook(
        request: Request,
        x_github_event: str | None = Header(None),
        x_hub_signature_256: str | None = Header(None),
    ) -> JSONResponse:
        """GitHub webhook: `ping` answers pong, `push` refreshes the docs, other events are ignored."""
        secret = get_settings().github_webhook_secret
        if secret is None:
            raise HTTPException(503, "GitHub webhooks are disabled: set GITHUB_WEBHOOK_SECRET to the webhook's secret")
        body = await request.body()
        try:
            verify_github_signature(secret.get_secret_value(), body, x_hub_signature_256)
        except SignatureError as exc:
            raise HTTPException(401, str(exc)) from None
        try:
            payload = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise HTTPException(400, f"body is not valid JSON: {exc}") from None
        if not isinstance(payload, dict):
            raise HTTPException(400, "body must be a JSON object")
        if x_github_event == "ping":
            return JSONResponse({"event": "ping", "message": "pong", "zen": payload.get("zen")})
        if x_github_event == "push":
            from dream_graph.docs import refresh_docs

            result = await asyncio.to_thread(refresh_docs, payload)
            log.info("push webhook: refreshed=%s reason=%s", result.refreshed, result.reason)
            return JSONResponse({"event": "push", **jsonable_encoder(dataclasses.asdict(result))})
        return JSONResponse({"event": x_github_event, "ignored": True}, status_code=202)

    @app.get("/healthz", tags=["health"])
    async def healthz() -> JSONResponse:
        """Ready when the docs load and the configured model can be built; says which model `auto` means."""
        settings = get_settings()
        checks: dict[str, Any] = {"pipelines": sorted(graphs), "version": __version__}
        ok = True
        try:
            docset, sections = await asyncio.to_thread(docs_holder.get)
            checks["docs"] = {"loaded": True, "source": docset.source, "documents": len(docset.docs), "sections": len(sections)}
        except Exception as exc:  # any loading failure makes the service unready
            ok = False
            checks["docs"] = {"loaded": False, "error": str(exc)}
        spec = resolve_model_spec(settings.model)
        model: dict[str, Any] = {"setting": settings.model, "resolved": spec}
        if spec == OFFLINE_MODEL_ID:
            model["label"] = OFFLINE_LABEL
        try:
            await asyncio.to_thread(load_chat_model, spec)
            model["configured"] = True
        except ConfigError as exc:
            ok = False
            model.update(configured=False, error=str(exc))
        checks["model"] = model
        checks["runs"] = {"admitted": limiter.admitted, "limit": limiter.limit, "queue": limiter.queue}
        return JSONResponse({"status": "ok" if ok else "unavailable", **checks}, status_code=200 if ok else 503)


app = create_app()
