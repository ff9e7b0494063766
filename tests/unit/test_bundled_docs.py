"""The bundled docs teach by example, and the offline model copies those examples: every one must pass the checks."""

from __future__ import annotations

import asyncio

import pytest

from dream_graph.context import Context
from dream_graph.evaluators import EvalInput, get_registry, is_blocking
from dream_graph.extract import code_blocks
from dream_graph.sources.bundled import load_bundled

BLOCKS = [(doc.path, lang, body) for doc in load_bundled().docs for lang, body in code_blocks(doc.text)]
PYTHON = [(path, body) for path, lang, body in BLOCKS if lang in ("python", "py")]


def blocking(name: str, code: str, config_yaml: str | None = None) -> list[dict]:
    found = asyncio.run(get_registry()[name].evaluate(code, EvalInput(config_yaml=config_yaml, options=Context())))
    return [f for f in found if is_blocking(f)]


def test_the_docs_hold_examples():
    assert len(PYTHON) >= 10
    assert sum(1 for _, lang, body in BLOCKS if lang in ("yaml", "yml") and "pipeline:" in body) >= 5


@pytest.mark.parametrize(("path", "code"), PYTHON, ids=[f"{p}#{i}" for i, (p, _) in enumerate(PYTHON)])
@pytest.mark.parametrize("evaluator", ["syntax", "security", "lint"])
def test_every_python_example_passes(evaluator, path, code):
    assert blocking(evaluator, code) == [], f"{path}: {code[:200]}"
