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

OFFLINE_MODEL_ID = "offline"
OFFLINE_LABEL = "offline demo model (a fixed template, not AI)"
REQUEST_MARKER = "Write code for this request:"

_FALLBACK_PY = '''from typing import Optional

from aineko import AbstractNode


class Example(AbstractNode):
    """Reads a message and writes it on."""

    def _execute(self, params: Optional[dict] = None) -> Optional[bool]:
        message = self.consumers["input"].next()
        if message is None:
            return None
        self.producers["output"].produce(message["message"])
        return None
'''
_FALLBACK_YAML = """pipeline:
  name: example
  nodes:
    example:
      class: my_project.nodes.Example
      inputs:
        - input
      outputs:
        - output
  datasets:
    input:
      type: aineko.datasets.kafka.KafkaDataset
    output:
      type: aineko.datasets.kafka.KafkaDataset
"""
_STOPWORDS = frozenset(
    "a an the that this these those to of for and or in on with by from into as is are be it its "
    "write create make build generate please me my we our you your can could would should node nodes "
    "pipeline aineko python code which what when then every each all some".split()
)
_CLASS_RE = re.compile(r"^class\s+(\w+)\(AbstractNode\)", re.MULTILINE)


def _request_text(messages: list[BaseMessage]) -> str:
    for message in messages:
        if isinstance(message, HumanMessage) and REQUEST_MARKER in str(message.content):
            return str(message.content).split(REQUEST_MARKER, 1)[1].strip()
    humans = [m for m in messages if isinstance(m, HumanMessage)]
    return str(humans[0].content).strip() if humans else ""


def _class_name(request: str) -> str:
    words = [w for w in re.findall(r"[A-Za-z][A-Za-z0-9]*", request) if w.lower() not in _STOPWORDS]
    name = "".join(w[:1].upper() + w[1:].lower() for w in words[:3]) or "Generated"
    return f"{name}Node"


def _examples(messages: list[BaseMessage]) -> tuple[str, str]:
    """A node example and a pipeline example from the prompt's documentation, a matching pair where there is one."""
    pythons: list[str] = []
    yamls: list[str] = []
    for message in messages:
        for lang, body in code_blocks(str(message.content)):
            if lang in ("python", "py") and _CLASS_RE.search(body):
                pythons.append(body)
            elif lang in ("yaml", "yml") and "pipeline:" in body:
                yamls.append(body)
    for yaml in yamls:
        for python in pythons:
            if re.search(rf"class:\s*[\w.]*\b{_CLASS_RE.search(python).group(1)}\s*$", yaml, re.MULTILINE):
                return python, yaml
    return (pythons or [_FALLBACK_PY])[0], (yamls or [_FALLBACK_YAML])[0]


def template_reply(messages: list[BaseMessage]) -> str:
    """Adapt the docs' own examples to the request: rename the node class and point the pipeline at it."""
    request = _request_text(messages)
    python, yaml = _examples(messages)
    new_name = _class_name(request)
    old_name = _CLASS_RE.search(python).group(1)  # type: ignore[union-attr]
    python = re.sub(rf"\b{old_name}\b", new_name, python)
    yaml = re.sub(r"(class:\s*)(?:[\w]+\.)*(\w+)", rf"\g<1>generated.{new_name}", yaml, count=1)
    summary = " ".join(request.split())[:200]
    return (
        f"[{OFFLINE_LABEL}] This answer adapts the documentation's own example to the request "
        f"\"{summary}\"; set DREAM_GRAPH_MODEL to use a real model.\n\n"
        f"```python\n{python.rstrip()}\n```\n\n```yaml\n{yaml.rstrip()}\n```\n"
    )


class OfflineChatModel(BaseChatModel):
    """A LangChain chat model that needs no network: it answers from the prompt's documentation examples."""

    model_name: str = OFFLINE_MODEL_ID

    @property
    def _llm_type(self) -> str:
        return "dream-graph-offline"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_name": self.model_name}

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        text = template_reply(messages)
        message = AIMessage(content=text, response_metadata={"model_name": self.model_name})
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        text = template_reply(messages)
        pieces = re.findall(r"\S*\s*", text)
        for i, piece in enumerate(p for p in pieces if p):
            meta = {"model_name": self.model_name} if i == 0 else {}
            chunk = ChatGenerationChunk(message=AIMessageChunk(content=piece, response_metadata=meta))
            if run_manager:
                run_manager.on_llm_new_token(piece, chunk=chunk)
            yield chunk
