"""Named pipelines: a model (plus fallbacks) and its run options under one name, read from a TOML file.

The file is `DREAM_GRAPH_PIPELINES`, else the `pipelines.toml` shipped in this package. Each table is a pipeline:

    [gpt4]
    description = "GPT-4o, falling back to Cohere"
    model = "openai:gpt-4o"
    fallbacks = ["cohere:command-r-plus"]
    temperature = 0.1
    max_tokens = 4096
    max_cycles = 3
    evaluators = ["syntax", "security"]
    docs = "bundled"            # or "local:<dir>", "github:owner/repo@branch:path"
    timeout = 60                # seconds per request
    max_retries = 2             # per request, on 429/5xx/timeouts

Only `model` is required; a key left out falls back to the environment's default (see `Settings`).
"""

from __future__ import annotations

import copy
import re
import tomllib
from dataclasses import field, fields, make_dataclass
from functools import partial
from importlib.resources import files
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from dream_graph.context import Context
from dream_graph.errors import ConfigError
from dream_graph.settings import get_settings

SHIPPED_PIPELINES = Path(str(files("dream_graph").joinpath("pipelines.toml")))


class Pipeline(BaseModel):
    """One named pipeline; its set fields become the run options (`Context`) of graphs built from it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="The table name in the file.")
    description: str = ""
    model: str = Field(description="Model spec: offline, openai:<model>, cohere:<model>, provider:model.")
    fallbacks: list[str] | None = Field(None, description="Model specs to try in order when `model` keeps failing.")
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    max_tokens: int | None = Field(None, ge=1)
    max_cycles: int | None = Field(None, ge=1, le=20)
    evaluators: list[str] | None = None
    docs: str | None = Field(None, description="Docs source: bundled, local:<dir>, github:owner/repo@branch:path.")
    timeout: float | None = Field(None, gt=0)
    max_retries: int | None = Field(None, ge=0, le=10)

    @field_validator("model", "fallbacks")
    @classmethod
    def _specs(cls, value: Any) -> Any:
        """A spec is `auto`, `offline`, `replay` or `provider:model`, caught when the file is read rather than mid-run."""
        for spec in [value] if isinstance(value, str) else value or []:
            if spec not in ("auto", "offline", "replay") and not re.fullmatch(r"[\w.-]+:\S+", spec):
                raise ValueError(f"{spec!r} is not a model spec; use offline, openai:<model>, cohere:<model>")
        return value

    def context_values(self) -> dict[str, Any]:
        """The run options this pipeline sets (unset ones are left to the environment)."""
        return self.model_dump(exclude={"name", "description"}, exclude_none=True)

    def context_schema(self) -> type[Context]:
        """`Context` with this pipeline's values as defaults: LangGraph builds a dict `context` into it."""
        base = {f.name: f for f in fields(Context)}
        overrides = [
            (key, base[key].type, field(default_factory=partial(copy.deepcopy, value), metadata=base[key].metadata))
            for key, value in self.context_values().items()
        ]
        cls_name = "".join(part.capitalize() for part in re.split(r"\W+", self.name)) + "Context"
        return make_dataclass(cls_name, overrides, bases=(Context,), kw_only=True)


class UnknownPipelineError(ConfigError, KeyError):
    """No pipeline of that name; the message lists the known ones."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


def _key_line(text: str, table: str, key: str | None) -> int | None:
    """The 1-based line of `key` inside `[table]` (or of the table header), for error messages."""
    lines = text.splitlines()
    header = re.compile(rf"^\s*\[\s*(\"{re.escape(table)}\"|'{re.escape(table)}'|{re.escape(table)})\s*\]")
    start = next((i for i, line in enumerate(lines) if header.match(line)), None)
    if start is None:
        inline = re.compile(rf"^\s*\"?{re.escape(table)}\"?\s*=")
        return next((i + 1 for i, line in enumerate(lines) if inline.match(line)), None)
    if key is None:
        return start + 1
    key_re = re.compile(rf"^\s*[\"']?{re.escape(key)}[\"']?\s*=")
    for i in range(start + 1, len(lines)):
        if re.match(r"^\s*\[", lines[i]):
            break
        if key_re.match(lines[i]):
            return i + 1
    return start + 1


def _schema_error(path: Path, text: str, table: str, exc: ValidationError) -> ConfigError:
    """Name the file, the line, the pipeline, the key and what is wrong with it."""
    problems = []
    for error in exc.errors():
        key = str(error["loc"][0]) if error["loc"] else None
        line = _key_line(text, table, key)
        where = f"{path}:{line}" if line else str(path)
        if error["type"] == "extra_forbidden":
            known = ", ".join(k for k in Pipeline.model_fields if k != "name")
            problems.append(f"{where}: pipeline {table!r}: unknown key {key!r} (known keys: {known})")
        elif error["type"] == "missing":
            problems.append(f"{where}: pipeline {table!r}: missing required key {key!r}")
        else:
            problems.append(f"{where}: pipeline {table!r}: key {key!r}: {error['msg']}")
    return ConfigError("invalid pipelines file: " + "; ".join(problems))


def pipelines_path(path: str | Path | None = None) -> Path:
    """The file to read: the argument, else DREAM_GRAPH_PIPELINES, else the shipped example."""
    return Path(path) if path is not None else (get_settings().pipelines or SHIPPED_PIPELINES)


def load_pipelines(path: str | Path | None = None) -> dict[str, Pipeline]:
    """Every pipeline in the file, by name; an invalid file is a ConfigError naming the key and the line."""
    path = pipelines_path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read pipelines file {path}: {exc.strerror or exc}; check DREAM_GRAPH_PIPELINES") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"invalid pipelines file {path}: {exc}") from None
    pipelines: dict[str, Pipeline] = {}
    for name, table in data.items():
        if not isinstance(table, dict):
            line = _key_line(text, name, None)
            raise ConfigError(
                f"invalid pipelines file: {path}:{line}: {name!r} must be a table: write [{name}] and its keys under it"
            )
        try:
            pipelines[name] = Pipeline(name=name, **table)
        except ValidationError as exc:
            raise _schema_error(path, text, name, exc) from None
        except TypeError as exc:  # a key named `name` collides with the table name
            raise ConfigError(f"invalid pipelines file: {path}: pipeline {name!r}: {exc}") from None
    return pipelines


def get_pipeline(name: str, path: str | Path | None = None) -> Pipeline:
    """One pipeline by name; an unknown name lists the known ones."""
    pipelines = load_pipelines(path)
    try:
        return pipelines[name]
    except KeyError:
        raise UnknownPipelineError(
            f"unknown pipeline {name!r}; known: {', '.join(sorted(pipelines)) or '(none)'} "
            f"(in {pipelines_path(path)}; set DREAM_GRAPH_PIPELINES to use another file)"
        ) from None
