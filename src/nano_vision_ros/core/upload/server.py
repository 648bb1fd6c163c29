"""The receiving side of ``nano-vision-upload/1``: resumable, checked, atomic.

Partial data lives in ``<root>/.partial/<sha256>.part`` (keyed by content, so a resumed upload
continues the same bytes whatever the connection); the final file appears under its name only
after the whole file's sha256 matched (fsync, then rename). The token is compared in constant time.
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import os
import socket
import socketserver
import ssl
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from nano_vision_ros.core.upload.protocol import PROTO, ProtocolError, check_header, recv_json, send_json

log = logging.getLogger(__name__)


@dataclass
class ReceiverOptions:
    root: str
    token: str
    host: str = "127.0.0.1"
    port: int = 9009
    max_bytes: int = 4 * 1024**3
    timeout: float = 60.0  # idle seconds before a connection is dropped (its partial data is kept)
    partial_max_age: float = 7 * 86400.0
    max_connections: int = 16  # more at once are refused ('busy'), so idle clients cannot pile up threads
    tls_cert: str | None = None
    tls_key: str | None = None


class _Handler(socketserver.BaseRequestHandler):
    server: "_Server"

    def handle(self) -> None:
        self.server.receiver._handle(self.request, self.client_address)


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    receiver: "Receiver"


class Receiver:
    def __init__(self, opt: ReceiverOptions) -> None:
        if not opt.token:
            raise ValueError("a token is required (clients must present it)")
        self.opt = opt
        self.root = Path(opt.root).resolve()
        self.partial_dir = self.root / ".partial"
        self.partial_dir.mkdir(parents=True, exist_ok=True)
        self._busy: dict[str, socket.socket] = {}  # sha256 -> the connection receiving it
        self._released = threading.Condition()
        self._slots = threading.BoundedSemaphore(opt.max_connections)
        self._ssl: ssl.SSLContext | None = None
        if opt.tls_cert:
            self._ssl = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self._ssl.load_cert_chain(opt.tls_cert, opt.tls_key)
        self.received = 0
        self.refused = 0
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._clean_partials()

    @property
    def port(self) -> int:
        return self._server.server_address[1] if self._server else self.opt.port

    def _clean_partials(self) -> None:
        now = time.time()
        for p in self.partial_dir.glob("*.part"):
            try:
                if now - p.stat().st_mtime > self.opt.partial_max_age:
                    p.unlink()
            except OSError:
                pass

    def start(self) -> None:
        self._server = _Server((self.opt.host, self.opt.port), _Handler)
        self._server.receiver = self
        self._thread = threading.Thread(target=self._server.serve_forever, name="receiver", daemon=True)
        self._thread.start()
        log.info("receiving clips into %s on %s:%d (%s)", self.root, self.opt.host, self.port, PROTO)

    def serve_forever(self) -> None:
        self.start()
        assert self._thread is not None
        self._thread.join()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    # -- one connection ----------------------------------------------------------------------------
    def _refuse(self, sock: socket.socket, code: str, error: str, peer: object) -> None:
        self.refused += 1
        log.warning("refused %s: %s (%s)", peer, error, code)
        try:
            send_json(sock, {"ok": False, "code": code, "error": error})
        except OSError:
            pass

    def _handle(self, sock: socket.socket, peer: object) -> None:
        if not self._slots.acquire(blocking=False):
            sock.settimeout(5.0)
            return self._refuse(sock, "busy", f"too many connections (max {self.opt.max_connections})", peer)
        try:
            self._handle_one(sock, peer)
        finally:
            self._slots.release()

    def _handle_one(self, sock: socket.socket, peer: object) -> None:
        sock.settimeout(self.opt.timeout)
        if self._ssl is not None:
            try:
                sock = self._ssl.wrap_socket(sock, server_side=True)
            except (ssl.SSLError, OSError) as err:
                log.warning("TLS handshake with %s failed: %s", peer, err)
                return
        try:
            header = recv_json(sock)
            token = header.get("token", "")
            if not isinstance(token, str) or not hmac.compare_digest(token.encode(), self.opt.token.encode()):
                return self._refuse(sock, "auth", "bad token", peer)
            check_header(header, self.opt.max_bytes)
        except ProtocolError as err:
            return self._refuse(sock, err.code, str(err), peer)
        except (OSError, ConnectionError) as err:
            log.info("connection from %s closed during header: %s", peer, err)
            return
        name, size, sha = header["name"], header["size"], header["sha256"]
        final = self.root / name
        if not final.resolve().is_relative_to(self.root):  # belt and braces after check_name (symlinks)
            return self._refuse(sock, "name", f"name {name!r} leaves the upload folder", peer)
        if final.exists():
            if final.stat().st_size == size and _sha256(final) == sha:
                send_json(sock, {"ok": True, "offset": size, "done": True, "remote": name, "sha256": sha})
                return
            return self._refuse(sock, "exists", f"{name} exists with other content", peer)
        with self._released:
            old = self._busy.get(sha)
            if old is not None:
                # The same content again: the client gave up on the older connection (cut, NAT timeout)
                # and retries. Close the old one so its handler stops, then take over its partial file.
                try:
                    old.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                if not self._released.wait_for(lambda: sha not in self._busy, timeout=10.0):
                    return self._refuse(sock, "busy", "this file is being received on another connection", peer)
            self._busy[sha] = sock
        try:
            self._receive(sock, name, size, sha, final, peer)
        finally:
            with self._released:
                if self._busy.get(sha) is sock:
                    del self._busy[sha]
                self._released.notify_all()

    def _receive(self, sock: socket.socket, name: str, size: int, sha: str, final: Path, peer: object) -> None:
        part = self.partial_dir / f"{sha}.part"
        offset = part.stat().st_size if part.exists() else 0
        if offset > size:
            part.unlink()
            offset = 0
        send_json(sock, {"ok": True, "offset": offset})
        got = offset
        try:
            with open(part, "ab") as f:
                while got < size:
                    chunk = sock.recv(min(1 << 20, size - got))
                    if not chunk:
                        break
                    f.write(chunk)
                    got += len(chunk)
                f.flush()
                os.fsync(f.fileno())
        except socket.timeout:
            log.info("%s: %s idle for %.0fs at %d/%d bytes; partial kept", peer, name, self.opt.timeout, got, size)
            return
        except OSError as err:
            if isinstance(err, ConnectionError):
                log.info("%s: %s connection lost at %d/%d bytes; partial kept", peer, name, got, size)
                return
            log.error("%s: writing %s failed: %s", peer, name, err)
            return self._refuse(sock, "io", f"server cannot write: {err.strerror or err}", peer)
        if got < size:
            log.info("%s: %s cut at %d/%d bytes; partial kept for resume", peer, name, got, size)
            return
        digest = _sha256(part)
        if digest != sha:
            part.unlink(missing_ok=True)
            return self._refuse(sock, "checksum", f"sha256 mismatch (got {digest}); partial data discarded", peer)
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(part, final)
            _fsync_dir(final.parent)
        except OSError as err:
            return self._refuse(sock, "io", f"server cannot store {name}: {err.strerror or err}", peer)
        self.received += 1
        log.info("received %s (%d bytes, resumed at %d) from %s", name, size, offset, peer)
        try:
            send_json(sock, {"ok": True, "done": True, "remote": name, "sha256": sha, "resumed_from": offset})
        except OSError:
            pass  # stored anyway; the client's retry gets 'done' from the header check


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
