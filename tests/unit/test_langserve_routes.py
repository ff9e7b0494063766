"""The per-pipeline LangServe routes: the run options schema, 4xx before any run, text for the playground pages,
the chat routes, and logging in with the API key."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import fields
from typing import Any

import httpx
import pytest
from langgraph.graph import END, START, StateGraph
from langserve.lzstring import LZString

from dream_graph.context import Context
from dream_graph.errors import ConfigError
from dream_graph.graph import build_graph
from dream_graph.pipelines import Pipeline
from dream_graph.service.app import create_app
from dream_graph.service.auth import SESSION_COOKIE, session_token
from dream_graph.service.chat import chat_prompt, render_answer, table
from dream_graph.service.login import safe_next
from dream_graph.settings import get_settings
from dream_graph.state import InputState

PROMPT = "a node that counts the words in each message"
RUN_ROUTES = ("invoke", "stream", "stream_log", "stream_events")
PLAYGROUND = {"Referer": "http://test/dream/playground/"}


def sse(text: str) -> list[tuple[str, Any]]:
    """(event, decoded data) pairs of a server-sent event stream."""
    events, event = [], None
    for line in text.splitlines():
        if line.startswith("event: "):
            event = line[7:].strip()
        elif line.startswith("data: "):
            raw = line[6:]
            events.append((event, json.loads(raw) if raw.strip() else None))
    return events


def streamed_text(response: httpx.Response) -> str:
    """The text a playground page shows: every string a `stream_log` adds to `streamed_output`."""
    parts = []
    for event, data in sse(response.text):
        for op in (data or {}).get("ops", []) if event == "data" else []:
            if op["path"] == "/streamed_output/-":
                parts.append(op["value"])
    return "".join(parts)


@pytest.fixture
async def client(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[httpx.AsyncClient]:
    """`dream` (environment defaults), a pipeline with two checks, and one whose model needs an OpenAI key."""
    monkeypatch.setenv("DREAM_GRAPH_DB", "off")
    get_settings.cache_clear()
    two = Pipeline(name="two", model="offline", evaluators=["syntax", "security"], max_cycles=2)
    keyed = Pipeline(name="gpt4", model="openai:gpt-4o", fallbacks=["cohere:command-r-plus"])
    graphs = {"dream": build_graph(), "two": build_graph(pipeline=two), "gpt4": build_graph(pipeline=keyed)}
    app = create_app(graphs=graphs)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test", timeout=60) as c:
        yield c


def body(route: str, configurable: dict[str, Any] | None = None, prompt: str = PROMPT) -> dict[str, Any]:
    config = {"configurable": configurable} if configurable is not None else {}
    if route == "batch":
        return {"inputs": [{"prompt": prompt}], "config": config}
    return {"input": {"prompt": prompt}, "config": config}


# ---------------------------------------------------------------- the options schema


async def test_config_schema_lists_every_run_option_with_description_bounds_and_pipeline_default(client):
    schema = (await client.get("/two/config_schema")).json()
    options = schema["$defs"][schema["properties"]["configurable"]["$ref"].split("/")[-1]]["properties"]

    assert set(options) == {f.name for f in fields(Context)}
    assert all(option.get("description") for option in options.values())
    assert options["max_cycles"]["minimum"] == 1
    assert options["max_cycles"]["maximum"] == min(20, get_settings().max_cycles_cap)  # this server's cap
    assert options["max_cycles"]["default"] == 2  # the pipeline's value, not the environment's 3
    assert options["evaluators"]["default"] == ["syntax", "security"]
    assert options["temperature"]["maximum"] == 2.0
    assert options["bandit_severity"]["enum"] == ["LOW", "MEDIUM", "HIGH"]
    assert '"null"' not in json.dumps(schema)  # the playground's form cannot render null types


async def test_an_option_reaches_the_run(client):
    response = await client.post("/dream/invoke", json=body("invoke", {"evaluators": ["syntax"], "max_cycles": 1}))

    assert response.status_code == 200, response.text
    assert {e["evaluator"] for e in response.json()["output"]["evaluations"]} == {"syntax"}


async def test_unset_options_keep_the_pipelines_values(client):
    # LangServe's validated config has every option as None; left in, they would hide the pipeline's evaluators
    response = await client.post("/two/invoke", json=body("invoke", {}))

    assert {e["evaluator"] for e in response.json()["output"]["evaluations"]} == {"syntax", "security"}


@pytest.mark.parametrize("route", [*RUN_ROUTES, "batch"])
async def test_unknown_option_is_422_naming_it(client, route):
    response = await client.post(f"/dream/{route}", json=body(route, {"max_cyclez": 2}))

    assert response.status_code == 422
    assert "unknown option(s) max_cyclez" in response.json()["detail"]


@pytest.mark.parametrize("route", [*RUN_ROUTES, "batch"])
@pytest.mark.parametrize(("offset", "status"), [(0, 422), (1, 200), ("top", 200), ("over", 422)])
async def test_max_cycles_bounds_on_every_route(client, route, offset, status):
    top = min(20, get_settings().max_cycles_cap)
    value = {"top": top, "over": top + 1}.get(offset, offset)
    options = {"max_cycles": value, "evaluators": ["syntax"]}
    if status == 200 and route != "invoke":  # one real run per route is enough; the bound is checked before it
        options["evaluators"] = ["nope"]
        status = 422
    response = await client.post(f"/dream/{route}", json=body(route, options))

    assert response.status_code == status, response.text
    if offset in (0, "over"):
        assert response.json()["detail"][0]["loc"] == ["configurable", "max_cycles"]
    elif status == 422:
        assert "unknown evaluator(s) nope" in response.json()["detail"]  # got past the bound, to the next check


async def test_options_in_the_config_path_are_checked_too(client):
    packed = LZString.compressToEncodedURIComponent(json.dumps({"configurable": {"max_cyclez": 1}}))
    response = await client.post(f"/dream/c/{packed}/invoke", json=body("invoke"))

    assert response.status_code == 422 and "max_cyclez" in response.json()["detail"]


@pytest.mark.parametrize("route", [*RUN_ROUTES, "batch"])
async def test_missing_provider_key_is_400_before_the_stream_starts(client, route):
    response = await client.post(f"/dream/{route}", json=body(route, {"model": "openai:gpt-4o"}))

    assert response.status_code == 400
    assert "OPENAI_API_KEY" in response.json()["detail"]


async def test_a_pipelines_fallback_needs_its_key_unless_the_request_names_the_model(client):
    keyless = await client.post("/gpt4/invoke", json=body("invoke", {"fallbacks": ["cohere:command-r-plus"]}))
    offline = await client.post("/gpt4/invoke", json=body("invoke", {"model": "offline", "evaluators": ["syntax"]}))
    still = await client.post(
        "/gpt4/invoke", json=body("invoke", {"model": "offline", "fallbacks": ["cohere:command-r-plus"]})
    )

    assert keyless.status_code == 400 and "OPENAI_API_KEY" in keyless.json()["detail"]
    assert offline.status_code == 200 and offline.json()["output"]["model"] == "offline"  # the fallback went too
    assert still.status_code == 400 and "COHERE_API_KEY" in still.json()["detail"]


async def test_a_model_set_up_is_built_in_a_thread_once_per_settings_and_a_failure_is_never_remembered(monkeypatch):
    import threading

    from dream_graph.service import langserve_routes as routes

    built: list[tuple[str | None, bool]] = []
    loop_thread = threading.get_ident()

    def check_model(ctx: Context) -> None:
        built.append((ctx.model, threading.get_ident() != loop_thread))
        if ctx.model == "openai:gpt-4o":
            raise ConfigError("set OPENAI_API_KEY")

    monkeypatch.setattr(routes, "check_model", check_model)
    monkeypatch.setattr(routes, "_CHECKED", routes.OrderedDict())
    monkeypatch.setattr(routes, "CHECKED_MODELS", 2)
    await routes.acheck_model(Context(model="offline"))
    await routes.acheck_model(Context(model="offline"))
    assert built == [("offline", True)]  # in a worker thread, then remembered
    await routes.acheck_model(Context(model="offline", temperature=0.5))
    assert len(built) == 2  # another set-up is another model
    for _ in range(2):
        with pytest.raises(ConfigError):
            await routes.acheck_model(Context(model="openai:gpt-4o"))
    assert built[2:] == [("openai:gpt-4o", True)] * 2  # a failure is checked again every time
    get_settings.cache_clear()  # new settings (keys, base URLs): every set-up is checked again
    await routes.acheck_model(Context(model="offline"))
    assert len(built) == 5 and len(routes._CHECKED) == 2
    await routes.acheck_model(Context(model="offline", temperature=0.7))
    await routes.acheck_model(Context(model="offline"))  # used again: now the newest
    await routes.acheck_model(Context(model="offline", temperature=0.9))  # the bound of 2: 0.7 goes, not offline
    assert len(built) == 7 and len(routes._CHECKED) == 2
    await routes.acheck_model(Context(model="offline"))
    assert len(built) == 7
    await routes.acheck_model(Context(model="offline", temperature=0.7))
    assert len(built) == 8
    from dream_graph.llm import clear_model_cache

    clear_model_cache()  # the built models forgotten (keys changed outside the settings): check again
    await routes.acheck_model(Context(model="offline", temperature=0.7))
    assert len(built) == 9

@pytest.mark.parametrize("prompt", ["", "   \n\t "])
@pytest.mark.parametrize("route", [*RUN_ROUTES, "batch"])
async def test_empty_prompt_is_422(client, route, prompt):
    response = await client.post(f"/dream/{route}", json=body(route, prompt=prompt))

    assert response.status_code == 422 and "prompt is empty" in response.json()["detail"]


async def test_a_failure_inside_a_stream_ends_it_with_the_message_not_a_500_event(monkeypatch):
    monkeypatch.setenv("DREAM_GRAPH_DB", "off")
    get_settings.cache_clear()

    def broken(state: dict[str, Any]) -> dict[str, Any]:
        raise ConfigError("docs source 'github:x/y' cannot be read; fix DREAM_GRAPH_DOCS_SOURCE")

    builder = StateGraph(InputState)
    builder.add_node("broken", broken)
    builder.add_edge(START, "broken")
    builder.add_edge("broken", END)
    app = create_app(graphs={"dream": builder.compile()})
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        response = await client.post("/dream/stream", json=body("stream"))
        page = await client.post("/dream/stream_log", json=body("stream_log"), headers=PLAYGROUND)

    events = sse(response.text)
    assert ("data", {"error": "docs source 'github:x/y' cannot be read; fix DREAM_GRAPH_DOCS_SOURCE"}) in events
    assert response.text.rstrip().endswith("event: end") and "event: error" not in response.text
    assert "error: docs source 'github:x/y' cannot be read" in streamed_text(page)


# ---------------------------------------------------------------- what a playground page gets


async def test_playground_page_gets_the_answer_as_text_with_the_code_unescaped(client):
    response = await client.post("/dream/stream_log", json=body("stream_log", {"max_cycles": 1}), headers=PLAYGROUND)

    text = streamed_text(response)
    assert text.startswith("docs: ") and "cycle 1: reply from offline" in text
    assert "status: passed after 1 cycle(s) with model offline" in text
    assert "```python\nfrom typing import Optional\n" in text  # real line breaks, not "\\n" inside a JSON string
    assert "}{" not in text


async def test_playground_page_gets_refusals_as_text_and_api_clients_get_4xx(client):
    refused = await client.post("/gpt4/stream_log", json=body("stream_log"), headers=PLAYGROUND)
    api = await client.post("/gpt4/stream_log", json=body("stream_log"))

    assert refused.status_code == 200
    assert streamed_text(refused).startswith("error (400): model 'openai:gpt-4o' needs OPENAI_API_KEY")
    assert api.status_code == 400


# ---------------------------------------------------------------- the chat routes


def test_a_follow_up_revises_the_last_answer_with_its_code():
    answer = render_answer({"status": "passed", "cycles": 1, "model": "offline", "code": "x = 1\n", "config_yaml": "a: 1"})
    messages = [
        {"type": "human", "content": "a node that counts words"},
        {"type": "ai", "content": answer},
        {"type": "human", "content": "now also drop empty messages"},
    ]

    prompt = chat_prompt(messages)
    assert prompt.startswith("Revise this earlier answer to: a node that counts words")
    assert "Now change it so that: now also drop empty messages" in prompt
    assert "```python\nx = 1\n```" in prompt and "```yaml\na: 1\n```" in prompt
    assert chat_prompt(messages[:1]) == "a node that counts words"
    assert chat_prompt([{"type": "human", "content": "  "}]) == ""


def test_the_checks_table_lines_up():
    lines = table(["cycle", "check"], [["1", "security"], ["12", "x"]]).splitlines()

    assert lines == ["| cycle | check    |", "|-------|----------|", "| 1     | security |", "| 12    | x        |"]


async def test_chat_streams_progress_then_the_answer(client):
    messages = [{"type": "human", "content": PROMPT}]
    response = await client.post("/two/chat/stream", json={"input": {"messages": messages}})

    chunks = [data for event, data in sse(response.text) if event == "data" and isinstance(data, str)]
    assert chunks[0].startswith("docs: ") and "  syntax: pass\n" in chunks and "  security: pass\n" in chunks
    assert "checks:\n| cycle | check    | result | findings |\n|-------|" in chunks[-1]


async def test_chat_refuses_an_empty_message_and_a_bad_option(client):
    empty = await client.post("/dream/chat/invoke", json={"input": {"messages": [{"type": "human", "content": " "}]}})
    bad = await client.post(
        "/dream/chat/invoke",
        json={"input": {"messages": [{"type": "human", "content": PROMPT}]}, "config": {"configurable": {"x": 1}}},
    )

    assert empty.status_code == 422 and "prompt is empty" in empty.json()["detail"]
    assert bad.status_code == 422 and "unknown option(s) x" in bad.json()["detail"]


# ---------------------------------------------------------------- logging in


@pytest.fixture
async def keyed_client(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[httpx.AsyncClient]:
    monkeypatch.setenv("DREAM_GRAPH_API_KEY", "s3cret")
    monkeypatch.setenv("DREAM_GRAPH_DB", "off")
    get_settings.cache_clear()
    app = create_app(graphs={"dream": build_graph()})
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test", timeout=60) as c:
        yield c


async def test_a_browser_without_the_cookie_is_sent_to_the_login_form(keyed_client):
    page = await keyed_client.get("/dream/chat/playground/", headers={"Accept": "text/html"})
    api = await keyed_client.get("/dream/config_schema")

    assert page.status_code == 303 and page.headers["location"] == "/login?next=/dream/chat/playground/"
    assert api.status_code == 401 and "/login" in api.json()["detail"]


async def test_login_sets_a_strict_httponly_cookie_that_opens_the_routes(keyed_client):
    wrong = await keyed_client.post("/login", data={"key": "s3cres", "next": "/dream/playground/"})
    assert wrong.status_code == 401 and "Wrong key" in wrong.text and SESSION_COOKIE not in wrong.cookies

    right = await keyed_client.post("/login", data={"key": "s3cret", "next": "/dream/playground/"})
    assert right.status_code == 303 and right.headers["location"] == "/dream/playground/"
    cookie = right.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "s3cret" not in cookie

    run = await keyed_client.post("/dream/invoke", json=body("invoke", {"evaluators": ["syntax"]}))
    assert run.status_code == 200, run.text  # the client keeps the cookie, as a browser does


async def test_a_forged_cookie_is_refused(keyed_client):
    keyed_client.cookies.set(SESSION_COOKIE, session_token("s3cres"))
    assert (await keyed_client.post("/dream/invoke", json=body("invoke"))).status_code == 401
    keyed_client.cookies.set(SESSION_COOKIE, session_token("s3cret"))
    assert (await keyed_client.get("/dream/config_schema")).status_code == 200


@pytest.mark.parametrize(
    ("target", "expected"),
    [("/dream/playground/", "/dream/playground/"), ("//evil.example/x", "/dream/chat/playground/"),
     ("https://evil.example/", "/dream/chat/playground/"), ("", "/dream/chat/playground/")],
)
def test_login_only_redirects_to_this_server(target, expected):
    assert safe_next(target) == expected
