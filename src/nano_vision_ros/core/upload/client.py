"""The sending side of ``nano-vision-upload/1``: resume at the server's offset, check the ack."""

from __future__ import annotations

import os
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from nano_vision_ros.core.hashing import sha256_file
from nano_vision_ros.core.upload.protocol import PERMANENT_CODES, PROTO, ProtocolError, check_name, recv_json, send_json


class UploadError(RuntimeError):
    """An upload did not complete; `retryable` says whether trying again can help."""

    def __init__(self, message: str, retryable: bool = True, code: str = "") -> None:
        super().__init__(message)
        self.retryable = retryable
        self.code = code


@dataclass
class UploadResult:
    remote: str
    sha256: str
    size: int
    resumed_from: int  # bytes the server already had (0 = a fresh upload)
    sent: int  # bytes sent on this connection


@dataclass
class ServerAddress:
    host: str
    port: int
    token: str
    tls: bool = False
    tls_ca: str | None = None  # CA file to verify the server; None = system CAs
    timeout: float = 30.0


def upload_file(
    addr: ServerAddress,
    path: str | os.PathLike[str],
    name: str,
    sha256: str | None = None,
    chunk: int = 256 * 1024,
    progress: Callable[[int, int], None] | None = None,
) -> UploadResult:
    """Send `path` as `name`; resumes where the server stopped last time. Raises UploadError."""
    p = Path(path)
    try:
        check_name(name)
    except ProtocolError as err:
        raise UploadError(str(err), retryable=False, code="name") from None
    try:
        size = p.stat().st_size
        digest = sha256 or sha256_file(p)
    except OSError as err:
        raise UploadError(f"cannot read {p}: {err.strerror or err}", retryable=False, code="local") from None
    try:
        sock = socket.create_connection((addr.host, addr.port), timeout=addr.timeout)
    except OSError as err:
        raise UploadError(f"cannot connect to {addr.host}:{addr.port}: {err.strerror or err}") from None
    try:
        if addr.tls:
            ctx = ssl.create_default_context(cafile=addr.tls_ca)
            sock = ctx.wrap_socket(sock, server_hostname=addr.host)
        send_json(sock, {"proto": PROTO, "token": addr.token, "name": name, "size": size, "sha256": digest})
        reply = _reply(sock)
        if reply.get("done"):
            return UploadResult(str(reply.get("remote", name)), digest, size, size, 0)
        offset = reply.get("offset")
        if not isinstance(offset, int) or not 0 <= offset <= size:
            raise UploadError(f"server sent a bad offset {offset!r}", code="proto")
        sent = 0
        with open(p, "rb") as f:
            f.seek(offset)
            remaining = size - offset
            while remaining > 0:
                block = f.read(min(chunk, remaining))
                if not block:
                    raise UploadError(f"{p} shrank while uploading", retryable=False, code="local")
                sock.sendall(block)
                sent += len(block)
                remaining -= len(block)
                if progress is not None:
                    progress(offset + sent, size)
        ack = _reply(sock)
        if not ack.get("done") or ack.get("sha256") != digest:
            raise UploadError(f"server did not confirm the checksum: {ack}", code="proto")
        return UploadResult(str(ack.get("remote", name)), digest, size, offset, sent)
    except (OSError, ConnectionError, ProtocolError) as err:
        raise UploadError(f"connection to {addr.host}:{addr.port} failed: {err}") from None
    finally:
        try:
            sock.close()
        except OSError:
            pass


def _reply(sock: socket.socket) -> dict:
    reply = recv_json(sock)
    if not reply.get("ok"):
        code = str(reply.get("code", ""))
        raise UploadError(
            f"server refused: {reply.get('error', reply)}", retryable=code not in PERMANENT_CODES, code=code
        )
    return reply
