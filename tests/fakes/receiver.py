"""A tiny HTTP server on 127.0.0.1 that records the JSON POSTed to it, standing in for Slack's response_url."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Receiver:
    """Collects POST bodies; `wait(n)` blocks until n have arrived (or the timeout passes)."""

    def __init__(self) -> None:
        self.posts: list[dict[str, Any]] = []
        self._arrived = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver._arrived:
                    receiver.posts.append({"path": self.path, "json": json.loads(body or b"null")})
                    receiver._arrived.notify_all()
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        """Where to POST, e.g. http://127.0.0.1:54321/commands/T1/123."""
        return f"http://127.0.0.1:{self._server.server_address[1]}/commands/T1/123"

    def wait(self, count: int = 1, timeout: float = 30.0) -> list[dict[str, Any]]:
        """The posts so far, once at least `count` have arrived."""
        with self._arrived:
            self._arrived.wait_for(lambda: len(self.posts) >= count, timeout=timeout)
            return list(self.posts)

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
