"""Upload progress on the receiver: bytes received / expected, rate and state per clip, as JSON.

The receiver feeds it from its connection threads (``start`` / ``advance`` / ``finish``); the
status endpoint (``StatusServer``: ``GET /status`` with the upload token) reads ``snapshot()``.
A partial file keeps its header (name, size) beside it (``.partial/<sha256>.json``), so uploads
cut before a receiver restart are listed as ``partial`` with what they already have.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import threading
import time
from collections import OrderedDict, deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

RECEIVING, PARTIAL, DONE, FAILED = "receiving", "partial", "done", "failed"
RATE_WINDOW = 5.0  # s: the rate is the bytes of the last few seconds
KEEP_FINISHED = 100  # finished uploads listed (newest)


class _Entry:
    def __init__(self, sha: str, name: str, size: int, offset: int, peer: str, partial: Path) -> None:
        self.sha, self.name, self.size, self.partial = sha, name, size, partial
        self.received = offset
        self.resumed_from = offset
        self.peer = peer
        self.state = RECEIVING
        self.error = ""
        self.started = self.updated = time.time()
        self._samples: deque[tuple[float, int]] = deque([(time.monotonic(), offset)])

    def rate(self) -> float:
        if self.state != RECEIVING or len(self._samples) < 2:
            return 0.0
        (t0, b0), (t1, b1) = self._samples[0], self._samples[-1]
        t1 = max(t1, time.monotonic())  # a stalled upload's rate falls towards 0
        return (b1 - b0) / (t1 - t0) if t1 > t0 else 0.0

    def add(self, n: int) -> None:
        self.received += n
        now = time.monotonic()
        self._samples.append((now, self.received))
        while len(self._samples) > 2 and now - self._samples[0][0] > RATE_WINDOW:
            self._samples.popleft()
        self.updated = time.time()

    def as_dict(self) -> dict[str, Any]:
        rate = self.rate()
        left = self.size - self.received
        return {
            "name": self.name,
            "sha256": self.sha,
            "state": self.state,
            "size": self.size,
            "received": self.received,
            "percent": round(100.0 * self.received / self.size, 1) if self.size else 100.0,
            "rate_bytes_per_s": round(rate, 1),
            "eta_s": round(left / rate, 1) if rate > 0 and left > 0 else None,
            "resumed_from": self.resumed_from,
            "peer": self.peer,
            "started": self.started,
            "updated": self.updated,
            "partial_path": str(self.partial) if self.state in (RECEIVING, PARTIAL) else None,
            "error": self.error or None,
        }


class UploadProgress:
    """Per-clip progress, keyed by content (sha256) like the partial files."""

    def __init__(self, partial_dir: Path) -> None:
        self.partial_dir = partial_dir
        self._lock = threading.Lock()
        self._live: dict[str, _Entry] = {}
        self._finished: OrderedDict[str, _Entry] = OrderedDict()

    @staticmethod
    def sidecar(part: Path) -> Path:
        return part.with_suffix(".json")

    def start(self, sha: str, name: str, size: int, offset: int, peer: object) -> None:
        part = self.partial_dir / f"{sha}.part"
        try:  # the header beside the partial data: listed after a restart, read by nothing else
            tmp = part.with_suffix(".json.tmp")
            tmp.write_text(json.dumps({"name": name, "size": size}))
            os.replace(tmp, self.sidecar(part))
        except OSError as err:
            log.warning("progress: cannot write %s: %s", self.sidecar(part), err)
        with self._lock:
            self._finished.pop(sha, None)
            self._live[sha] = _Entry(sha, name, size, offset, str(peer), part)

    def advance(self, sha: str, n: int) -> None:
        with self._lock:
            e = self._live.get(sha)
            if e is not None:
                e.add(n)

    def finish(self, sha: str, state: str, error: str = "") -> None:
        """The connection ended: ``done`` (stored), ``failed`` (discarded) or ``partial`` (kept for resume)."""
        with self._lock:
            e = self._live.pop(sha, None)
            if e is None:
                return
            e.state, e.error, e.updated = state, error, time.time()
            if state == PARTIAL:
                return  # listed from the partial folder from now on
            self._finished[sha] = e
            while len(self._finished) > KEEP_FINISHED:
                self._finished.popitem(last=False)
        if state in (DONE, FAILED):
            self.sidecar(e.partial).unlink(missing_ok=True)

    def snapshot(self) -> list[dict[str, Any]]:
        """Receiving first, then partials on disk (cut, waiting for a resume), then the finished (newest first)."""
        with self._lock:
            live = [e.as_dict() for e in self._live.values()]
            finished = [e.as_dict() for e in reversed(self._finished.values())]
            busy = set(self._live)
        partial = []
        for side in sorted(self.partial_dir.glob("*.json")):
            sha = side.stem
            part = side.with_suffix(".part")
            if sha in busy or not part.exists():
                continue
            try:
                head = json.loads(side.read_text())
                got = part.stat().st_size
                name, size = str(head["name"]), int(head["size"])
                updated = part.stat().st_mtime
            except (OSError, ValueError, KeyError, TypeError):
                continue
            partial.append(
                {
                    "name": name,
                    "sha256": sha,
                    "state": PARTIAL,
                    "size": size,
                    "received": got,
                    "percent": round(100.0 * got / size, 1) if size else 100.0,
                    "rate_bytes_per_s": 0.0,
                    "eta_s": None,
                    "resumed_from": None,
                    "peer": None,
                    "started": None,
                    "updated": updated,
                    "partial_path": str(part),
                    "error": None,
                }
            )
        return live + partial + finished


class StatusServer:
    """``GET /status`` (optionally ``?name=CLIP``) -> JSON; ``Authorization: Bearer <upload token>``."""

    def __init__(self, progress: UploadProgress, token: str, host: str, port: int, totals: Any = None) -> None:
        prog, secret = progress, token.encode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # the name http.server calls
                path, _, query = self.path.partition("?")
                if path.rstrip("/") != "/status":
                    return self._send(404, {"error": "not found; GET /status"})
                auth = self.headers.get("Authorization", "")
                given = auth[7:].strip().encode() if auth.startswith("Bearer ") else b""
                if not hmac.compare_digest(given, secret):
                    return self._send(401, {"error": "give the upload token: Authorization: Bearer <token>"})
                uploads = prog.snapshot()
                names = [v for k, _, v in (p.partition("=") for p in query.split("&")) if k == "name" and v]
                if names:
                    from urllib.parse import unquote

                    wanted = {unquote(n) for n in names}
                    uploads = [u for u in uploads if u["name"] in wanted]
                body: dict[str, Any] = {"uploads": uploads}
                if totals is not None:
                    body.update(totals())
                self._send(200, body)

            def _send(self, code: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, fmt: str, *args: Any) -> None:
                log.debug("status %s: " + fmt, self.address_string(), *args)

        self._httpd = ThreadingHTTPServer((host, port), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="receiver-status", daemon=True)

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
