"""Model specs -> chat models (cached), and one generate call over a model plus its fallbacks, never raising.

Specs: `auto`, `offline`, `openai:<model>` (ChatOpenAI; OPENAI_API_KEY, OPENAI_BASE_URL), `cohere:<model>`
(ChatCohere over Cohere's v2 chat API; COHERE_API_KEY, COHERE_BASE_URL), any other `provider:model` through
LangChain's `init_chat_model`.

Retries: OpenAI's client retries 408/409/429/5xx, timeouts and connection errors with exponential backoff and honours
`Retry-After`, for streamed requests too, so it is used as is (`max_retries`). Cohere's SDK retries only non-streamed
requests and never timeouts, so for Cohere its retries are switched off and an `httpx-retries` transport under the
SDK does the same job as OpenAI's, streaming included. Other providers get LangChain's standard `max_retries`.
Fallbacks are tried in order by `call_models`, which keeps every failure so the error names each provider and status.
"""

from __future__ import annotations

import asyncio
import difflib
import re
import time
import weakref
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.runnables import RunnableConfig

from dream_graph.errors import ConfigError, DreamGraphError
from dream_graph.offline import OFFLINE_MODEL_ID, OfflineChatModel
from dream_graph.replay import REPLAY_MODEL_ID
from dream_graph.settings import Settings, get_settings
from dream_graph.state import LLMCall

AUTO_OPENAI_MODEL = "openai:gpt-4o-mini"
AUTO_COHERE_MODEL = "cohere:command-r-plus"
RETRY_STATUSES = frozenset([408, 409, 429, *range(500, 600)])
"""Statuses worth another try: the same set OpenAI's client retries."""


def resolve_model_spec(spec: str | None, settings: Settings | None = None) -> str:
    """`auto` picks OpenAI, then Cohere, by which key is set, else the offline model."""
    settings = settings or get_settings()
    spec = (spec or settings.model or "auto").strip()
    if spec != "auto":
        return spec
    if settings.openai_api_key:
        return AUTO_OPENAI_MODEL
    if settings.cohere_api_key:
        return AUTO_COHERE_MODEL
    return OFFLINE_MODEL_ID


def _secret(value: Any) -> str | None:
    return value.get_secret_value() if value is not None else None


def load_chat_model(
    spec: str | None,
    *,
    temperature: float = 0.1,
    max_tokens: int = 2048,
    timeout: float | None = None,
    max_retries: int | None = None,
    settings: Settings | None = None,
) -> BaseChatModel:
    """The chat model for `spec`, built once per distinct set of parameters; a missing key is a ConfigError."""
    settings = settings or get_settings()
    spec = resolve_model_spec(spec, settings)
    key = (
        spec,
        float(temperature),
        int(max_tokens),
        float(timeout if timeout is not None else settings.timeout),
        int(max_retries if max_retries is not None else settings.max_retries),
        (_secret(settings.openai_api_key), settings.openai_base_url),
        (_secret(settings.cohere_api_key), settings.cohere_base_url),
    )
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return _build_cached(*key)
    # An async HTTP client's pooled connections belong to the loop that opened them: one model per loop and key.
    models = _LOOP_MODELS.setdefault(loop, {})
    if key not in models:
        models[key] = _build_chat_model(*key)
    return models[key]


_LOOP_MODELS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple, BaseChatModel]] = (
    weakref.WeakKeyDictionary()
)


_CACHE_GENERATION = [0]


def clear_model_cache() -> None:
    """Forget built models (tests that change keys or base URLs)."""
    _build_cached.cache_clear()
    _LOOP_MODELS.clear()
    _CACHE_GENERATION[0] += 1


def model_cache_generation() -> int:
    """Changes whenever the built models are forgotten: what was checked against them must be checked again."""
    return _CACHE_GENERATION[0]


def _build_chat_model(
    spec: str,
    temperature: float,
    max_tokens: int,
    timeout: float,
    max_retries: int,
    openai: tuple[str | None, str | None],
    cohere: tuple[str | None, str | None],
) -> BaseChatModel:
    """Building a client costs milliseconds and a connection pool: do it once, not per cycle or per request."""
    if spec == OFFLINE_MODEL_ID:
        return OfflineChatModel()
    if spec == REPLAY_MODEL_ID or spec.startswith(REPLAY_MODEL_ID + ":"):
        from dream_graph.replay import ReplayChatModel

        return ReplayChatModel(path=spec.partition(":")[2])
    provider, sep, name = spec.partition(":")
    if not sep or not provider or not name:
        raise ConfigError(
            f"model {spec!r} is not of the form provider:model; use auto, offline, openai:<model> or cohere:<model>"
        )
    common = {"temperature": temperature, "max_tokens": max_tokens, "timeout": timeout, "max_retries": max_retries}
    if provider == "openai":
        key, base_url = openai
        if key is None:
            raise ConfigError(f"model {spec!r} needs OPENAI_API_KEY; set it, or use the offline demo model (--model offline, or option model=offline)")
        import openai as openai_sdk
        from langchain_openai import ChatOpenAI

        # Its own async client, not LangChain's process-wide one, which breaks once its first event loop closes.
        return ChatOpenAI(
            model=name, api_key=key, base_url=base_url, http_async_client=openai_sdk.DefaultAsyncHttpxClient(), **common
        )
    if provider == "cohere":
        key, base_url = cohere
        if key is None:
            raise ConfigError(f"model {spec!r} needs COHERE_API_KEY; set it, or use the offline demo model (--model offline, or option model=offline)")
        return _retrying_cohere_class()(
            model=name,
            cohere_api_key=key,
            base_url=base_url,
            temperature=temperature,
            max_tokens=max_tokens,
            timeout_seconds=timeout,
            max_retries=max_retries,
        )
    return _init_other(spec, common)


_build_cached = lru_cache(maxsize=128)(_build_chat_model)


def _init_other(spec: str, params: dict[str, Any]) -> BaseChatModel:
    """Any provider LangChain knows; its package and key are the user's to install and set."""
    try:
        from langchain.chat_models import init_chat_model
    except ImportError as exc:  # pragma: no cover - `langchain` is a dependency
        raise ConfigError(f"model {spec!r} needs the `langchain` package: pip install langchain") from exc
    try:
        return init_chat_model(spec, **params)
    except ImportError as exc:
        raise ConfigError(f"model {spec!r} needs its LangChain integration package: {exc}") from exc
    except Exception as exc:  # unknown provider, missing key, bad parameter
        if "model provider" in str(exc):
            raise ConfigError(unknown_provider_message(spec, str(exc))) from exc
        raise ConfigError(f"cannot load model {spec!r}: {str(exc).splitlines()[0] if str(exc) else exc!r}") from exc


def unknown_provider_message(spec: str, langchain_message: str) -> str:
    """Name the providers that work (ours, then the ones LangChain lists) and the likely typo, not LangChain's
    advice to pass `model_provider`, which a model spec cannot do."""
    provider, _, name = spec.partition(":")
    listed = re.search(r"Supported providers: ([\w ,.-]+)", langchain_message)
    others = [p.strip() for p in listed.group(1).split(",") if p.strip()] if listed else []
    known = ["offline", "openai", "cohere", *(p for p in others if p not in ("openai", "cohere"))]
    guess = difflib.get_close_matches(provider, known, n=1)
    hint = f"did you mean {guess[0]}:{name}? " if guess else ""
    return f"unknown model provider {provider!r} in {spec!r}; {hint}known providers: {', '.join(known)}"


@lru_cache(maxsize=1)
def _retrying_cohere_class() -> type[BaseChatModel]:
    """ChatCohere that sends `max_tokens` and retries at the HTTP layer, streaming included."""
    import cohere
    import httpx
    from httpx_retries import Retry, RetryTransport
    from langchain_cohere import ChatCohere
    from pydantic import model_validator

    def transport(retries: int) -> RetryTransport:
        # backoff_factor * 2**attempt: 0.5 s, 1 s, 2 s ... like OpenAI's client; Retry-After wins when sent.
        retry = Retry(
            total=retries,
            allowed_methods=["POST"],
            status_forcelist=RETRY_STATUSES,
            backoff_factor=0.25,
            backoff_jitter=0.25,
            max_backoff_wait=60.0,
        )
        return RetryTransport(retry=retry)

    class RetryingChatCohere(ChatCohere):
        """ChatCohere ignores `max_tokens` and its SDK does not retry streams or timeouts; this fixes both."""

        max_tokens: int | None = None
        max_retries: int = 2

        @model_validator(mode="after")
        def _retrying_clients(self) -> RetryingChatCohere:
            key = self.cohere_api_key.get_secret_value() if self.cohere_api_key else None
            common = {"api_key": key, "client_name": self.user_agent, "timeout": self.timeout_seconds}
            self.client = cohere.Client(
                **common, base_url=self.base_url, httpx_client=httpx.Client(transport=transport(self.max_retries))
            )
            self.async_client = cohere.AsyncClient(
                **common,
                base_url=self.base_url,
                httpx_client=httpx.AsyncClient(transport=transport(self.max_retries)),
            )
            return self

        @property
        def _default_params(self) -> dict[str, Any]:
            params = dict(super()._default_params)
            if self.max_tokens is not None:
                params["max_tokens"] = self.max_tokens
            params["request_options"] = {"max_retries": 0}  # the transport retries; no retries on top of retries
            return params

    return RetryingChatCohere


def load_chain(
    model: str | None,
    fallbacks: list[str] | tuple[str, ...] = (),
    *,
    temperature: float = 0.1,
    max_tokens: int = 2048,
    timeout: float | None = None,
    max_retries: int | None = None,
) -> list[tuple[str, BaseChatModel]]:
    """The model and its fallbacks, each as (spec, chat model), duplicates dropped; fails fast on a missing key."""
    specs: list[str] = []
    for spec in [resolve_model_spec(model), *(s.strip() for s in fallbacks)]:
        if spec and spec not in specs:
            specs.append(spec)
    params = {"temperature": temperature, "max_tokens": max_tokens, "timeout": timeout, "max_retries": max_retries}
    return [(spec, load_chat_model(spec, **params)) for spec in specs]


def http_status(exc: BaseException) -> int | None:
    """The HTTP status behind a provider exception (openai, cohere, httpx), if there was a response."""
    for candidate in (exc, getattr(exc, "response", None)):
        status = getattr(candidate, "status_code", None)
        if isinstance(status, int):
            return status
    return None


def _is_timeout(exc: BaseException) -> bool:
    names = {cls.__name__ for cls in type(exc).__mro__}
    return bool(names & {"TimeoutException", "APITimeoutError", "TimeoutError", "ReadTimeout", "ConnectTimeout"})


def _detail(exc: BaseException) -> str:
    """The provider's own error message when its body has one, else the exception text, on one short line."""
    body = getattr(exc, "body", None)
    if body is None and getattr(exc, "response", None) is not None:  # a plain httpx.HTTPStatusError
        try:
            body = exc.response.json()  # type: ignore[attr-defined]
        except Exception:  # not JSON, or not read: fall back to the exception text
            body = None
    if isinstance(body, dict):
        inner = body.get("error") if isinstance(body.get("error"), dict) else body
        if isinstance(inner.get("message"), str):
            return " ".join(inner["message"].split())[:300]
    text = " ".join(str(exc).split())
    return (text or type(exc).__name__)[:300]


@dataclass(frozen=True)
class Failure:
    """One model in the chain that gave up (after its own retries)."""

    spec: str
    status: int | None
    message: str

    @classmethod
    def of(cls, spec: str, exc: BaseException, timeout: float | None = None) -> Failure:
        """Name the provider and the HTTP status, or say it timed out."""
        status = http_status(exc)
        if status is not None:
            message = f"{spec} failed with HTTP {status}: {_detail(exc)}"
        elif _is_timeout(exc):
            message = f"{spec} timed out" + (f" after {timeout:g} s" if timeout else "") + f" ({type(exc).__name__})"
        else:
            message = f"{spec} failed: {type(exc).__name__}: {_detail(exc)}"
        return cls(spec=spec, status=status, message=message)


class ProviderError(DreamGraphError):
    """Every model in the chain failed; the message names each provider and its HTTP status."""

    def __init__(self, failures: list[Failure]) -> None:
        self.failures = failures
        super().__init__("; then ".join(f.message for f in failures) or "no model to call")

    @property
    def status(self) -> int | None:
        """The HTTP status of the last failure (the one that ended the run)."""
        return self.failures[-1].status if self.failures else None


@dataclass
class Outcome:
    """What one generate step got: a reply from `spec`, or the error after every model failed."""

    spec: str
    reply: AIMessage | None = None
    error: ProviderError | None = None
    latency_ms: float = 0.0
    failures: list[Failure] = field(default_factory=list)

    def record(self, cycle: int) -> LLMCall:
        """The `llm_calls` entry for this step."""
        tokens_in, tokens_out = token_usage(self.reply)
        return {
            "cycle": cycle,
            "model": self.spec,
            "latency_ms": round(self.latency_ms, 3),
            "input_tokens": tokens_in,
            "output_tokens": tokens_out,
            "ok": self.error is None,
            "error": str(self.error) if self.error else None,
            "failed_over": [f.message for f in self.failures] if self.error is None else [],
        }


def token_usage(reply: BaseMessage | None) -> tuple[int | None, int | None]:
    """Token counts from LangChain's usage metadata, or Cohere's stream-end `token_count`."""
    usage = getattr(reply, "usage_metadata", None) or (getattr(reply, "additional_kwargs", None) or {}).get(
        "token_count"
    )
    if not usage:
        return None, None
    return _int_or_none(usage.get("input_tokens")), _int_or_none(usage.get("output_tokens"))


def _int_or_none(value: Any) -> int | None:
    return int(value) if isinstance(value, (int, float)) else None


def _timeout_of(model: BaseChatModel) -> float | None:
    value = getattr(model, "request_timeout", None) or getattr(model, "timeout_seconds", None)
    return value if isinstance(value, (int, float)) else None


def call_models(
    chain: list[tuple[str, BaseChatModel]], messages: list[BaseMessage], config: RunnableConfig | None = None
) -> Outcome:
    """Ask each model in turn until one answers; never raises for a provider failure."""
    started = time.perf_counter()
    failures: list[Failure] = []
    for spec, model in chain:
        try:
            reply = model.invoke(messages, config)
        except Exception as exc:  # any provider failure moves on to the next model
            failures.append(Failure.of(spec, exc, _timeout_of(model)))
            continue
        return Outcome(spec, reply=reply, latency_ms=_ms_since(started), failures=failures)
    return _failed(chain, failures, started)


async def acall_models(
    chain: list[tuple[str, BaseChatModel]], messages: list[BaseMessage], config: RunnableConfig | None = None
) -> Outcome:
    """Same as `call_models`, awaiting each model."""
    started = time.perf_counter()
    failures: list[Failure] = []
    for spec, model in chain:
        try:
            reply = await model.ainvoke(messages, config)
        except Exception as exc:  # any provider failure moves on to the next model
            failures.append(Failure.of(spec, exc, _timeout_of(model)))
            continue
        return Outcome(spec, reply=reply, latency_ms=_ms_since(started), failures=failures)
    return _failed(chain, failures, started)


def _ms_since(started: float) -> float:
    return (time.perf_counter() - started) * 1000


def _failed(chain: list[tuple[str, BaseChatModel]], failures: list[Failure], started: float) -> Outcome:
    spec = failures[-1].spec if failures else (chain[-1][0] if chain else "none")
    return Outcome(spec, error=ProviderError(failures), latency_ms=_ms_since(started), failures=failures)


def model_id(model: BaseChatModel, spec: str | None = None) -> str:
    """The id to report: the resolved spec, or for a model passed in by the caller its provider type and name."""
    if spec:
        return spec
    name = getattr(model, "model_name", None) or getattr(model, "model", None)
    return f"{model._llm_type}:{name}" if isinstance(name, str) and name else model._llm_type
