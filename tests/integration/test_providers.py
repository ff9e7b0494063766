"""The real ChatOpenAI and ChatCohere, over HTTP, against the fake servers: the QA loop, retries, fallbacks, errors,
and streaming."""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.messages import AIMessageChunk

from dream_graph.graph import build_graph, graph
from tests.fakes import BANDIT_REPLY, CLEAN_REPLY, SYNTAX_ERROR_REPLY, FakeServer, Reply

PROVIDERS = {"openai": ("fake_openai", "openai:gpt-test"), "cohere": ("fake_cohere", "cohere:command-test")}
PROMPT = "a node that counts the words in each message"


@pytest.fixture(params=sorted(PROVIDERS))
def provider(request: pytest.FixtureRequest) -> tuple[FakeServer, str]:
    """Each test runs once per provider: (its fake server, its model spec)."""
    fixture, spec = PROVIDERS[request.param]
    return request.getfixturevalue(fixture), spec


def text_of(message: dict[str, Any]) -> str:
    """A request message's text: OpenAI sends a string, Cohere v2 may send a list of content blocks."""
    content = message.get("content")
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return str(content)


def last_user_text(body: dict[str, Any]) -> str:
    return text_of([m for m in body["messages"] if m["role"] == "user"][-1])


async def run(context: dict[str, Any], mode: str, compiled: Any = graph) -> dict[str, Any]:
    """One run, through the sync or the async API of the graph."""
    if mode == "sync":
        return compiled.invoke({"prompt": PROMPT}, context=context)
    return await compiled.ainvoke({"prompt": PROMPT}, context=context)


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_qa_loop_repairs_syntax_then_security_then_passes(provider, mode):
    server, spec = provider
    server.script(Reply.ok(SYNTAX_ERROR_REPLY), Reply.ok(BANDIT_REPLY), Reply.ok(CLEAN_REPLY))

    result = await run({"model": spec, "max_cycles": 3, "max_tokens": 321, "evaluators": ["syntax", "security"]}, mode)

    assert result["status"] == "passed"
    assert result["cycles"] == 3
    assert result["model"] == spec
    assert len(server.requests) == 3
    first, second, third = server.bodies
    assert first["temperature"] == pytest.approx(0.1)
    assert 321 in (first.get("max_tokens"), first.get("max_completion_tokens"))
    assert "Write code for this request" in last_user_text(first)
    assert "SyntaxError" in last_user_text(second) and "syntax check failed" in last_user_text(second)
    assert "security check failed" in last_user_text(third) and "shell=True" in last_user_text(third)
    assert "B602" in last_user_text(third)
    assert [text_of(m) for m in third["messages"] if m["role"] == "assistant"][-1].strip() == BANDIT_REPLY.strip()
    calls = result["llm_calls"]
    assert [c["cycle"] for c in calls] == [1, 2, 3]
    assert all(c["ok"] and c["model"] == spec and c["error"] is None for c in calls)
    assert all(c["output_tokens"] and c["input_tokens"] for c in calls)


async def test_retries_429_with_retry_after_and_503_then_succeeds(provider):
    server, spec = provider
    server.script(Reply.error(429, "slow down", retry_after=1), Reply.error(503), Reply.ok(CLEAN_REPLY))

    result = await run({"model": spec, "max_retries": 2}, "sync")

    assert result["status"] == "passed"
    assert result["cycles"] == 1
    assert len(server.requests) == 3  # one generate step, three HTTP attempts
    assert result["llm_calls"][0]["ok"] is True
    # Retry-After: 1 was honoured (a lower bound: it cannot fail on a slow machine).
    assert server.requests[1].at - server.requests[0].at >= 0.9


async def test_server_error_forever_ends_the_run_with_error_naming_provider_and_status(provider):
    server, spec = provider
    server.default = Reply.error(500, "the fake is down")

    result = await run({"model": spec, "max_retries": 1}, "async")

    assert result["status"] == "error"
    assert result["stop_reason"] == "provider_error"
    assert result["provider_status"] == 500, result["error"]
    assert spec in result["error"] and "HTTP 500" in result["error"] and "the fake is down" in result["error"]
    assert len(server.requests) == 2  # the first try and one retry
    assert result["messages"], "the conversation sent is kept"
    assert result["llm_calls"] == [
        {**result["llm_calls"][0], "cycle": 1, "model": spec, "ok": False, "error": result["error"]}
    ]


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_hanging_server_times_out_into_error(provider, mode):
    server, spec = provider
    server.default = Reply.hanging()

    result = await run({"model": spec, "timeout": 0.3, "max_retries": 1}, mode)

    assert result["status"] == "error"
    assert result["stop_reason"] == "provider_error"
    assert result["provider_status"] is None
    assert spec in result["error"] and "timed out" in result["error"]
    assert len(server.requests) == 2  # timeouts are retried too
    assert result["llm_calls"][0]["ok"] is False


async def test_falls_back_to_the_second_provider(fake_openai, fake_cohere, tmp_path, monkeypatch):
    fake_openai.default = Reply.error(500, "openai is down")
    fake_cohere.script(Reply.ok(CLEAN_REPLY))
    pipelines = tmp_path / "pipelines.toml"
    pipelines.write_text(
        '[primary]\nmodel = "openai:gpt-test"\nfallbacks = ["cohere:command-test"]\nmax_retries = 0\n', encoding="utf-8"
    )
    monkeypatch.setenv("DREAM_GRAPH_PIPELINES", str(pipelines))

    result = await run({}, "async", compiled=build_graph(pipeline="primary"))

    assert result["status"] == "passed", result.get("error")
    assert result["model"] == "cohere:command-test"
    assert len(fake_openai.requests) == 1 and len(fake_cohere.requests) == 1
    call = result["llm_calls"][0]
    assert call["ok"] is True and call["model"] == "cohere:command-test"
    assert len(call["failed_over"]) == 1
    assert "openai:gpt-test" in call["failed_over"][0] and "HTTP 500" in call["failed_over"][0]


async def test_all_providers_failing_names_each_of_them(fake_openai, fake_cohere):
    fake_openai.default = Reply.error(500)
    fake_cohere.default = Reply.error(429, retry_after=0)

    result = await run(
        {"model": "openai:gpt-test", "fallbacks": ["cohere:command-test"], "max_retries": 0}, "sync"
    )

    assert result["status"] == "error"
    assert "openai:gpt-test failed with HTTP 500" in result["error"]
    assert "cohere:command-test failed with HTTP 429" in result["error"]
    assert result["provider_status"] == 429  # the last failure, the one that ended the run
    assert result["model"] == "cohere:command-test"


def test_tokens_stream_before_the_reply_is_complete(provider):
    server, spec = provider
    server.script(Reply.ok(CLEAN_REPLY, pause_after=5))
    tokens: list[str] = []
    open_when_first_token = None
    final: dict[str, Any] = {}

    for mode, chunk in graph.stream(
        {"prompt": PROMPT}, context={"model": spec}, stream_mode=["messages", "values"]
    ):
        if mode == "values":
            final = chunk
            continue
        message, metadata = chunk
        if isinstance(message, AIMessageChunk) and message.text:
            assert metadata["langgraph_node"] == "generate"
            if open_when_first_token is None:
                open_when_first_token = server.finished_streams == 0 and final.get("status") == "running"
                server.release()  # the server holds the rest of the reply until the first tokens were seen
            tokens.append(message.text)

    assert open_when_first_token is True
    assert server.bodies[0]["stream"] is True
    assert server.finished_streams == 1
    assert final["status"] == "passed"
    assert "".join(tokens) == final["response"] == CLEAN_REPLY


async def test_tokens_stream_in_async_mode(provider):
    server, spec = provider
    server.script(Reply.ok(CLEAN_REPLY, pause_after=3))
    seen_while_open: list[bool] = []
    tokens: list[str] = []

    async for message, _meta in graph.astream({"prompt": PROMPT}, context={"model": spec}, stream_mode="messages"):
        if isinstance(message, AIMessageChunk) and message.text:
            if not seen_while_open:
                seen_while_open.append(server.finished_streams == 0)
                server.release()
            tokens.append(message.text)

    assert seen_while_open == [True]
    assert "".join(tokens) == CLEAN_REPLY
