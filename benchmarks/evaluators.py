"""The default evaluator suite (syntax, security, lint, config) as one parallel step, on a ~200-line module."""

from __future__ import annotations

import asyncio

from benchmarks.common import generated_module, summarise, time_calls
from dream_graph.context import DEFAULT_EVALUATORS, Context
from dream_graph.evaluators import EvalInput, get_registry


def run(quick: bool = False, lines: int = 200) -> dict:
    """Median wall time of the whole step (evaluators gathered, as the graph runs them) and of each evaluator alone."""
    code, config_yaml = generated_module(lines)
    registry = get_registry()
    context = EvalInput(config_yaml=config_yaml, options=Context(evaluators=list(DEFAULT_EVALUATORS)))
    repeat = 10 if quick else 60

    async def step() -> list:
        return await asyncio.gather(*(registry[n].evaluate(code, context) for n in DEFAULT_EVALUATORS))

    loop = asyncio.new_event_loop()
    try:
        findings = loop.run_until_complete(step())
        result = {
            "lines": len(code.splitlines()),
            "findings": sum(len(f) for f in findings),
            "suite": summarise(time_calls(lambda: loop.run_until_complete(step()), repeat)),
        }
        for name in DEFAULT_EVALUATORS:
            one = registry[name].evaluate
            result[name] = summarise(time_calls(lambda: loop.run_until_complete(one(code, context)), repeat))
    finally:
        loop.close()
    return result


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=2))
