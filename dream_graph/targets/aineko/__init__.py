"""Aineko 0.4.0: the reference docs, prompt guidelines, offline templates and the checks that agree with it."""

from __future__ import annotations

from importlib.util import find_spec
from typing import TYPE_CHECKING

from dream_graph.targets import Target

if TYPE_CHECKING:
    from dream_graph.evaluators.base import Evaluator


def _config_evaluator() -> Evaluator:
    """Imported when the registry loads, so `dream-graph --help` imports no evaluator."""
    from dream_graph.targets.aineko.config_check import ConfigEvaluator

    return ConfigEvaluator()


def _aineko_evaluator() -> Evaluator:
    """The real-framework check; it reports `aineko-missing` itself where Aineko is not installed."""
    from dream_graph.targets.aineko.runtime_check import AinekoEvaluator

    return AinekoEvaluator()


AINEKO_INSTALLED = find_spec("aineko") is not None
"""The real-framework check joins the default set only where Aineko can be imported (the `aineko` extra)."""

TARGET = Target(
    name="aineko",
    version="0.4.0",
    package=__name__,
    evaluator_factories=(_config_evaluator, _aineko_evaluator),
    default_evaluators=("config", "aineko") if AINEKO_INSTALLED else ("config",),
)
