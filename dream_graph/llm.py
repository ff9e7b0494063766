"""Turn a model spec ("auto", "offline", "openai:gpt-4o", "cohere:command-r", "provider:model") into a chat model."""

from __future__ import annotations

from langchain_core.language_models import BaseChatModel

from dream_graph.errors import ConfigError
from dream_graph.offline import OFFLINE_MODEL_ID, OfflineChatModel
from dream_graph.settings import Settings, get_settings


def resolve_model_spec(spec: str | None, settings: Settings | None = None) -> str:
    """`auto` picks OpenAI, then Cohere, by which key is set, else the offline model."""
    settings = settings or get_settings()
    spec = (spec or settings.model or "auto").strip()
    if spec != "auto":
        return spec
    if settings.openai_api_key:
        return "openai:gpt-4o-mini"
    if settings.cohere_api_key:
        return "cohere:command-r-plus"
    return OFFLINE_MODEL_ID


def load_chat_model(
    spec: str | None,
    *,
    temperature: float = 0.1,
    max_tokens: int = 2048,
    settings: Settings | None = None,
) -> BaseChatModel:
    """Build the chat model; a missing key for an explicitly chosen provider is a ConfigError naming the variable."""
    settings = settings or get_settings()
    spec = resolve_model_spec(spec, settings)
    if spec == OFFLINE_MODEL_ID:
        return OfflineChatModel()
    provider, sep, name = spec.partition(":")
    if not sep or not provider or not name:
        raise ConfigError(
            f"model {spec!r} is not of the form provider:model; use auto, offline, openai:<model> or cohere:<model>"
        )
    if provider == "openai":
        if settings.openai_api_key is None:
            raise ConfigError(f"model {spec!r} needs OPENAI_API_KEY; set it, or choose DREAM_GRAPH_MODEL=offline")
        from langchain_openai import ChatOpenAI

        return ChatOpenAI(
            model=name,
            temperature=temperature,
            max_tokens=max_tokens,
            api_key=settings.openai_api_key,
            base_url=settings.openai_base_url,
        )
    if provider == "cohere":
        if settings.cohere_api_key is None:
            raise ConfigError(f"model {spec!r} needs COHERE_API_KEY; set it, or choose DREAM_GRAPH_MODEL=offline")
        from langchain_cohere import ChatCohere

        kwargs = {"base_url": settings.cohere_base_url} if settings.cohere_base_url else {}
        return ChatCohere(
            model=name,
            temperature=temperature,
            max_tokens=max_tokens,
            cohere_api_key=settings.cohere_api_key,
            **kwargs,
        )
    from langchain.chat_models import init_chat_model  # type: ignore[import-not-found]

    try:
        return init_chat_model(spec, temperature=temperature, max_tokens=max_tokens)
    except Exception as exc:
        raise ConfigError(f"cannot load model {spec!r}: {exc}") from exc


def model_id(model: BaseChatModel, spec: str | None = None) -> str:
    """The id to report: the resolved spec, or for a model passed in by the caller its provider type and name."""
    if spec:
        return spec
    name = getattr(model, "model_name", None) or getattr(model, "model", None)
    return f"{model._llm_type}:{name}" if isinstance(name, str) and name else model._llm_type
