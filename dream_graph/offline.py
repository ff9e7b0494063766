"""The offline demo model: a deterministic template, not AI, that lets the whole loop run with no key and no network."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, HumanMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult

from dream_graph.extract import code_blocks
from dream_graph.retrieval import tokenize
from dream_graph.targets import get_target

OFFLINE_MODEL_ID = "offline"
OFFLINE_LABEL = "offline demo model (a fixed template, not AI)"
REQUEST_MARKER = "Write code for this request:"

MODULE_NAME = "generated"
"""The module the pipeline's `class` names (`generated.<Class>`): the checks place the code there."""
FALLBACKS = ("transform", "source", "join")
"""Templates under the target's `offline/` folder (`<name>.py.tmpl` + `<name>.yml.tmpl`), one node class `Example`."""
_SOURCE_WORDS = frozenset(
    "source poll polls polling periodically emit emits tick ticks timer interval".split()  # noqa: SIM905
)
_JOIN_WORDS = frozenset("join joins merge merges combine combines pair pairs both two".split())  # noqa: SIM905
_GENERIC_WORDS = frozenset(
    "node message messages payload payloads dataset datasets input inputs output outputs read reads write writes "  # noqa: SIM905
    "each every new one".split()
)
"""Request words every example shares: no help in telling a filter from a join."""
_STOPWORDS = frozenset(
    "a an the that this these those to of for and or in on with by from into as is are be it its "  # noqa: SIM905
    "write create make build generate please me my we our you your can could would should node nodes "
    "pipeline aineko python code which what when then every each all some".split()
)
_CLASS_RE = re.compile(r"^class\s+(\w+)\((?:\w+\.)*AbstractNode\)", re.MULTILINE)
_DATASET_RE = re.compile(r"self\.(inputs|outputs)\[([^\]]+)\]")
_UNUSABLE_RE = re.compile(r"\.(consumers|producers)\b|\.produce\(|\.last\(|how=\"last\"|^def test_", re.MULTILINE)
"""The 0.3 API, reads whose test run never ends (`last()`), and test modules: not copied."""


def request_text(messages: list[BaseMessage]) -> str:
    """The user's request: the text after the instructions' marker, else the first human message."""
    for message in messages:
        if isinstance(message, HumanMessage) and REQUEST_MARKER in str(message.content):
            return str(message.content).split(REQUEST_MARKER, 1)[1].strip()
    humans = [m for m in messages if isinstance(m, HumanMessage)]
    return str(humans[0].content).strip() if humans else ""


def _class_name(request: str) -> str:
    """A class name from the request's first meaningful words, so the reply visibly answers this request."""
    words = [w for w in re.findall(r"[A-Za-z][A-Za-z0-9]*", request) if w.lower() not in _STOPWORDS]
    name = "".join(w[:1].upper() + w[1:].lower() for w in words[:3]) or "Generated"
    return f"{name}Node"


def _datasets(python: str) -> tuple[list[str], list[str]] | None:
    """The input and output dataset names a node uses, or None when one is not a string literal (a YAML can't be
    derived from the code then)."""
    found: dict[str, list[str]] = {"inputs": [], "outputs": []}
    for kind, key in _DATASET_RE.findall(python):
        literal = re.fullmatch(r"\s*([\"'])(\w+)\1\s*", key)
        if literal is None:
            return None
        if literal.group(2) not in found[kind]:
            found[kind].append(literal.group(2))
    return found["inputs"], found["outputs"]


def _paired_yaml(python: str, yamls: list[str]) -> str | None:
    """A one-node pipeline from the docs that runs this module's class, so every `class` in it can be imported."""
    name = _CLASS_RE.search(python).group(1)  # type: ignore[union-attr]
    for body in yamls:
        classes = re.findall(r"^\s*class:\s*(\S+)\s*$", body, re.MULTILINE)
        if len(classes) == 1 and classes[0].rsplit(".", 1)[-1] == name:
            return body
    return None


def _usable(python: str) -> bool:
    """A complete one-node module on the 0.4.0 API whose test run ends by itself (no `last()`, no test functions)."""
    return len(_CLASS_RE.findall(python)) == 1 and "def _execute(" in python and not _UNUSABLE_RE.search(python)


def _examples(messages: list[BaseMessage], request: str) -> tuple[str, str | None] | None:
    """The docs example in the prompt that shares the most words with the request, with its pipeline if the docs
    have one; None when the prompt holds no usable example."""
    pythons: list[str] = []
    yamls: list[str] = []
    for message in messages:
        for lang, body in code_blocks(str(message.content)):
            if lang in ("python", "py") and _usable(body):
                pythons.append(body)
            elif lang in ("yaml", "yml") and "pipeline:" in body:
                yamls.append(body)
    wanted = set(tokenize(request)) - _GENERIC_WORDS
    candidates = [(p, _paired_yaml(p, yamls)) for p in pythons]
    candidates = [(p, y) for p, y in candidates if y is not None or _datasets(p) is not None]
    if not candidates:
        return None
    return max(candidates, key=lambda c: len(wanted & set(tokenize(c[0]))))  # ties: the first in the prompt


def _fallback(request: str) -> tuple[str, str]:
    """The target's own template for the request's shape: a source, a two-input join, or a transform."""
    words = set(re.findall(r"[a-z]+", request.lower()))
    name = FALLBACKS[1] if words & _SOURCE_WORDS else FALLBACKS[2] if words & _JOIN_WORDS else FALLBACKS[0]
    folder = get_target().resource("offline")
    python = folder.joinpath(f"{name}.py.tmpl").read_text(encoding="utf-8")
    return python, folder.joinpath(f"{name}.yml.tmpl").read_text(encoding="utf-8")


def _pipeline_for(python: str, name: str) -> str:
    """A pipeline running the module's one node, derived from the dataset names the code uses."""
    inputs, outputs = _datasets(python) or ([], [])
    snake = re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()
    lines = ["pipeline:", f"  name: {snake}", "  nodes:", f"    {snake}:", f"      class: {MODULE_NAME}.{name}"]
    for key, names in (("inputs", inputs), ("outputs", outputs)):
        if names:
            lines += [f"      {key}:", *(f"        - {n}" for n in names)]
    lines.append("  datasets:" if inputs or outputs else "  datasets: {}")
    for dataset in (*inputs, *outputs):
        lines += [f"    {dataset}:", "      type: aineko.datasets.kafka.KafkaDataset"]
    return "\n".join(lines) + "\n"


def template_reply(messages: list[BaseMessage]) -> str:
    """Adapt the docs' example closest to the request (else the target's template): rename the node class and point
    the pipeline at `generated.<Class>`."""
    request = request_text(messages)
    chosen = _examples(messages, request)
    python, yaml = chosen if chosen is not None else _fallback(request)
    source = "the documentation's own example" if chosen is not None else f"the {get_target().spec} template"
    new_name = _class_name(request)
    old_name = _CLASS_RE.search(python).group(1)  # type: ignore[union-attr]
    python = re.sub(rf"\b{old_name}\b", new_name, python)
    if yaml is None:
        yaml = _pipeline_for(python, new_name)
    yaml = re.sub(r"(class:\s*)\S+", rf"\g<1>{MODULE_NAME}.{new_name}", yaml, count=1)
    summary = " ".join(request.split())[:200]
    return (
        f"[{OFFLINE_LABEL}] This answer adapts {source} to the request "
        f'"{summary}"; set DREAM_GRAPH_MODEL to use a real model.\n\n'
        f"```python\n{python.rstrip()}\n```\n\n```yaml\n{yaml.rstrip()}\n```\n"
    )


class ScriptedChatModel(BaseChatModel):
    """A chat model whose reply is computed from the conversation, with no network and no AI; `invoke` and `stream`
    give the same text, streamed word by word like a provider's tokens."""

    model_name: str = OFFLINE_MODEL_ID

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_name": self.model_name}

    def reply_text(self, messages: list[BaseMessage]) -> str:
        """The whole reply to `messages`."""
        raise NotImplementedError

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        message = AIMessage(content=self.reply_text(messages), response_metadata={"model_name": self.model_name})
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        pieces = re.findall(r"\S*\s*", self.reply_text(messages))
        for i, piece in enumerate(p for p in pieces if p):
            meta = {"model_name": self.model_name} if i == 0 else {}
            chunk = ChatGenerationChunk(message=AIMessageChunk(content=piece, response_metadata=meta))
            if run_manager:
                run_manager.on_llm_new_token(piece, chunk=chunk)
            yield chunk


class OfflineChatModel(ScriptedChatModel):
    """A LangChain chat model that needs no network: it answers from the prompt's documentation examples."""

    @property
    def _llm_type(self) -> str:
        return "dream-graph-offline"

    def reply_text(self, messages: list[BaseMessage]) -> str:
        """The docs' example closest to the request, adapted (or the target's template)."""
        return template_reply(messages)
