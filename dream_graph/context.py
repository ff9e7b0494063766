"""Per-run options: passed as LangGraph runtime `context`, or as `configurable` keys (LangServe, the LangGraph server)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from typing import Any

from langchain_core.runnables import RunnableConfig

from dream_graph.settings import get_settings

GENERIC_EVALUATORS: tuple[str, ...] = ("syntax", "security", "lint")


def default_evaluators() -> tuple[str, ...]:
    """The generic checks plus the target's defaults (Aineko: `config`, and `aineko` when Aineko is installed)."""
    from dream_graph.targets import get_target

    return (*GENERIC_EVALUATORS, *get_target().default_evaluators)


def __getattr__(name: str) -> Any:
    """`DEFAULT_EVALUATORS`, computed when read: it depends on the configured target and what is installed."""
    if name == "DEFAULT_EVALUATORS":
        return default_evaluators()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


LINT_STRICTNESS: tuple[str, ...] = ("errors", "security", "all")
# Sandbox option (= the setting that caps it), its setting's variable, unit and lowest useful value.
SANDBOX_LIMITS: tuple[tuple[str, str, str, float], ...] = (
    ("sandbox_timeout", "DREAM_GRAPH_SANDBOX_TIMEOUT", "s", 0.1),
    ("sandbox_cpu_seconds", "DREAM_GRAPH_SANDBOX_CPU_SECONDS", "CPU s", 0.1),
    ("sandbox_memory_mb", "DREAM_GRAPH_SANDBOX_MEMORY_MB", "MB", 16),
    ("sandbox_processes", "DREAM_GRAPH_SANDBOX_PROCESSES", "processes", 1),
)
WHOLE_NUMBER_OPTIONS: tuple[str, ...] = ("max_cycles", "max_tokens", "max_retries", "docs_budget", "token_budget")
NUMBER_OPTIONS: tuple[str, ...] = ("temperature", "timeout")
LIST_OPTIONS: tuple[str, ...] = ("fallbacks", "evaluators", "bandit_skip")
TEXT_OPTIONS: tuple[str, ...] = ("model", "bandit_severity", "bandit_confidence", "lint_strictness")
# Run option -> the setting that caps what a request (HTTP caller) may ask for; a request may lower, never raise.
REQUEST_CAPS: dict[str, str] = {
    "max_cycles": "max_cycles_cap",
    "max_tokens": "max_tokens_cap",
    "token_budget": "token_budget_cap",
    "timeout": "timeout_cap",
    "max_retries": "max_retries_cap",
    "docs_budget": "docs_budget_cap",
}


def _whole_number(name: str, value: Any) -> int:
    """An int option from JSON, a form or the environment: 3, 3.0 and "3" are fine; True, 3.5 and "x" are not."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"{name} must be a whole number, got {value!r}")
    if isinstance(value, str):
        value = value.strip()
        if not value.lstrip("+-").isdigit() or len(value) > 30:
            raise ValueError(f"{name} must be a whole number, got {value[:40]!r}")
        return int(value)
    if isinstance(value, float) and not (math.isfinite(value) and value.is_integer()):
        raise ValueError(f"{name} must be a whole number, got {value!r}")
    return int(value)


def _number(name: str, value: Any) -> float:
    """A finite float option; NaN and infinity would slip through every range check."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"{name} must be a number, got {value!r}")
    try:
        number = float(value)
    except (ValueError, OverflowError):
        raise ValueError(f"{name} must be a number, got {str(value)[:40]!r}") from None
    if not math.isfinite(number):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return number


def _text_list(name: str, value: Any) -> list[str]:
    """A list of names: a JSON list of strings, or one comma-separated string."""
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    if not isinstance(value, (list, tuple)) or not all(isinstance(item, str) for item in value):
        raise ValueError(f"{name} must be a list of strings (or one comma-separated string), got {value!r}")
    return list(value)


def check_request_caps(ctx: Context, requested: Iterable[str]) -> None:
    """The operator's caps (settings) on what an HTTP caller asked for; the message names the bound and its setting."""
    settings = get_settings()
    for name in sorted(set(requested) & set(REQUEST_CAPS)):
        cap, value = getattr(settings, REQUEST_CAPS[name]), getattr(ctx, name)
        variable = "DREAM_GRAPH_" + REQUEST_CAPS[name].upper()
        if name == "docs_budget" and cap and value == 0:
            raise ValueError(f"docs_budget 0 (all docs) is over this server's cap of {cap} tokens ({variable})")
        if value > cap:
            raise ValueError(f"{name} must be at most {cap} on this server ({variable}), got {value}")


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
        default_factory=lambda: list(default_evaluators()),
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
        default_factory=lambda: get_settings().sandbox_timeout,
        metadata={"description": "Wall-clock seconds a sandboxed job may take (at most DREAM_GRAPH_SANDBOX_TIMEOUT)."},
    )
    sandbox_cpu_seconds: float = field(
        default_factory=lambda: get_settings().sandbox_cpu_seconds,
        metadata={"description": "CPU seconds a sandboxed job may use (at most DREAM_GRAPH_SANDBOX_CPU_SECONDS)."},
    )
    sandbox_memory_mb: int = field(
        default_factory=lambda: get_settings().sandbox_memory_mb,
        metadata={"description": "Address space (MB) a sandboxed job may add (at most DREAM_GRAPH_SANDBOX_MEMORY_MB)."},
    )
    sandbox_processes: int = field(
        default_factory=lambda: get_settings().sandbox_processes,
        metadata={"description": "Processes/threads a sandboxed job may have (at most DREAM_GRAPH_SANDBOX_PROCESSES)."},
    )

    def __post_init__(self) -> None:
        """Fail at the start of a run, not in the middle of it, on options that cannot work."""
        self._check_types()
        if not 0.0 <= self.temperature <= 2.0:
            raise ValueError(f"temperature must be between 0 and 2, got {self.temperature}")
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens must be at least 1, got {self.max_tokens}")
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

    def _check_types(self) -> None:
        """Each option has the type its field says (a caller's `fallbacks: 5` is a 422, not a crash mid-run)."""
        for name in WHOLE_NUMBER_OPTIONS:
            setattr(self, name, _whole_number(name, getattr(self, name)))
        for name in NUMBER_OPTIONS:
            setattr(self, name, _number(name, getattr(self, name)))
        for name in LIST_OPTIONS:
            setattr(self, name, _text_list(name, getattr(self, name)))
        for name in TEXT_OPTIONS:
            if not isinstance(getattr(self, name), str):
                raise ValueError(f"{name} must be a string, got {getattr(self, name)!r}")
        if self.docs is not None and not isinstance(self.docs, str):
            raise ValueError(f"docs must be a docs source string, got {self.docs!r}")
        if not isinstance(self.autofix, (bool, str)):
            raise ValueError(f"autofix must be true or false, got {self.autofix!r}")

    def _check_evaluation_options(self) -> None:
        """Lint, repair-budget and sandbox options, checked before any work is spent."""
        self.lint_strictness = str(self.lint_strictness).lower()
        if self.lint_strictness not in LINT_STRICTNESS:
            raise ValueError(f"lint_strictness must be one of {', '.join(LINT_STRICTNESS)}, got {self.lint_strictness!r}")
        if isinstance(self.autofix, str):
            self.autofix = self.autofix.strip().lower() in ("1", "true", "yes", "on")
        if int(self.token_budget) < 1:
            raise ValueError(f"token_budget must be a positive number of tokens, got {self.token_budget}")
        self._check_sandbox_limits()

    def _check_sandbox_limits(self) -> None:
        """The sandbox limits are the server's caps (settings): a run may lower them, never raise them."""
        settings = get_settings()
        for name, setting, unit, low in SANDBOX_LIMITS:
            check = _number if unit in ("s", "CPU s") else _whole_number
            value = check(name, getattr(self, name))
            cap = getattr(settings, name)
            if value > cap:
                raise ValueError(f"{name} must be at most {cap:g} {unit} ({setting}), got {value:g}")
            if value < low:
                raise ValueError(f"{name} must be at least {low:g} {unit}, got {value:g}")
            setattr(self, name, value)

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
