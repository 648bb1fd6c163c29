"""Why an RTSP camera refused us: one DESCRIBE request, asked only after an open failed.

OpenCV's FFmpeg backend reports every failed open the same way; a wrong password then looks like
an unreachable camera. After a failed open of an ``rtsp://`` URL the source sends one DESCRIBE
itself (with the URL's credentials, Basic or Digest as the camera asks) and, on ``401``, raises
:class:`AuthenticationError` naming the problem. The loop retries it with backoff like any other
source failure (the password may be fixed on the camera side).
"""

from __future__ import annotations

import base64
import hashlib
import re
import socket
from urllib.parse import unquote, urlsplit

from nano_vision_ros.core.capture.base import SourceError, redact


class AuthenticationError(SourceError):
    """The camera answered 401 Unauthorized: no, or wrong, user/password in the URL."""


def _digest(user: str, password: str, method: str, uri: str, challenge: str) -> str:
    fields = dict(re.findall(r'(\w+)="?([^",]*)"?', challenge))
    realm, nonce = fields.get("realm", ""), fields.get("nonce", "")
    ha1 = hashlib.md5(f"{user}:{realm}:{password}".encode()).hexdigest()
    ha2 = hashlib.md5(f"{method}:{uri}".encode()).hexdigest()
    response = hashlib.md5(f"{ha1}:{nonce}:{ha2}".encode()).hexdigest()
    return f'Digest username="{user}", realm="{realm}", nonce="{nonce}", uri="{uri}", response="{response}"'


def _describe(host: str, port: int, uri: str, auth: str, timeout: float) -> tuple[int, str]:
    """(status code, WWW-Authenticate header) of one DESCRIBE."""
    req = f"DESCRIBE {uri} RTSP/1.0\r\nCSeq: 1\r\nAccept: application/sdp\r\nUser-Agent: nano_vision_ros\r\n"
    if auth:
        req += f"Authorization: {auth}\r\n"
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall((req + "\r\n").encode())
        data = b""
        while b"\r\n\r\n" not in data and len(data) < 65536:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    head = data.split(b"\r\n\r\n", 1)[0].decode(errors="replace").split("\r\n")
    match = re.match(r"RTSP/\d\.\d (\d{3})", head[0] if head else "")
    if not match:
        return 0, ""
    challenge = next((ln.split(":", 1)[1].strip() for ln in head[1:] if ln.lower().startswith("www-authenticate:")), "")
    return int(match.group(1)), challenge


def check_rtsp_auth(url: str, timeout: float = 3.0) -> None:
    """Raise AuthenticationError when the camera at `url` refuses its credentials; else return
    (unreachable cameras and other answers are left to the caller's own error)."""
    parts = urlsplit(url)
    if parts.scheme != "rtsp" or not parts.hostname:
        return
    user, password = unquote(parts.username or ""), unquote(parts.password or "")
    port = parts.port or 554
    uri = f"rtsp://{parts.hostname}:{port}{parts.path or '/'}" + (f"?{parts.query}" if parts.query else "")
    auth = f"Basic {base64.b64encode(f'{user}:{password}'.encode()).decode()}" if user else ""
    try:
        code, challenge = _describe(parts.hostname, port, uri, auth, timeout)
        if code == 401 and user and challenge.lower().startswith("digest"):
            code, challenge = _describe(
                parts.hostname, port, uri, _digest(user, password, "DESCRIBE", uri, challenge), timeout
            )
    except OSError:
        return
    if code == 401:
        why = "wrong user or password" if user else "the camera needs a user and password (rtsp://user:password@host/…)"
        raise AuthenticationError(f"RTSP authentication failed (401 Unauthorized) at {redact(url)}: {why}")
