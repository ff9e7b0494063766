"""Settings bounds: each limit accepts its exact edge and refuses one step past it, naming the variable."""

from __future__ import annotations

import pytest

from dream_graph.errors import ConfigError
from dream_graph.settings import Settings, get_settings

# (variable, field, the edge itself (accepted), one step past it (refused))
BOUNDS = [
    ("DREAM_GRAPH_MAX_CYCLES", "max_cycles", "1", "0"),
    ("DREAM_GRAPH_MAX_CYCLES", "max_cycles", "20", "21"),
    ("DREAM_GRAPH_MAX_QUEUED_RUNS", "max_queued_runs", "0", "-1"),
    ("DREAM_GRAPH_MAX_CONCURRENT_RUNS", "max_concurrent_runs", "1", "0"),
    ("DREAM_GRAPH_TOKEN_BUDGET", "token_budget", "1", "0"),
    ("DREAM_GRAPH_MAX_TOKENS", "max_tokens", "1", "0"),
    ("DREAM_GRAPH_MAX_PROMPT_CHARS", "max_prompt_chars", "1", "0"),
    ("DREAM_GRAPH_TEMPERATURE", "temperature", "0", "-0.01"),
    ("DREAM_GRAPH_TEMPERATURE", "temperature", "2", "2.01"),
    ("DREAM_GRAPH_EVAL_PROCESSES", "eval_processes", "0", "-1"),
    ("DREAM_GRAPH_EVAL_PROCESSES", "eval_processes", "64", "65"),
    ("DREAM_GRAPH_MAX_RETRIES", "max_retries", "0", "-1"),
    ("DREAM_GRAPH_MAX_RETRIES", "max_retries", "10", "11"),
    ("DREAM_GRAPH_DOCS_BUDGET", "docs_budget", "0", "-1"),
    ("DREAM_GRAPH_DOCS_MIN_SCORE", "docs_min_score", "0", "-0.01"),
    ("DREAM_GRAPH_DOCS_MIN_SCORE", "docs_min_score", "1", "1.01"),
    ("DREAM_GRAPH_GITHUB_TIMEOUT", "github_timeout", "1", "0"),
    ("DREAM_GRAPH_GITHUB_TIMEOUT", "github_timeout", "300", "301"),
    ("DREAM_GRAPH_DOCS_FETCH_ATTEMPTS", "docs_fetch_attempts", "1", "0"),
    ("DREAM_GRAPH_DOCS_FETCH_ATTEMPTS", "docs_fetch_attempts", "10", "11"),
    ("DREAM_GRAPH_DOCS_RETRY_WAIT", "docs_retry_wait", "0", "-0.01"),
    ("DREAM_GRAPH_DOCS_RETRY_WAIT", "docs_retry_wait", "60", "60.01"),
    ("DREAM_GRAPH_DOCS_RATE_LIMIT_MAX_WAIT", "docs_rate_limit_max_wait", "0", "-0.01"),
]


@pytest.mark.parametrize(("variable", "name", "edge", "past"), BOUNDS, ids=[f"{b[1]}={b[3]}" for b in BOUNDS])
def test_each_bound_accepts_its_edge_and_refuses_one_step_past(monkeypatch, variable, name, edge, past):
    monkeypatch.setenv(variable, edge)
    get_settings.cache_clear()
    assert getattr(get_settings(), name) == type(Settings.model_fields[name].default)(float(edge))
    monkeypatch.setenv(variable, past)
    get_settings.cache_clear()
    with pytest.raises(ConfigError) as caught:
        get_settings()
    message = str(caught.value)
    assert message.startswith(f"invalid setting {variable}={past!r}:"), message
    assert "greater than" in message or "less than" in message, message  # the bound is named, not a type error


def test_the_timeout_must_be_above_zero_not_at_it(monkeypatch):
    monkeypatch.setenv("DREAM_GRAPH_TIMEOUT", "0.001")
    get_settings.cache_clear()
    assert get_settings().timeout == 0.001
    monkeypatch.setenv("DREAM_GRAPH_TIMEOUT", "0")
    get_settings.cache_clear()
    with pytest.raises(ConfigError, match=r"DREAM_GRAPH_TIMEOUT='0': Input should be greater than 0"):
        get_settings()


def test_every_problem_is_named_in_one_error(monkeypatch):
    monkeypatch.setenv("DREAM_GRAPH_MAX_CYCLES", "0")
    monkeypatch.setenv("DREAM_GRAPH_MAX_QUEUED_RUNS", "-1")
    get_settings.cache_clear()
    with pytest.raises(ConfigError) as caught:
        get_settings()
    assert "DREAM_GRAPH_MAX_CYCLES='0'" in str(caught.value) and "DREAM_GRAPH_MAX_QUEUED_RUNS='-1'" in str(caught.value)
    assert "; " in str(caught.value)


def test_settings_are_read_once_until_the_cache_is_cleared(monkeypatch):
    monkeypatch.setenv("DREAM_GRAPH_MAX_CYCLES", "4")
    get_settings.cache_clear()
    first = get_settings()
    monkeypatch.setenv("DREAM_GRAPH_MAX_CYCLES", "5")
    assert get_settings() is first and first.max_cycles == 4
    get_settings.cache_clear()
    assert get_settings().max_cycles == 5
