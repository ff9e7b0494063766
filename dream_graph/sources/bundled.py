"""The documentation snapshot shipped with the package: the offline default."""

from __future__ import annotations

from dream_graph.sources import Doc, DocSet

DEFAULT_FRAMEWORK = "aineko"


def load_bundled(framework: str = DEFAULT_FRAMEWORK) -> DocSet:
    """Read the shipped markdown for `framework`, in a stable order."""
    from dream_graph.targets import available_targets, get_target

    root = get_target(framework).docs_dir if framework in available_targets() else None
    if root is None or not root.is_dir():
        raise FileNotFoundError(f"no bundled documentation for framework {framework!r}")
    docs = tuple(
        Doc(path=f"{framework}/{p.name}", text=p.read_text(encoding="utf-8"))
        for p in sorted(root.iterdir(), key=lambda p: p.name)
        if p.name.endswith(".md")
    )
    return DocSet(source=f"bundled:{framework}", docs=docs)
