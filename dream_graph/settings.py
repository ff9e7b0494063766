"""Process-wide settings read from environment variables and an optional `.env` file."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

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
    slack_signing_secret: SecretStr | None = Field(None, validation_alias="SLACK_SIGNING_SECRET")
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
