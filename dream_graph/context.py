"""Per-run options: passed as LangGraph runtime `context`, or as `configurable` keys (LangServe, the LangGraph server)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from langchain_core.runnables import RunnableConfig

from dream_graph.settings import get_settings

DEFAULT_EVALUATORS: tuple[str, ...] = ("syntax", "security")


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
