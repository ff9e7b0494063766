"""The API key guard shared by every protected endpoint."""

from __future__ import annotations

import hmac

from fastapi import Header, HTTPException

from dream_graph.settings import get_settings


def require_api_key(
    x_api_key: str | None = Header(None, description="Required when DREAM_GRAPH_API_KEY is set."),
) -> None:
    """When DREAM_GRAPH_API_KEY is set, only callers presenting it (compared in constant time) get in."""
    expected = get_settings().api_key
    if expected is None:
        return
    if x_api_key is None or not hmac.compare_digest(x_api_key.encode(), expected.get_secret_value().encode()):
        raise HTTPException(401, "missing or wrong X-API-Key header")
