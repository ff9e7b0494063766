"""The last good copy of fetched docs, kept on disk so an outage or a rate limit does not leave the prompt empty.

One JSON file per source under `<cache dir>/docs/`: the source key, commit SHA, fetch time and every file's text.
Written to a temporary file and renamed into place, so a reader never sees half a copy.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
from pathlib import Path

import platformdirs

from dream_graph.sources import Doc, DocSet

log = logging.getLogger(__name__)

FORMAT_VERSION = 1


def cache_root(configured: Path | None) -> Path:
    """DREAM_GRAPH_CACHE_DIR, else the user's cache dir (e.g. ~/.cache/dream-graph)."""
    return Path(configured).expanduser() if configured else Path(platformdirs.user_cache_dir("dream-graph"))


def cache_file(root: Path, key: str) -> Path:
    """A readable, collision-free file name for a source key."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", key)[:80].strip("_")
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:12]
    return root / "docs" / f"{slug}-{digest}.json"


def save_cached(root: Path, key: str, docset: DocSet) -> Path:
    """Keep `docset` as the last good copy of `key` (atomic replace)."""
    path = cache_file(root, key)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": FORMAT_VERSION,
        "key": key,
        "source": docset.source,
        "commit": docset.commit,
        "fetched_at": docset.fetched_at,
        "files": [{"path": d.path, "text": d.text} for d in docset.docs],
    }
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(payload, fh, ensure_ascii=False)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_cached(root: Path, key: str) -> DocSet | None:
    """The last good copy of `key`, or None when there is none (or it is unreadable: logged, not fatal)."""
    path = cache_file(root, key)
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
        if payload.get("format") != FORMAT_VERSION or payload.get("key") != key:
            raise ValueError("written by another version or for another source")
        docs = tuple(Doc(path=str(f["path"]), text=str(f["text"])) for f in payload["files"])
        if not docs:
            raise ValueError("holds no files")
        return DocSet(
            source=str(payload["source"]), docs=docs, commit=payload.get("commit"), fetched_at=payload.get("fetched_at")
        )
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("ignoring the docs cache %s: %s", path, exc)
        return None
