"""A long-lived `ruff server` (Ruff's own language server) for lint and safe fixes, so a check costs no process start.

Ruff's CLI starts a process per check: ~4 ms of CPU in the child and ~1 ms in the caller, twice a cycle (the safe
fixes, then the lint evaluator). Through the language server the same diagnostics cost ~0.2 ms. One server runs per
process, started on first use; a reader and a writer thread speak LSP on its pipes, so any event loop (or none) can
use it. When the server cannot start, dies or stops answering, `RuffServerError` is raised and the caller falls back
to the CLI; a dead or hung server is replaced on the next use. Set `DREAM_GRAPH_RUFF_SERVER=false` to always use the
CLI.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import itertools
import json
import logging
import os
import queue
import subprocess
import tempfile
import threading
import time
from collections import OrderedDict
from typing import Any

log = logging.getLogger(__name__)

START_TIMEOUT_S = 20.0
REQUEST_TIMEOUT_S = 10.0
RECENT_CHECKS = 64
"""Sources whose diagnostics the client remembers: enough for the runs in flight, each checking a source twice."""
RETRY_AFTER_FAILURE_S = 30.0
"""After a failed start, checks use the CLI for this long before the server is tried again."""


class RuffServerError(RuntimeError):
    """The language server is unavailable or did not answer; the caller should use the CLI."""


def _to_offset(text: str, line_starts: list[int], position: dict, encoding: str) -> int:
    """An LSP position as an index into `text` (positions count UTF-16 code units unless UTF-32 was agreed)."""
    line = position["line"]
    if line >= len(line_starts):
        return len(text)
    start = line_starts[line]
    char = position["character"]
    if encoding == "utf-32":
        return start + char
    end = line_starts[line + 1] if line + 1 < len(line_starts) else len(text)
    units = 0
    for index in range(start, end):
        if units >= char:
            return index
        units += 2 if ord(text[index]) > 0xFFFF else 1
    return end


def apply_edits(text: str, edits: list[dict], encoding: str = "utf-16") -> str:
    """Apply LSP text edits (non-overlapping, as a code action returns them) to `text`."""
    line_starts = [0]
    for index, char in enumerate(text):
        if char == "\n":
            line_starts.append(index + 1)
    spans = sorted(
        (
            (_to_offset(text, line_starts, e["range"]["start"], encoding),
             _to_offset(text, line_starts, e["range"]["end"], encoding),
             e["newText"])
            for e in edits
        ),
        reverse=True,
    )
    for start, end, new in spans:
        text = text[:start] + new + text[end:]
    return text


def as_cli_diagnostic(item: dict) -> dict:
    """An LSP diagnostic in the shape of `ruff check --output-format json` (what the lint evaluator reads)."""
    start = item["range"]["start"]
    code = item.get("code")
    fix = {"applicability": "safe"} if (item.get("data") or {}).get("edits") else None
    return {
        "code": code,
        "message": item.get("message", "").split("\n\n", 1)[0],
        "location": {"row": start["line"] + 1, "column": start["character"] + 1},
        "fix": fix,
    }


class RuffServer:
    """One `ruff server` child with `select` rules on and safe fixes limited to `fixable`."""

    def __init__(self, binary: str, select: tuple[str, ...], fixable: tuple[str, ...]) -> None:
        self.select, self.fixable = select, fixable
        self._workdir = tempfile.TemporaryDirectory(prefix="dream_graph_ruff_")
        self._proc = subprocess.Popen(
            [binary, "server"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            cwd=self._workdir.name,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": self._workdir.name},
        )
        self._ids = itertools.count(1)
        self._docs = itertools.count(1)
        self._pending: dict[int, concurrent.futures.Future] = {}
        self._lock = threading.Lock()
        self._outbox: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self.dead: str | None = None
        self._recent: OrderedDict[str, list[dict]] = OrderedDict()
        self._recent_lock = threading.Lock()  # sync `graph.invoke` calls check from other threads' loops
        threading.Thread(target=self._read, name="ruff-server-reader", daemon=True).start()
        threading.Thread(target=self._write, name="ruff-server-writer", daemon=True).start()
        self.encoding = "utf-16"
        try:
            result = self.request("initialize", self._initialize_params()).result(timeout=START_TIMEOUT_S)
        except Exception as exc:
            self.close()
            raise RuffServerError(f"ruff server did not start: {exc}") from exc
        self.encoding = (result.get("capabilities") or {}).get("positionEncoding") or "utf-16"
        self.notify("initialized", {})

    def _initialize_params(self) -> dict[str, Any]:
        return {
            "processId": os.getpid(),
            "rootUri": None,
            "capabilities": {
                "general": {"positionEncodings": ["utf-32", "utf-16"]},
                "textDocument": {
                    "diagnostic": {},
                    "codeAction": {
                        "codeActionLiteralSupport": {"codeActionKind": {"valueSet": ["source.fixAll.ruff"]}}
                    },
                },
            },
            "initializationOptions": {
                "settings": {
                    # The same as `ruff check --isolated`: no pyproject.toml or ruff.toml is read.
                    "configurationPreference": "editorOnly",
                    "configuration": {"lint": {"select": list(self.select), "fixable": list(self.fixable)}},
                    "fixAll": True,
                    "organizeImports": False,
                    "showSyntaxErrors": True,
                    "lint": {"enable": True, "preview": False},
                }
            },
        }

    # ------------------------------------------------------------------ protocol

    def _send(self, message: dict) -> None:
        body = json.dumps(message).encode("utf-8")
        self._outbox.put(b"Content-Length: %d\r\n\r\n" % len(body) + body)

    def notify(self, method: str, params: dict) -> None:
        self._send({"jsonrpc": "2.0", "method": method, "params": params})

    def request(self, method: str, params: dict) -> concurrent.futures.Future:
        """Send a request; the future gets its `result`, or RuffServerError."""
        future: concurrent.futures.Future = concurrent.futures.Future()
        with self._lock:
            if self.dead:
                future.set_exception(RuffServerError(self.dead))
                return future
            request_id = next(self._ids)
            self._pending[request_id] = future
        self._send({"jsonrpc": "2.0", "id": request_id, "method": method, "params": params})
        return future

    def _write(self) -> None:
        stdin = self._proc.stdin
        while (chunk := self._outbox.get()) is not None:
            try:
                stdin.write(chunk)
                stdin.flush()
            except (OSError, ValueError):
                self._fail("ruff server closed its input")
                return

    def _read(self) -> None:
        stdout = self._proc.stdout
        try:
            while True:
                length = None
                while (line := stdout.readline()) not in (b"\r\n", b"\n"):
                    if not line:
                        raise EOFError
                    name, _, value = line.decode("ascii", "replace").partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value)
                if length is None:
                    continue
                self._dispatch(json.loads(stdout.read(length)))
        except (EOFError, OSError, ValueError) as exc:
            self._fail(f"ruff server stopped ({exc.__class__.__name__}, exit status {self._proc.poll()})")

    def _dispatch(self, message: dict) -> None:
        if "method" in message:
            if "id" in message:  # a request from the server (e.g. workspace/configuration): no client features
                self._send({"jsonrpc": "2.0", "id": message["id"], "result": None})
            return
        with self._lock:
            future = self._pending.pop(message.get("id"), None)
        if future is None or future.done():  # done: its caller gave up waiting (cancelled)
            return
        try:
            if "error" in message:
                future.set_exception(RuffServerError(f"ruff server error: {message['error'].get('message')}"))
            else:
                future.set_result(message.get("result"))
        except concurrent.futures.InvalidStateError:  # cancelled meanwhile
            pass

    def _fail(self, reason: str) -> None:
        with self._lock:
            if self.dead is None:
                self.dead = reason
            pending, self._pending = self._pending, {}
        for future in pending.values():
            try:
                future.set_exception(RuffServerError(reason))
            except concurrent.futures.InvalidStateError:  # cancelled or answered meanwhile
                pass

    def close(self) -> None:
        """Stop the child (closing its input ends it) and fail whatever is still waiting."""
        self._fail("ruff server closed")
        self._outbox.put(None)
        try:
            self._proc.stdin.close()
        except OSError:
            pass
        try:
            self._proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._workdir.cleanup()

    # ------------------------------------------------------------------ checks

    async def _call(self, method: str, params: dict, timeout: float) -> Any:
        try:
            return await asyncio.wait_for(asyncio.wrap_future(self.request(method, params)), timeout)
        except TimeoutError:
            self._fail(f"ruff server did not answer {method} within {timeout:g} s")
            raise RuffServerError(self.dead) from None

    def _remember(self, code: str, diagnostics: list[dict]) -> None:
        """Keep the diagnostics of the last RECENT_CHECKS sources (the server's answer depends on the text only)."""
        with self._recent_lock:
            self._recent[code] = diagnostics
            self._recent.move_to_end(code)
            while len(self._recent) > RECENT_CHECKS:
                self._recent.popitem(last=False)

    def _recall(self, code: str) -> list[dict] | None:
        with self._recent_lock:
            known = self._recent.get(code)
            if known is not None:
                self._recent.move_to_end(code)
            return known

    async def check(self, code: str, *, fix: bool = False, timeout: float | None = None) -> tuple[list[dict], str]:
        """Diagnostics for `code` in the CLI's JSON shape (treat them as read-only: a repeat check of the same text
        is answered from memory), and (with `fix`) the code after the safe fixes."""
        timeout = REQUEST_TIMEOUT_S if timeout is None else timeout
        known = self._recall(code)
        if known is not None and not (fix and any(d["fix"] for d in known)):
            return list(known), code  # a cycle's auto-fix step and lint check see the same code: ask once
        uri = f"file:///dream_graph/check-{next(self._docs)}/gen.py"
        document = {"uri": uri}
        opened = {**document, "languageId": "python", "version": 1, "text": code}
        self.notify("textDocument/didOpen", {"textDocument": opened})
        try:
            report = await self._call("textDocument/diagnostic", {"textDocument": document}, timeout)
            diagnostics = [as_cli_diagnostic(item) for item in (report or {}).get("items", [])]
            self._remember(code, diagnostics)
            fixed = code
            if fix and any(d["fix"] for d in diagnostics):
                zero = {"line": 0, "character": 0}
                actions = await self._call(
                    "textDocument/codeAction",
                    {
                        "textDocument": document,
                        "range": {"start": zero, "end": zero},
                        "context": {"diagnostics": [], "only": ["source.fixAll.ruff"]},
                    },
                    timeout,
                )
                for action in actions or []:
                    edits = ((action.get("edit") or {}).get("changes") or {}).get(uri)
                    if edits:
                        fixed = apply_edits(code, edits, self.encoding)
            return diagnostics, fixed
        finally:
            self.notify("textDocument/didClose", {"textDocument": document})


_server: RuffServer | None = None
_server_lock = threading.Lock()
_failed_at = 0.0


def live_server() -> RuffServer | None:
    """The running server, if there is one that has not died: the fast path, safe on the event loop."""
    server = _server
    return server if server is not None and server.dead is None else None


def get_server(binary: str, select: tuple[str, ...], fixable: tuple[str, ...]) -> RuffServer:
    """This process's server, started (or replaced, if it died) on demand; RuffServerError if it cannot start.

    Starting waits for the server's answer to `initialize`: call it from a thread, not on an event loop.
    """
    global _server, _failed_at
    with _server_lock:
        if _server is not None and _server.dead is None:
            return _server
        if _server is not None:
            log.warning("restarting the ruff language server: %s", _server.dead)
            _server.close()
            _server = None
        if time.monotonic() - _failed_at < RETRY_AFTER_FAILURE_S:
            raise RuffServerError("the ruff language server failed to start recently; using the ruff CLI")
        try:
            _server = RuffServer(binary, select, fixable)
        except (OSError, RuffServerError) as exc:
            _failed_at = time.monotonic()
            log.warning("the ruff language server is unavailable, using the ruff CLI: %s", exc)
            raise RuffServerError(str(exc)) from exc
        return _server


def shutdown_server() -> None:
    """Stop this process's server (server shutdown, tests, interpreter exit)."""
    global _server, _failed_at
    with _server_lock:
        server, _server, _failed_at = _server, None, 0.0
    if server is not None:
        server.close()


atexit.register(shutdown_server)
