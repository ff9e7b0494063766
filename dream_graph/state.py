"""What a caller sends, what the graph keeps between steps, and what it returns."""

from __future__ import annotations

import operator
from typing import Annotated, Any, Literal

from langchain_core.messages import AnyMessage
from typing_extensions import NotRequired, TypedDict

Status = Literal["running", "passed", "failed", "error"]


class Finding(TypedDict):
    """One problem an evaluator found; `severity` "info" is reported but never fails a check."""

    rule: str
    line: int | None
    severity: str
    message: str


class Evaluation(TypedDict):
    """One evaluator's verdict on one cycle's reply."""

    cycle: int
    evaluator: str
    passed: bool
    findings: list[Finding]
    duration_ms: NotRequired[float]


class DocSection(TypedDict):
    """A piece of documentation that went into the prompt."""

    path: str
    heading: str
    tokens: int


class LLMCall(TypedDict):
    """One generate step: which model answered (or failed last), how long it took and what it cost."""

    cycle: int
    model: str
    latency_ms: float
    input_tokens: int | None
    output_tokens: int | None
    ok: bool
    error: str | None
    failed_over: NotRequired[list[str]]
    reply: NotRequired[str | None]
    sent_after_prompt: NotRequired[list[dict[str, str]]]


class AutoFix(TypedDict):
    """Safe fixes applied to a cycle's code before the checks, without an LLM call."""

    cycle: int
    tool: str
    rules: list[str]


class Example(TypedDict):
    """Examples as tests: payloads fed to input datasets and the payloads expected on output datasets."""

    inputs: NotRequired[dict[str, list[Any]]]
    outputs: NotRequired[dict[str, list[Any]]]


class InputState(TypedDict):
    """The request: plain language, as a user would type it, and optionally examples the code must reproduce."""

    prompt: str
    examples: NotRequired[list[Example] | None]


class OutputState(TypedDict, total=False):
    """The stable output contract (see the README)."""

    prompt: str
    examples: list[Example] | None
    status: Status
    target: str | None
    stop_reason: str | None
    cycles: int
    response: str | None
    code: str | None
    config_yaml: str | None
    model: str | None
    evaluations: list[Evaluation]
    messages: list[AnyMessage]
    doc_sections: list[DocSection]
    docs_source: str | None
    docs_warnings: list[str]
    prompt_tokens: int
    error: str | None
    autofixes: list[AutoFix]
    tokens_used: int
    provider_status: int | None
    llm_calls: list[LLMCall]
    run_id: str | None
    record_error: str | None


class State(OutputState, total=False):
    """Everything the nodes share; `evaluations` is appended to by parallel evaluator branches."""

    evaluations: Annotated[list[Evaluation], operator.add]
    llm_calls: Annotated[list[LLMCall], operator.add]
    documentation: str
    extra: dict[str, Any]
    started_at: str
