"""Per-run options: passed as LangGraph runtime `context`, or as `configurable` keys (LangServe, the LangGraph server)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from langchain_core.runnables import RunnableConfig

from dream_graph.settings import get_settings

DEFAULT_EVALUATORS: tuple[str, ...] = ("syntax", "security", "lint", "config")
LINT_STRICTNESS: tuple[str, ...] = ("errors", "security", "all")


@dataclass(kw_only=True)
class Context:
    """Options for one run; unset fields fall back to the environment (see `Settings`)."""

    model: str = field(
        default_factory=lambda: get_settings().model,
        metadata={"description": "Model spec: auto, offline, openai:<model>, cohere:<model>, provider:model."},
    )
    max_cycles: int = field(
        default_factory=lambda: get_settings().max_cycles,
        metadata={"description": "Most LLM generations in one run (first attempt included)."},
    )
    temperature: float = field(
        default_factory=lambda: get_settings().temperature,
        metadata={"description": "Sampling temperature sent to the model."},
    )
    max_tokens: int = field(
        default_factory=lambda: get_settings().max_tokens,
        metadata={"description": "Most tokens the model may write per reply."},
    )
    fallbacks: list[str] = field(
        default_factory=list,
        metadata={"description": "Model specs to try in order when `model` keeps failing (after its retries)."},
    )
    timeout: float = field(
        default_factory=lambda: get_settings().timeout,
        metadata={"description": "Seconds to wait for one LLM request."},
    )
    max_retries: int = field(
        default_factory=lambda: get_settings().max_retries,
        metadata={"description": "Retries per LLM request on 429, 5xx and timeouts (exponential backoff, Retry-After)."},
    )
    docs: str | None = field(
        default=None,
        metadata={"description": "Docs source: bundled, local:<dir> or github:owner/repo@branch:path (unset = env)."},
    )
    docs_budget: int = field(
        default_factory=lambda: get_settings().docs_budget,
        metadata={"description": "Most documentation tokens in the prompt (core API always kept); 0 = all docs."},
    )
    evaluators: list[str] = field(
        default_factory=lambda: list(DEFAULT_EVALUATORS),
        metadata={"description": "Names of the evaluators to run on every reply."},
    )
    bandit_severity: str = field(
        default="LOW", metadata={"description": "Lowest Bandit severity that counts: LOW, MEDIUM or HIGH."}
    )
    bandit_confidence: str = field(
        default="LOW", metadata={"description": "Lowest Bandit confidence that counts: LOW, MEDIUM or HIGH."}
    )
    bandit_skip: list[str] = field(
        default_factory=lambda: ["B101"],
        metadata={"description": "Bandit test ids to skip (B101, assert, by default)."},
    )
    lint_strictness: str = field(
        default="errors",
        metadata={"description": "Which Ruff findings fail: errors (code that breaks), security (+ S rules), all."},
    )
    autofix: bool = field(
        default=True,
        metadata={"description": "Apply Ruff's safe fixes (unused imports, ...) before the checks, not via the LLM."},
    )
    token_budget: int = field(
        default_factory=lambda: get_settings().token_budget,
        metadata={"description": "Most tokens (approximate) one run may send to and get from the model, all cycles."},
    )
    sandbox_timeout: float = field(
        default=5.0, metadata={"description": "Wall-clock seconds the sandbox evaluator allows the import."}
    )
    sandbox_cpu_seconds: int = field(default=2, metadata={"description": "CPU seconds the sandbox child may use."})
    sandbox_memory_mb: int = field(default=512, metadata={"description": "Address space (MB) of the sandbox child."})

    def __post_init__(self) -> None:
        """Fail at the start of a run, not in the middle of it, on options that cannot work."""
        if not 1 <= int(self.max_cycles) <= 20:
            raise ValueError(f"max_cycles must be between 1 and 20, got {self.max_cycles}")
        for name in ("bandit_severity", "bandit_confidence"):
            value = str(getattr(self, name)).upper()
            if value not in ("LOW", "MEDIUM", "HIGH"):
                raise ValueError(f"{name} must be LOW, MEDIUM or HIGH, got {value!r}")
            setattr(self, name, value)
        if isinstance(self.evaluators, str):
            self.evaluators = [e.strip() for e in self.evaluators.split(",") if e.strip()]
        self._check_evaluation_options()
        if isinstance(self.fallbacks, str):
            self.fallbacks = [m.strip() for m in self.fallbacks.split(",") if m.strip()]
        if float(self.timeout) <= 0:
            raise ValueError(f"timeout must be a positive number of seconds, got {self.timeout}")
        if not 0 <= int(self.max_retries) <= 10:
            raise ValueError(f"max_retries must be between 0 and 10, got {self.max_retries}")
        if int(self.docs_budget) < 0:
            raise ValueError(f"docs_budget must be 0 (all docs) or a positive number of tokens, got {self.docs_budget}")
        self.docs_budget = int(self.docs_budget)

    def _check_evaluation_options(self) -> None:
        """Lint, repair-budget and sandbox options, checked before any work is spent."""
        self.lint_strictness = str(self.lint_strictness).lower()
        if self.lint_strictness not in LINT_STRICTNESS:
            raise ValueError(f"lint_strictness must be one of {', '.join(LINT_STRICTNESS)}, got {self.lint_strictness!r}")
        if isinstance(self.autofix, str):
            self.autofix = self.autofix.strip().lower() in ("1", "true", "yes", "on")
        if int(self.token_budget) < 1:
            raise ValueError(f"token_budget must be a positive number of tokens, got {self.token_budget}")
        if not 0 < float(self.sandbox_timeout) <= 300:
            raise ValueError(f"sandbox_timeout must be between 0 and 300 seconds, got {self.sandbox_timeout}")
        if not 1 <= int(self.sandbox_cpu_seconds) <= 300:
            raise ValueError(f"sandbox_cpu_seconds must be between 1 and 300, got {self.sandbox_cpu_seconds}")
        if not 64 <= int(self.sandbox_memory_mb) <= 65536:
            raise ValueError(f"sandbox_memory_mb must be between 64 and 65536, got {self.sandbox_memory_mb}")

    @classmethod
    def from_run(cls, context: Any, config: RunnableConfig | None = None) -> Context:
        """Merge the runtime context over `configurable` keys so every way of calling the graph works."""
        if isinstance(context, cls):
            return context
        names = {f.name for f in fields(cls)}
        values: dict[str, Any] = {}
        configurable = (config or {}).get("configurable") or {}
        values.update({k: v for k, v in configurable.items() if k in names and v is not None})
        if isinstance(context, dict):
            values.update({k: v for k, v in context.items() if k in names and v is not None})
        return cls(**values)


def run_options(config: RunnableConfig | None = None) -> Context:
    """This run's options, from inside a node: runtime context first, then `configurable`, then the environment."""
    from langgraph.runtime import get_runtime

    try:
        runtime = get_runtime()
    except RuntimeError:  # called outside a graph run
        runtime = None
    return Context.from_run(getattr(runtime, "context", None), config)
