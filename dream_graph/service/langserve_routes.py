"""The per-pipeline LangServe routes: run options as a typed config schema, checked before any run starts.

LangServe keeps only the `configurable` keys its config schema declares, so every option of `Context` is declared
here (with its description and bounds, which the default playground renders as a form). `refuse_bad_requests`,
LangServe's public `per_req_config_modifier` hook, checks the options, the model's key and the prompt before the
response starts, so a bad request is a 4xx JSON body on invoke, batch and every stream route, never a broken stream.
The playgrounds read `stream_log` and show only streamed output, so a request from a playground page gets the
refusal (and the answer) as plain text in the stream instead.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import typing
from collections import OrderedDict
from collections.abc import AsyncIterator, Sequence
from typing import Any, ClassVar, Literal
from urllib.parse import urlparse

from fastapi import FastAPI, HTTPException, Request
from langchain_core.runnables import Runnable, RunnableBinding, RunnableConfig
from langserve import add_routes
from pydantic import BaseModel, ConfigDict, Field, create_model

from dream_graph.context import LINT_STRICTNESS, REQUEST_CAPS, SANDBOX_LIMITS, Context, check_request_caps
from dream_graph.errors import ConfigError, DreamGraphError, PromptError
from dream_graph.settings import get_settings

log = logging.getLogger(__name__)

REFUSAL = "dream_graph_refusal"
"""Config metadata key: why a playground request was refused (status and message), so the run shows it as text."""
TEXT_VIEW = "dream_graph_text_view"
"""Config metadata key: the request comes from a playground page, which shows streamed text, not JSON."""

LEVELS = ("LOW", "MEDIUM", "HIGH")
FIXED_BOUNDS: dict[str, dict[str, Any]] = {
    "max_cycles": {"ge": 1, "le": 20},
    "temperature": {"ge": 0.0, "le": 2.0},
    "max_tokens": {"ge": 1},
    "timeout": {"gt": 0},
    "max_retries": {"ge": 0, "le": 10},
    "docs_budget": {"ge": 0},
    "token_budget": {"ge": 1},
}
CHOICES: dict[str, tuple[str, ...]] = {
    "bandit_severity": LEVELS,
    "bandit_confidence": LEVELS,
    "lint_strictness": LINT_STRICTNESS,
}
BULKY_KEYS = frozenset({"documentation", "messages", "doc_sections"})


# ---------------------------------------------------------------- the options schema


def option_bounds() -> dict[str, dict[str, Any]]:
    """Limits the form shows and LangServe enforces: `Context`'s own ranges, lowered to this server's caps
    (settings); `Context` and `check_request_caps` check the same options again before a run starts."""
    settings = get_settings()
    bounds = {name: dict(limits) for name, limits in FIXED_BOUNDS.items()}
    for name, setting in REQUEST_CAPS.items():
        cap = getattr(settings, setting, None)
        if cap:
            bounds.setdefault(name, {})["le"] = min(cap, bounds.get(name, {}).get("le", cap))
            if name == "docs_budget":  # 0 means "all docs", which a capped server refuses
                bounds[name]["ge"] = 1
    for name, _variable, _unit, low in SANDBOX_LIMITS:
        bounds[name] = {"ge": low, "le": getattr(settings, name)}
    return bounds


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


def _option_type(name: str, hint: Any) -> Any:
    """The field's type as the form should offer it: a choice list where the values are fixed."""
    return Literal[CHOICES[name]] if name in CHOICES else hint  # type: ignore[valid-type]


def _shown_default(value: Any) -> Any:
    """The form starts from the effective value; an option with none (e.g. `docs`) starts empty, not null."""

    def update(schema: dict[str, Any]) -> None:
        if value is None:
            schema.pop("default", None)
        else:
            schema["default"] = value

    return update


def options_model(defaults: Context, name: str) -> type[BaseModel]:
    """Every run option as an optional field (unset = the pipeline's or the environment's value), described, bounded,
    with the effective default shown in the form; keys that are not options are kept so they can be refused by name."""
    hints = typing.get_type_hints(Context)
    bounds = option_bounds()
    fields: dict[str, Any] = {}
    for f in dataclasses.fields(Context):
        fields[f.name] = (
            _option_type(f.name, hints[f.name]) | None,
            Field(
                None,
                description=f.metadata.get("description"),
                json_schema_extra=_shown_default(getattr(defaults, f.name)),
                **bounds.get(f.name, {}),
            ),
        )
    title = "".join(part.capitalize() for part in name.replace("-", "_").replace(".", "_").split("_")) or "Pipeline"
    options = create_model(  # type: ignore[call-overload]
        f"{title}Options", __config__=ConfigDict(extra="allow", title=f"Run options of {name}"), **fields
    )
    # Optional, so LangServe keeps this model as it is (bounds included) when it renames the config model.
    return create_model(
        f"{title}RunConfig",
        configurable=(options | None, Field(None, title="Run options", description="Unset options take the defaults.")),
    )


def _form_ready(model: type[BaseModel]) -> type[BaseModel]:
    """The same model, its JSON schema without null types, which the playground's form cannot render."""

    def model_json_schema(cls: type[BaseModel], *args: Any, **kwargs: Any) -> dict[str, Any]:
        return without_null(BaseModel.model_json_schema.__func__(cls, *args, **kwargs))  # type: ignore[attr-defined]

    namespace = {"model_json_schema": classmethod(model_json_schema), "__module__": __name__}
    return type(model.__name__, (model,), namespace)


def graph_defaults(graph: Runnable) -> Context:
    """The options a run of this graph gets when the caller sets none (pipeline over environment)."""
    return Context.from_run({}, getattr(graph, "config", None) or {})


# ---------------------------------------------------------------- checking a request before it runs


def request_options(config: RunnableConfig) -> dict[str, Any]:
    """The options the caller set: LangServe's validated config has every option, None where unset (and a form
    sends "" for an empty text box); left in, a None would hide the pipeline's own value. A request naming a
    `model` and no `fallbacks` runs that model alone, as `--model` does on the command line."""
    configurable = dict(config.get("configurable") or {})
    options = {k: v for k, v in configurable.items() if v is not None and v != ""}
    if "model" in options:
        options.setdefault("fallbacks", [])
    return options


def check_options(graph: Runnable, options: dict[str, Any]) -> Context:
    """The run's effective options; anything that cannot work is a 422 naming the option (as on /generate)."""
    from dream_graph.docs import check_run_source
    from dream_graph.evaluators import get_registry

    known = {f.name for f in dataclasses.fields(Context)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise HTTPException(422, f"unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    try:
        ctx = Context.from_run(options, getattr(graph, "config", None) or {})
        check_request_caps(ctx, options)
    except (TypeError, ValueError) as exc:
        raise HTTPException(422, f"invalid options: {exc}") from None
    registry = get_registry()
    missing = [name for name in ctx.evaluators if name not in registry]
    if missing:
        raise HTTPException(422, f"unknown evaluator(s) {', '.join(missing)}; known: {', '.join(sorted(registry))}")
    try:
        check_run_source(ctx.docs)
    except ConfigError as exc:
        raise HTTPException(422, f"invalid option docs: {exc}") from None
    return ctx


def check_model(ctx: Context) -> None:
    """Build the model and its fallbacks once (cached), so a missing key is a 400 before any work is done."""
    from dream_graph.llm import load_chain, resolve_model_spec

    load_chain(
        resolve_model_spec(ctx.model),
        ctx.fallbacks,
        temperature=ctx.temperature,
        max_tokens=ctx.max_tokens,
        timeout=ctx.timeout,
        max_retries=ctx.max_retries,
    )


_CHECKED: OrderedDict[tuple, object] = OrderedDict()
CHECKED_MODELS = 128
"""Model set-ups (per settings object) `acheck_model` remembers as built."""


async def acheck_model(ctx: Context) -> None:
    """`check_model` in a worker thread the first time a model set-up is seen under the current settings (and since
    the built models were last forgotten); after that no thread hop (~0.1 ms of CPU per request under load) to look
    up a model that is already built."""
    from dream_graph.llm import model_cache_generation

    settings = get_settings()
    fallbacks = tuple(ctx.fallbacks or ())
    key = (id(settings), model_cache_generation(), ctx.model, fallbacks, ctx.temperature, ctx.max_tokens, ctx.timeout,
           ctx.max_retries)
    if key in _CHECKED:
        _CHECKED.move_to_end(key)
        return
    await asyncio.to_thread(check_model, ctx)
    _CHECKED[key] = settings  # held, so its id() is not reused by another settings object while the key is here
    while len(_CHECKED) > CHECKED_MODELS:
        _CHECKED.popitem(last=False)


async def _body_inputs(request: Request) -> list[Any]:
    """The inputs of an invoke/stream (`input`) or batch (`inputs`) body; LangServe has already parsed it."""
    try:
        body = await request.json()
    except ValueError:
        return []
    if not isinstance(body, dict):
        return []
    if "inputs" in body and isinstance(body["inputs"], list):
        return body["inputs"]
    return [body.get("input")]


def from_playground(request: Request) -> bool:
    """A playground page streams through `stream_log` and shows only the streamed output, never an error body."""
    referer = urlparse(request.headers.get("referer", "")).path
    return request.url.path.endswith("/stream_log") and referer.endswith("/playground/")


def request_checker(graph: Runnable, prompt_of: typing.Callable[[Any], str]) -> Any:
    """A `per_req_config_modifier` that refuses bad options, a missing provider key or an unusable prompt."""
    from dream_graph.examples import validate_examples
    from dream_graph.prompts import validate_request

    async def refuse_bad_requests(config: dict[str, Any], request: Request) -> dict[str, Any]:
        text_view = from_playground(request)
        config = {**config, "configurable": request_options(config)}
        try:
            ctx = check_options(graph, config["configurable"])
            for item in await _body_inputs(request):
                validate_request(prompt_of(item))
                validate_examples(item.get("examples") if isinstance(item, dict) else None)
            await acheck_model(ctx)
        except HTTPException as exc:
            if not text_view:
                raise
            return _mark(config, {REFUSAL: {"status_code": exc.status_code, "message": str(exc.detail)}})
        except PromptError as exc:
            if not text_view:
                raise HTTPException(422, str(exc)) from None
            return _mark(config, {REFUSAL: {"status_code": 422, "message": str(exc)}})
        except ConfigError as exc:
            if not text_view:
                raise HTTPException(400, str(exc)) from None
            return _mark(config, {REFUSAL: {"status_code": 400, "message": str(exc)}})
        return _mark(config, {TEXT_VIEW: True}) if text_view else config

    return refuse_bad_requests


def _mark(config: dict[str, Any], metadata: dict[str, Any]) -> dict[str, Any]:
    """The config with our flags in its metadata, which LangServe passes on to the runnable."""
    return {**config, "metadata": {**(config.get("metadata") or {}), **metadata, TEXT_VIEW: True}}


def flags(config: RunnableConfig | None) -> tuple[bool, dict[str, Any] | None]:
    """(show text, refusal) as set by `request_checker` for this request."""
    metadata = (config or {}).get("metadata") or {}
    return bool(metadata.get(TEXT_VIEW)), metadata.get(REFUSAL)


def refusal_text(refusal: dict[str, Any]) -> str:
    """A refused request as a person reads it in the playground."""
    return f"error ({refusal['status_code']}): {refusal['message']}\n"


def graph_prompt(item: Any) -> str:
    """The prompt of one graph input (`{"prompt": ...}`); anything else is left to LangServe's input validation."""
    return item.get("prompt", "") if isinstance(item, dict) and isinstance(item.get("prompt"), str) else "x"


# ---------------------------------------------------------------- the served graph


def slim_update(chunk: Any) -> Any:
    """A step's update without the prompt-sized keys, so `/stream` shows the reply, not the docs."""
    if not isinstance(chunk, dict):
        return chunk
    return {
        node: {k: v for k, v in update.items() if k not in BULKY_KEYS} if isinstance(update, dict) else update
        for node, update in chunk.items()
    }


def run_config(config: RunnableConfig) -> RunnableConfig:
    """Only the run options, for a run whose steps should not be traced into the playground's log (it is huge)."""
    return {"configurable": dict(config.get("configurable") or {})}


class WithOptions(RunnableBinding):
    """A runnable whose config schema is the pipeline's run options, so LangServe keeps them and the form shows them.
    `with_options` makes a subclass per route: the schema is a class attribute, so `with_config` copies keep it."""

    options_schema: ClassVar[type[BaseModel] | None] = None

    def config_schema(self, *, include: Sequence[str] | None = None) -> type[BaseModel]:
        return self.options_schema or super().config_schema(include=include)

    @classmethod
    def with_options(cls, schema: type[BaseModel], **fields: Any) -> WithOptions:
        """An instance of a subclass of `cls` whose config schema is `schema`."""
        subclass = type(f"{cls.__name__}{schema.__name__}", (cls,), {"options_schema": schema, "__module__": __name__})
        return subclass(**fields)


class ServedGraph(WithOptions):
    """A graph as LangServe serves it: `/invoke` gives the whole final state; `/stream` gives slim step updates and
    ends with an `{"error": ...}` chunk when the run breaks; a playground page gets the progress and the final
    answer as readable text."""

    def get_input_schema(self, config: RunnableConfig | None = None) -> type[BaseModel]:
        """The graph's input, with optional fields the playground's input form can render."""
        return _form_ready(super().get_input_schema(config))

    async def astream(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> AsyncIterator[Any]:
        from dream_graph.service.chat import text_runnable

        merged = self._merge_configs(config)
        if flags(merged)[0]:  # a playground page: progress and answer as text, in a run of their own
            async for text in text_runnable(self.bound, lambda item: item, "dream_graph_answer").astream(input, merged):
                yield text
            return
        try:
            async for chunk in self.bound.astream(input, merged, **{**self.kwargs, **kwargs}):
                yield slim_update(chunk)
        except DreamGraphError as exc:
            yield {"error": str(exc)}
        except Exception:  # a bug: logged with its traceback; the stream still ends with a message, not a 500 event
            log.exception("run failed while streaming")
            yield {"error": "internal error; see the server log"}


def options_schema_for(graph: Runnable, name: str) -> type[BaseModel]:
    """The config schema of a route serving `graph`: its options, with the pipeline's defaults shown."""
    return _form_ready(options_model(graph_defaults(graph), name))


def add_pipeline_routes(app: FastAPI, name: str, graph: Runnable, dependencies: list[Any]) -> None:
    """`/<name>/...` (invoke, batch, stream, playground ...) and the chat playground at `/<name>/chat/...`."""
    from dream_graph.service.chat import add_chat_routes

    add_routes(
        app,
        ServedGraph.with_options(options_schema_for(graph, name), bound=graph),
        path=f"/{name}",
        dependencies=dependencies,
        per_req_config_modifier=request_checker(graph, graph_prompt),
    )
    add_chat_routes(app, name, graph, dependencies)
