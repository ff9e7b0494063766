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


class InputState(TypedDict):
    """The request: plain language, as a user would type it."""

    prompt: str


class OutputState(TypedDict, total=False):
    """The stable output contract (see the README)."""

    prompt: str
    status: Status
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
    prompt_tokens: int
    error: str | None


class State(OutputState, total=False):
    """Everything the nodes share; `evaluations` is appended to by parallel evaluator branches."""

    evaluations: Annotated[list[Evaluation], operator.add]
    documentation: str
    extra: dict[str, Any]
