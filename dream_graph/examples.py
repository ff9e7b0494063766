"""Examples as tests: a request may carry payloads for input datasets and the payloads expected on output datasets.

One shape everywhere (`graph.invoke`, `/generate`, the LangServe input, `dream-graph generate --examples FILE.json`):
`[{"inputs": {"<dataset>": [payload, ...]}, "outputs": {"<dataset>": [payload, ...]}}, ...]`. A check that runs
the code (the `aineko` evaluator) feeds the inputs to the node that reads them and compares what it writes.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, JsonValue, TypeAdapter, ValidationError, model_validator

from dream_graph.errors import PromptError

MAX_EXAMPLES = 20
MAX_PAYLOADS = 100
"""Payloads per dataset in one example."""
MAX_EXAMPLES_BYTES = 64 * 1024
"""All examples of a request, as compact JSON: they travel in the prompt's state and into the sandbox."""

DatasetName = Annotated[str, Field(min_length=1, max_length=200)]
Payloads = Annotated[list[JsonValue], Field(max_length=MAX_PAYLOADS)]


class ExampleModel(BaseModel):
    """One example: what goes in on which datasets, and what must come out on which."""

    model_config = ConfigDict(extra="forbid")

    inputs: dict[DatasetName, Payloads] = Field(
        default_factory=dict, description="Payloads fed to each input dataset, in order (empty for a source node)."
    )
    outputs: dict[DatasetName, Payloads] = Field(
        default_factory=dict, description="Payloads the node must write on each output dataset, in order."
    )

    @model_validator(mode="after")
    def _something_to_check(self) -> ExampleModel:
        """An example with neither inputs nor outputs tests nothing: refuse it rather than pass silently."""
        if not self.outputs and not self.inputs:
            raise ValueError("an example needs `inputs` or `outputs` (a dataset name -> list of payloads)")
        return self


Examples = Annotated[list[ExampleModel], Field(max_length=MAX_EXAMPLES)]
_ADAPTER: TypeAdapter[list[ExampleModel]] = TypeAdapter(Examples)


def check_size(examples: list[ExampleModel]) -> list[ExampleModel]:
    """Bound the examples' total size (a pydantic after-validator and a plain check share it)."""
    size = len(json.dumps([e.model_dump() for e in examples], separators=(",", ":")))
    if size > MAX_EXAMPLES_BYTES:
        raise ValueError(f"examples are {size} bytes as JSON; the limit is {MAX_EXAMPLES_BYTES}")
    return examples


def _first_error(exc: ValidationError) -> str:
    """The first problem, with where it is (`examples[0].inputs.numbers`), as one line."""
    err = exc.errors()[0]
    where = "examples"
    for part in err["loc"]:
        if isinstance(part, int):
            where += f"[{part}]"
        elif part == "[key]":
            where += " (a dataset name)"
        else:
            where += f".{part}" if str(part).isidentifier() else f"[{part!r}]"
    return f"{where}: {err['msg'].removeprefix('Value error, ')}"


def validate_examples(raw: Any) -> list[dict] | None:
    """The request's examples as plain dicts, or PromptError naming what is wrong and the shape expected."""
    if raw is None:
        return None
    try:
        examples = check_size(_ADAPTER.validate_python(raw))
    except ValidationError as exc:
        raise PromptError(
            f"invalid examples: {_first_error(exc)}; expected a list of "
            '{"inputs": {"<dataset>": [payload, ...]}, "outputs": {"<dataset>": [payload, ...]}}'
        ) from None
    except ValueError as exc:
        raise PromptError(f"invalid examples: {exc}") from None
    return [e.model_dump() for e in examples]


def load_examples_file(path: str) -> list[dict]:
    """Examples from a JSON file (the CLI's --examples), or PromptError naming the file and the problem."""
    try:
        with open(path, encoding="utf-8") as handle:
            raw = json.load(handle)
    except OSError as exc:
        raise PromptError(f"cannot read examples file {path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise PromptError(f"examples file {path} is not valid JSON: {exc}") from None
    try:
        return validate_examples(raw) or []
    except PromptError as exc:
        raise PromptError(f"examples file {path}: {exc}") from None


def examples_prompt(examples: list[dict] | None) -> list[str]:
    """The examples as a part of the first request, so the model names its datasets as the examples do."""
    if not examples:
        return []
    text = "\n".join(json.dumps(example) for example in examples)
    intro = (
        "Examples the code must reproduce: a node reading the `inputs` datasets gets these payloads (the `message` "
        "of each message it reads) and must write exactly the `outputs` payloads, in order, on the datasets named "
        "there; they are run as tests:"
    )
    return [f"{intro}\n```json\n{text}\n```"]
