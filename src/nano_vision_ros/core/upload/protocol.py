"""The clip upload protocol ``nano-vision-upload/1`` (see docs/UPLOAD_PROTOCOL.md).

One TCP connection per file: the client sends a JSON header line (name, size, sha256, token), the
server answers with the offset it already holds, the client sends the rest, the server checks the
sha256 of the whole file and acknowledges. A broken connection loses nothing: the next try resumes
at the server's offset.
"""

from __future__ import annotations

import json
import re
import socket
from typing import Any

PROTO = "nano-vision-upload/1"
MAX_HEADER = 8192
_SHA = re.compile(r"^[0-9a-f]{64}$")
_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,199}$")

# error codes: which ones a client may retry
RETRYABLE_CODES = {"busy", "timeout", "io", "checksum", "internal"}
PERMANENT_CODES = {"auth", "name", "size", "exists", "proto"}


class ProtocolError(ValueError):
    """A header or reply that breaks the protocol; `code` is one of the error codes."""

    def __init__(self, message: str, code: str = "proto") -> None:
        super().__init__(message)
        self.code = code


def check_name(name: object) -> str:
    """A safe relative name (``camera/clip.mp4``): no absolute path, no ``..``, no odd characters."""
    if not isinstance(name, str) or not name:
        raise ProtocolError("name must be a non-empty string", "name")
    if name.startswith(("/", "\\")) or "\\" in name or "\x00" in name or ":" in name:
        raise ProtocolError(f"name {name!r} must be a relative path with '/' separators", "name")
    parts = name.split("/")
    if len(parts) > 4:
        raise ProtocolError(f"name {name!r} has too many folders (4 at most)", "name")
    for part in parts:
        if part in ("", ".", "..") or not _PART.match(part):
            raise ProtocolError(f"name {name!r}: part {part!r} is not allowed (letters, digits, '_', '-', '.')", "name")
    return name


def check_header(header: Any, max_bytes: int) -> dict[str, Any]:
    if not isinstance(header, dict):
        raise ProtocolError("header must be a JSON object")
    if header.get("proto") != PROTO:
        raise ProtocolError(f"unsupported protocol {header.get('proto')!r}; this server speaks {PROTO}")
    check_name(header.get("name"))
    size = header.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise ProtocolError("size must be a non-negative integer", "size")
    if size > max_bytes:
        raise ProtocolError(f"size {size} exceeds the server's limit of {max_bytes} bytes", "size")
    sha = header.get("sha256")
    if not isinstance(sha, str) or not _SHA.match(sha):
        raise ProtocolError("sha256 must be 64 lowercase hex digits")
    if not isinstance(header.get("token", ""), str):
        raise ProtocolError("token must be a string", "auth")
    return header


def send_json(sock: socket.socket, obj: dict[str, Any]) -> None:
    sock.sendall(json.dumps(obj, separators=(",", ":")).encode() + b"\n")


def recv_line(sock: socket.socket, limit: int = MAX_HEADER) -> bytes:
    """One '\\n'-terminated line, read byte-wise so nothing after it is consumed."""
    buf = bytearray()
    while True:
        b = sock.recv(1)
        if not b:
            raise ConnectionError("connection closed before end of line")
        if b == b"\n":
            return bytes(buf)
        buf += b
        if len(buf) > limit:
            raise ProtocolError(f"line longer than {limit} bytes")


def recv_json(sock: socket.socket, limit: int = MAX_HEADER) -> dict[str, Any]:
    line = recv_line(sock, limit)
    try:
        obj = json.loads(line)
    except ValueError as err:
        raise ProtocolError(f"not JSON: {err}") from None
    if not isinstance(obj, dict):
        raise ProtocolError("not a JSON object")
    return obj
