"""Documentation from a local folder of markdown/text files."""

from __future__ import annotations

from pathlib import Path

from dream_graph.sources import Doc, DocSet

DOC_SUFFIXES = (".md", ".markdown", ".mdx", ".rst", ".txt")


def load_local(folder: str | Path) -> DocSet:
    """Read every markdown/text file under `folder`, recursively; undecodable bytes are replaced, not fatal."""
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"docs folder {root} does not exist or is not a directory (DREAM_GRAPH_DOCS_DIR)")
    docs = tuple(
        Doc(path=str(p.relative_to(root)), text=p.read_text(encoding="utf-8", errors="replace"))
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.suffix.lower() in DOC_SUFFIXES
    )
    if not docs:
        raise FileNotFoundError(f"docs folder {root} holds no {', '.join(DOC_SUFFIXES)} files")
    return DocSet(source=f"local:{root}", docs=docs)
