"""Second transport: HTTP(S) PUT of the whole file to ``<base_url>/<name>`` (e.g. nginx WebDAV).

No resume (plain PUT has none): a cut upload is sent again from the start. The sha256 goes in
``X-Content-SHA256`` (and ``Digest``) for a server that checks it; the token as a Bearer header.
"""

from __future__ import annotations

import base64
import http.client
import os
import ssl
import urllib.parse
from collections.abc import Callable
from pathlib import Path

from nano_vision_ros.core.hashing import sha256_file
from nano_vision_ros.core.upload.client import UploadError, UploadResult
from nano_vision_ros.core.upload.protocol import ProtocolError, check_name

#: HTTP status -> (error code, retryable)
_STATUS = {
    400: ("proto", False),
    401: ("auth", False),
    403: ("auth", False),
    404: ("name", False),
    405: ("proto", False),
    409: ("exists", False),
    413: ("size", False),
    414: ("name", False),
}


def http_put(
    base_url: str,
    token: str,
    path: str | os.PathLike[str],
    name: str,
    sha256: str | None = None,
    timeout: float = 30.0,
    tls_ca: str | None = None,
    chunk: int = 256 * 1024,
    progress: Callable[[int, int], None] | None = None,
) -> UploadResult:
    try:
        check_name(name)
    except ProtocolError as err:
        raise UploadError(str(err), retryable=False, code="name") from None
    url = urllib.parse.urlsplit(base_url.rstrip("/") + "/" + urllib.parse.quote(name))
    if url.scheme not in ("http", "https") or not url.hostname:
        raise UploadError(f"bad upload URL {base_url!r} (http:// or https://)", retryable=False, code="proto")
    p = Path(path)
    try:
        size = p.stat().st_size
        digest = sha256 or sha256_file(p)
    except OSError as err:
        raise UploadError(f"cannot read {p}: {err.strerror or err}", retryable=False, code="local") from None
    if url.scheme == "https":
        conn: http.client.HTTPConnection = http.client.HTTPSConnection(
            url.hostname, url.port, timeout=timeout, context=ssl.create_default_context(cafile=tls_ca)
        )
    else:
        conn = http.client.HTTPConnection(url.hostname, url.port, timeout=timeout)
    headers = {
        "Content-Length": str(size),
        "Content-Type": "video/mp4",
        "X-Content-SHA256": digest,
        "Digest": "sha-256=" + base64.b64encode(bytes.fromhex(digest)).decode(),
    }
    if token:
        headers["Authorization"] = f"Bearer {token}"
    try:
        conn.putrequest("PUT", url.path)
        for k, v in headers.items():
            conn.putheader(k, v)
        conn.endheaders()
        sent = 0
        try:
            with open(p, "rb") as f:
                while block := f.read(chunk):
                    conn.send(block)
                    sent += len(block)
                    if progress is not None:
                        progress(sent, size)
        except OSError as send_err:
            # The server may have answered early (401, 413) and closed: read that answer if it is there.
            try:
                resp = conn.getresponse()
            except (OSError, http.client.HTTPException):
                raise send_err from None
        else:
            resp = conn.getresponse()
        resp.read()
    except (OSError, http.client.HTTPException) as err:
        raise UploadError(f"PUT {base_url} failed: {err}") from None
    finally:
        conn.close()
    if 200 <= resp.status < 300:
        return UploadResult(urllib.parse.urlunsplit(url), digest, size, 0, sent)
    code, retryable = _STATUS.get(resp.status, ("http", resp.status >= 500 or resp.status in (408, 429)))
    raise UploadError(f"PUT {url.path}: HTTP {resp.status} {resp.reason}", retryable=retryable, code=code)
