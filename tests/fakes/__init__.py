"""Protocol-faithful fake LLM servers for tests and benchmarks: the real ChatOpenAI / ChatCohere talk to them over HTTP.

    from tests.fakes import FakeOpenAI, FakeCohere, Reply, CLEAN_REPLY, SYNTAX_ERROR_REPLY, BANDIT_REPLY

    with FakeOpenAI() as server:                 # uvicorn on 127.0.0.1:<free port>, in a background thread
        server.base_url                          # "http://127.0.0.1:PORT/v1" -> OPENAI_BASE_URL
        server.script(                           # a queue: each request takes the next reply ...
            Reply.error(429, retry_after=1),     #   HTTP 429 with Retry-After: 1, in OpenAI's error format
            Reply.error(500),                    #   HTTP 500
            Reply.hanging(),                     #   accept and never answer (until reset/stop): client times out
            Reply.ok(SYNTAX_ERROR_REPLY, delay=0.2, chunk_delay=0.01, pause_after=3),
        )                                        # ... and `server.default` (a clean reply) once it is empty
        server.latency = 0.05                    # added before every reply (benchmarks: a slow LLM)
        server.default = Reply.error(500)        # e.g. "fails forever"
        server.requests                          # every request: RecordedRequest(path, headers, body, at)
        server.bodies                            # just the JSON bodies
        server.finished_streams                  # SSE streams sent to the end
        server.release()                         # free hanging requests and streams paused at `pause_after`
        server.reset()                           # empty queue, records, default, latency

`FakeCohere` is the same for Cohere's v2 chat API (`POST /v2/chat`; `base_url` is the root -> COHERE_BASE_URL).
A request with `"stream": true` gets SSE in the provider's own event format, otherwise one JSON object; both carry
token usage. In pytest, the fixtures `fake_openai` / `fake_cohere` (tests/fakes/fixtures.py, exposed in conftest)
give a reset server per test with the provider's base URL and a key already in the environment.
"""

from tests.fakes.base import BANDIT_REPLY, CLEAN_REPLY, SYNTAX_ERROR_REPLY, FakeServer, RecordedRequest, Reply
from tests.fakes.cohere_server import FakeCohere
from tests.fakes.openai_server import FakeOpenAI

__all__ = [
    "BANDIT_REPLY",
    "CLEAN_REPLY",
    "SYNTAX_ERROR_REPLY",
    "FakeCohere",
    "FakeOpenAI",
    "FakeServer",
    "RecordedRequest",
    "Reply",
]
