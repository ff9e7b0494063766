"""Model specs, the model cache, fallbacks and error reports, without a network."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from langchain_core.language_models import BaseChatModel
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.outputs import ChatResult

from dream_graph.context import Context
from dream_graph.errors import ConfigError
from dream_graph.graph import build_graph
from dream_graph.llm import (
    AUTO_COHERE_MODEL,
    AUTO_OPENAI_MODEL,
    acall_models,
    call_models,
    load_chain,
    load_chat_model,
    resolve_model_spec,
    token_usage,
)
from dream_graph.offline import OFFLINE_MODEL_ID
from tests.fakes import CLEAN_REPLY


class FailingChatModel(BaseChatModel):
    """A chat model whose provider always fails with `error`."""

    error: Any

    @property
    def _llm_type(self) -> str:
        return "failing"

    def _generate(self, messages: Any, stop: Any = None, run_manager: Any = None, **kwargs: Any) -> ChatResult:
        raise self.error


def http_error(status: int, body: dict[str, Any] | None = None) -> httpx.HTTPStatusError:
    request = httpx.Request("POST", "http://provider.test/v1/chat")
    response = httpx.Response(status, json=body or {}, request=request)
    return httpx.HTTPStatusError(f"HTTP {status}", request=request, response=response)


def answering(text: str = "hello") -> GenericFakeChatModel:
    return GenericFakeChatModel(messages=iter([AIMessage(text)]))


def test_auto_picks_openai_then_cohere_then_offline(monkeypatch):
    from dream_graph.settings import get_settings

    assert resolve_model_spec("auto") == OFFLINE_MODEL_ID
    monkeypatch.setenv("COHERE_API_KEY", "c")
    get_settings.cache_clear()
    assert resolve_model_spec("auto") == AUTO_COHERE_MODEL
    monkeypatch.setenv("OPENAI_API_KEY", "o")
    get_settings.cache_clear()
    assert resolve_model_spec(None) == AUTO_OPENAI_MODEL


@pytest.mark.parametrize(("spec", "variable"), [("openai:gpt-4o", "OPENAI_API_KEY"), ("cohere:command-r", "COHERE_API_KEY")])
def test_missing_key_for_a_chosen_provider_names_the_variable(spec, variable):
    with pytest.raises(ConfigError, match=variable):
        load_chat_model(spec)


def test_missing_key_for_a_fallback_fails_the_whole_chain(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "o")
    with pytest.raises(ConfigError, match="COHERE_API_KEY"):
        load_chain("openai:gpt-4o", ["cohere:command-r"])


def test_spec_without_provider_is_a_config_error():
    with pytest.raises(ConfigError, match="provider:model"):
        load_chat_model("gpt-4o")


def test_models_are_built_once_per_parameters_and_per_event_loop(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "o")
    first = load_chat_model("openai:gpt-4o", temperature=0.1)
    assert load_chat_model("openai:gpt-4o", temperature=0.1) is first
    assert load_chat_model("openai:gpt-4o", temperature=0.5) is not first

    async def in_loop() -> tuple[BaseChatModel, BaseChatModel]:
        return load_chat_model("openai:gpt-4o", temperature=0.1), load_chat_model("openai:gpt-4o", temperature=0.1)

    a, b = asyncio.run(in_loop())
    c, _ = asyncio.run(in_loop())
    assert a is b, "one model per loop and parameters"
    assert a is not first and c is not a, "an async client is not shared across event loops"


def test_openai_model_gets_the_run_options(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "o")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    model = load_chat_model("openai:gpt-test", temperature=0.3, max_tokens=77, timeout=4.5, max_retries=5)
    assert (model.model_name, model.temperature, model.max_tokens) == ("gpt-test", 0.3, 77)
    assert (model.request_timeout, model.max_retries) == (4.5, 5)
    assert model.openai_api_base == "http://127.0.0.1:9/v1"


def test_cohere_model_sends_max_tokens_and_leaves_retries_to_its_transport(monkeypatch):
    monkeypatch.setenv("COHERE_API_KEY", "c")
    model = load_chat_model("cohere:command-test", max_tokens=99, max_retries=4, timeout=3)
    params = model._default_params
    assert params["max_tokens"] == 99
    assert params["request_options"] == {"max_retries": 0}
    assert model.timeout_seconds == 3
    transport = model.client._client_wrapper.httpx_client.httpx_client._transport
    assert transport.retry.total == 4 and transport.retry.is_retryable_method("POST")
    assert all(transport.retry.is_retryable_status_code(s) for s in (408, 429, 500, 503))


def test_other_providers_go_through_init_chat_model(monkeypatch):
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", "a")
    monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("OPENAI_API_VERSION", "2024-06-01")
    model = load_chat_model("azure_openai:my-deployment", temperature=0.2, max_tokens=55, timeout=7, max_retries=1)
    assert type(model).__name__ == "AzureChatOpenAI"
    assert (model.temperature, model.max_tokens, model.request_timeout, model.max_retries) == (0.2, 55, 7, 1)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [("nosuchprovider:model", "unknown model provider 'nosuchprovider'"), ("anthropic:claude", "langchain-anthropic")],
)
def test_unknown_provider_or_missing_package_is_a_config_error(spec, expected):
    with pytest.raises(ConfigError, match=expected):
        load_chat_model(spec)


def test_first_model_answering_wins():
    outcome = call_models([("a:one", answering("one")), ("b:two", answering("two"))], [HumanMessage("hi")])
    assert outcome.spec == "a:one" and outcome.reply.text == "one" and outcome.error is None
    assert outcome.record(1)["ok"] is True and outcome.record(1)["failed_over"] == []


def test_fallback_answers_when_the_first_model_fails():
    chain = [("a:one", FailingChatModel(error=http_error(503, {"message": "overloaded"}))), ("b:two", answering("two"))]
    outcome = asyncio.run(acall_models(chain, [HumanMessage("hi")]))
    assert outcome.spec == "b:two" and outcome.reply.text == "two"
    record = outcome.record(2)
    assert record["cycle"] == 2 and record["ok"] and record["error"] is None
    assert record["failed_over"] == ["a:one failed with HTTP 503: overloaded"]


def test_every_model_failing_is_one_error_naming_each_provider_and_status():
    chain = [
        ("a:one", FailingChatModel(error=http_error(500, {"error": {"message": "boom"}}))),
        ("b:two", FailingChatModel(error=httpx.ReadTimeout("read timed out"))),
    ]
    outcome = call_models(chain, [HumanMessage("hi")])
    assert outcome.reply is None
    assert str(outcome.error) == "a:one failed with HTTP 500: boom; then b:two timed out (ReadTimeout)"
    assert outcome.error.status is None  # the last failure had no HTTP response
    record = outcome.record(1)
    assert record == {**record, "ok": False, "model": "b:two", "error": str(outcome.error)}


def test_token_usage_reads_usage_metadata_or_cohere_token_count():
    usage = {"input_tokens": 3, "output_tokens": 4, "total_tokens": 7}
    assert token_usage(AIMessage("x", usage_metadata=usage)) == (3, 4)
    assert token_usage(AIMessage("x", additional_kwargs={"token_count": {"input_tokens": 5.0, "output_tokens": 6.0}})) == (5, 6)
    assert token_usage(AIMessage("x")) == (None, None)


def test_graph_records_one_llm_call_per_generate_step():
    model = GenericFakeChatModel(messages=iter([AIMessage(CLEAN_REPLY)]))
    result = build_graph(chat_model=model).invoke({"prompt": "a node"}, context={"evaluators": ["syntax"]})
    assert result["status"] == "passed"
    assert [(c["cycle"], c["ok"]) for c in result["llm_calls"]] == [(1, True)]
    assert result["provider_status"] is None


def test_graph_reports_a_failing_caller_model_as_error():
    model = FailingChatModel(error=http_error(401, {"message": "bad key"}))
    result = build_graph(chat_model=model).invoke({"prompt": "a node"})
    assert (result["status"], result["stop_reason"], result["provider_status"]) == ("error", "provider_error", 401)
    assert "HTTP 401: bad key" in result["error"]


def test_context_checks_the_new_options():
    assert Context(fallbacks="openai:a, cohere:b").fallbacks == ["openai:a", "cohere:b"]
    with pytest.raises(ValueError, match="timeout"):
        Context(timeout=0)
    with pytest.raises(ValueError, match="max_retries"):
        Context(max_retries=11)


class Logged(BaseChatModel):
    """Appends its name to a shared log on every call, then fails (`error`) or answers `name`."""

    name: str
    log: Any  # the caller's list itself (a `list` field would be copied)
    error: Any = None

    @property
    def _llm_type(self) -> str:
        return "logged"

    def _generate(self, messages: Any, stop: Any = None, run_manager: Any = None, **kwargs: Any) -> ChatResult:
        from langchain_core.outputs import ChatGeneration

        self.log.append(self.name)
        if self.error is not None:
            raise self.error
        return ChatResult(generations=[ChatGeneration(message=AIMessage(self.name))])


def logged_chain(log: list, *outcomes: str) -> list[tuple[str, BaseChatModel]]:
    """One model per outcome ("fail" or "ok"), named m0, m1, ... in chain order."""
    return [
        (f"p:m{i}", Logged(name=f"m{i}", log=log, error=http_error(503) if outcome == "fail" else None))
        for i, outcome in enumerate(outcomes)
    ]


@pytest.mark.parametrize("call", ["sync", "async"])
def test_fallbacks_are_tried_only_after_the_primary_fails_and_in_order(call):
    log: list[str] = []
    chain = logged_chain(log, "fail", "fail", "ok", "ok")
    run = (lambda c: call_models(c, [HumanMessage("hi")])) if call == "sync" else (
        lambda c: asyncio.run(acall_models(c, [HumanMessage("hi")])))
    outcome = run(chain)
    assert log == ["m0", "m1", "m2"], "primary first, then each fallback in order, stopping at the first answer"
    assert outcome.spec == "p:m2" and outcome.reply.text == "m2"
    assert [f.spec for f in outcome.failures] == ["p:m0", "p:m1"]
    log.clear()
    outcome = run(logged_chain(log, "ok", "ok"))
    assert log == ["m0"] and outcome.spec == "p:m0" and outcome.failures == [], "no fallback while the primary answers"


def test_the_chain_is_the_primary_then_the_fallbacks_in_the_given_order(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "o")
    monkeypatch.setenv("COHERE_API_KEY", "c")
    specs = [spec for spec, _ in load_chain("openai:primary", [" cohere:second ", "openai:third", "openai:primary"])]
    assert specs == ["openai:primary", "cohere:second", "openai:third"]
    assert [spec for spec, _ in load_chain("auto", ["openai:x"])] == [AUTO_OPENAI_MODEL, "openai:x"]


def test_a_run_asks_the_primary_first_and_the_fallback_only_after_it_failed(fake_openai):
    from tests.fakes import Reply

    fake_openai.script(Reply.error(503, "primary overloaded"), Reply.ok(CLEAN_REPLY))
    result = build_graph().invoke(
        {"prompt": "a node"},
        context={"model": "openai:primary", "fallbacks": ["openai:backup"], "max_retries": 0, "evaluators": ["syntax"]},
    )
    assert [body["model"] for body in fake_openai.bodies] == ["primary", "backup"]
    assert (result["status"], result["model"]) == ("passed", "openai:backup")
    assert result["llm_calls"][0]["failed_over"] == ["openai:primary failed with HTTP 503: primary overloaded"]
    fake_openai.reset()
    result = build_graph().invoke(
        {"prompt": "a node"}, context={"model": "openai:primary", "fallbacks": ["openai:backup"], "evaluators": ["syntax"]}
    )
    assert [body["model"] for body in fake_openai.bodies] == ["primary"] and result["model"] == "openai:primary"
