"""Aineko 0.4.0: the reference docs, prompt guidelines, offline templates and the checks that agree with it."""

from __future__ import annotations

from dream_graph.targets import Target


def _config_evaluator():  # noqa: ANN202 - lazy, so `dream-graph --help` imports no evaluator
    from dream_graph.targets.aineko.config_check import ConfigEvaluator

    return ConfigEvaluator()


TARGET = Target(
    name="aineko",
    version="0.4.0",
    package=__name__,
    evaluator_factories=(_config_evaluator,),
    default_evaluators=("config",),
)
