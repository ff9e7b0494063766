"""The documentation snapshot shipped with the package: the offline default."""

from __future__ import annotations

from importlib.resources import files

from dream_graph.sources import Doc, DocSet

DEFAULT_FRAMEWORK = "aineko"


def load_bundled(framework: str = DEFAULT_FRAMEWORK) -> DocSet:
    """Read the shipped markdown for `framework`, in a stable order."""
    root = files("dream_graph").joinpath("bundled_docs", framework)
    if not root.is_dir():
        raise FileNotFoundError(f"no bundled documentation for framework {framework!r}")
    docs = tuple(
        Doc(path=f"{framework}/{p.name}", text=p.read_text(encoding="utf-8"))
        for p in sorted(root.iterdir(), key=lambda p: p.name)
        if p.name.endswith(".md")
    )
    return DocSet(source=f"bundled:{framework}", docs=docs)
