"""Target frameworks: everything framework-specific (docs, prompt parts, checks, offline templates) behind one interface.

A target is a sibling package `dream_graph.targets.<name>` whose `__init__` defines `TARGET`; adding a framework
means adding such a package and nothing else.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field
from functools import cache, lru_cache
from importlib.resources import files
from importlib.resources.abc import Traversable
from typing import TYPE_CHECKING, Any

from dream_graph.errors import ConfigError

if TYPE_CHECKING:
    from dream_graph.evaluators.base import Evaluator

DEFAULT_TARGET = "aineko"


@dataclass(frozen=True)
class Target:
    """One framework dream_graph writes code for, at one version."""

    name: str
    version: str
    package: str
    """The package holding `docs/`, `prompts/` and `offline/` (its `__name__`)."""
    evaluator_factories: tuple[Any, ...] = field(default=())
    """Callables returning this target's evaluators (imported lazily: a check may need an optional package)."""
    default_evaluators: tuple[str, ...] = field(default=())
    """The target's evaluators in the default set (others, like a check that needs an extra, join when available)."""

    @property
    def spec(self) -> str:
        """`name==version`, as the output, /healthz, `docs show` and the run store show it."""
        return f"{self.name}=={self.version}"

    def resource(self, *parts: str) -> Traversable:
        """A file or folder shipped inside the target package."""
        return files(self.package).joinpath(*parts)

    @property
    def docs_dir(self) -> Traversable:
        """The bundled reference (markdown), the offline docs source."""
        return self.resource("docs")

    def prompt_part(self, name: str) -> str:
        """A prompt template of this target (`prompts/<name>.md`), read once like the generic templates."""
        return _prompt_part(self.package, name)

    def evaluators(self) -> list[Evaluator]:
        """This target's checks, in addition to the generic ones (syntax, security, lint)."""
        return [factory() for factory in self.evaluator_factories]


@cache
def _prompt_part(package: str, name: str) -> str:
    """The file behind `Target.prompt_part` (every run's prompt starts with one: not a file read per run)."""
    return files(package).joinpath("prompts", f"{name}.md").read_text(encoding="utf-8").strip()


def available_targets() -> list[str]:
    """The names of the target packages shipped with this install."""
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if m.ispkg)


@lru_cache(maxsize=None)
def get_target(name: str | None = None) -> Target:
    """The target called `name` (default: the `DREAM_GRAPH_TARGET` setting), with the known ones in the error."""
    if name is None:
        from dream_graph.settings import get_settings

        name = get_settings().target
    if name not in available_targets():
        raise ConfigError(f"unknown target {name!r}; known: {', '.join(available_targets())}")
    return importlib.import_module(f"{__name__}.{name}").TARGET
