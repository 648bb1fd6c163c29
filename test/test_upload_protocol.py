"""Upload protocol against the real `nano-vision receive` process: resume after cuts, refusals."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from conftest import wait_for
from upload_tools import TOKEN, make_clip, sha

from nano_vision_ros.core.upload import ServerAddress, UploadError, upload_file
from nano_vision_ros.core.upload.protocol import PROTO


class CuttingProxy:
    """TCP proxy to the receiver that drops both sides after `cut_after` client bytes (first connection only)."""

    def __init__(self, target_port: int, cut_after: int) -> None:
        self.target_port = target_port
        self.cut_after = cut_after
        self.connections = 0
        self.cuts = 0
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            limit = self.cut_after if self.connections == 1 else None
            server = socket.create_connection(("127.0.0.1", self.target_port))
            threading.Thread(target=self._pipe, args=(client, server, limit), daemon=True).start()
            threading.Thread(target=self._pipe, args=(server, client, None), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, limit: int | None) -> None:
        done = 0
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if limit is not None and done + len(data) >= limit:
                    dst.sendall(data[: limit - done])
                    self.cuts += 1
                    break
                dst.sendall(data)
                done += len(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def close(self) -> None:
        self.sock.close()


def test_upload_and_repeat(receiver, tmp_path):
    rx = receiver()
    clip = tmp_path / "a.mp4"
    digest = make_clip(clip, 700_000)
    res = upload_file(ServerAddress("127.0.0.1", rx.port, TOKEN), clip, "cam1/a.mp4")
    stored = rx.root / "cam1" / "a.mp4"
    assert res.remote == "cam1/a.mp4" and res.resumed_from == 0 and res.sent == 700_000
    assert sha(stored) == digest
    again = upload_file(ServerAddress("127.0.0.1", rx.port, TOKEN), clip, "cam1/a.mp4")
    assert again.sent == 0 and again.resumed_from == 700_000  # already there: nothing sent twice


def test_cut_connection_resumes_and_checksum_matches(receiver, tmp_path):
    rx = receiver()
    proxy = CuttingProxy(rx.port, cut_after=1_500_000)
    clip = tmp_path / "b.mp4"
    digest = make_clip(clip, 4_000_000)
    addr = ServerAddress("127.0.0.1", proxy.port, TOKEN, timeout=10)
    with pytest.raises(UploadError) as err:
        upload_file(addr, clip, "cam1/b.mp4")
    assert err.value.retryable and proxy.cuts == 1
    partial = rx.root / ".partial" / f"{digest}.part"
    wait_for(lambda: partial.exists() and partial.stat().st_size > 0, 10, what="partial data kept on the server")
    assert not (rx.root / "cam1" / "b.mp4").exists()
    res = upload_file(addr, clip, "cam1/b.mp4")
    assert 0 < res.resumed_from < 4_000_000 and res.sent == 4_000_000 - res.resumed_from
    assert sha(rx.root / "cam1" / "b.mp4") == digest and not partial.exists()
    proxy.close()


def test_receiver_killed_mid_file_resumes_after_restart(receiver, tmp_path):
    rx = receiver()
    clip = tmp_path / "c.mp4"
    digest = make_clip(clip, 6_000_000)
    partial = rx.root / ".partial" / f"{digest}.part"
    killed = []

    def progress(done: int, total: int) -> None:
        if done >= 3_000_000 and not killed:
            wait_for(lambda: partial.exists() and partial.stat().st_size > 0, 10, what="receiver writing")
            rx.kill()
            killed.append(done)

    with pytest.raises(UploadError):
        upload_file(
            ServerAddress("127.0.0.1", rx.port, TOKEN, timeout=10),
            clip,
            "cam2/c.mp4",
            chunk=64 * 1024,
            progress=progress,
        )
    assert killed
    rx2 = receiver(port=rx.port)
    res = upload_file(ServerAddress("127.0.0.1", rx2.port, TOKEN), clip, "cam2/c.mp4")
    assert res.resumed_from > 0
    assert sha(rx2.root / "cam2" / "c.mp4") == digest


def raw_header(port: int, header: dict) -> dict:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(json.dumps(header).encode() + b"\n")
        return json.loads(s.makefile().readline())


def test_refusals(receiver, tmp_path):
    rx = receiver("--max-mb", "1")
    clip = tmp_path / "d.mp4"
    digest = make_clip(clip, 300_000)
    with pytest.raises(UploadError) as err:
        upload_file(ServerAddress("127.0.0.1", rx.port, "wrong-token"), clip, "d.mp4")
    assert err.value.code == "auth" and not err.value.retryable
    big = tmp_path / "big.mp4"
    make_clip(big, 2 * 1024 * 1024)
    with pytest.raises(UploadError) as err:
        upload_file(ServerAddress("127.0.0.1", rx.port, TOKEN), big, "big.mp4")
    assert err.value.code == "size" and not err.value.retryable
    with pytest.raises(UploadError) as err:  # the client itself refuses to send such a name
        upload_file(ServerAddress("127.0.0.1", rx.port, TOKEN), clip, "../d.mp4")
    assert err.value.code == "name"
    # The server refuses them too, whatever the client does.
    base = {"proto": PROTO, "token": TOKEN, "size": 300_000, "sha256": digest}
    for name in ("../evil.mp4", "cam/../../evil.mp4", "/etc/evil.mp4", "..", "a\\b.mp4", ""):
        reply = raw_header(rx.port, {**base, "name": name})
        assert reply["ok"] is False and reply["code"] == "name", (name, reply)
    reply = raw_header(rx.port, {**base, "name": "ok.mp4", "token": "x" * len(TOKEN)})
    assert reply == {"ok": False, "code": "auth", "error": "bad token"}
    reply = raw_header(rx.port, {**base, "name": "ok.mp4", "size": 5 * 1024 * 1024})
    assert reply["code"] == "size"
    assert not (tmp_path / "evil.mp4").exists() and not list(rx.root.rglob("*.mp4"))
    # a wrong checksum is caught and nothing is stored
    with socket.create_connection(("127.0.0.1", rx.port), timeout=10) as s:
        s.sendall(json.dumps({**base, "name": "bad.mp4", "sha256": "0" * 64}).encode() + b"\n")
        f = s.makefile("rb")
        assert json.loads(f.readline())["offset"] == 0
        s.sendall(clip.read_bytes())
        assert json.loads(f.readline())["code"] == "checksum"
    assert not (rx.root / "bad.mp4").exists()


def test_receiver_needs_a_token(tmp_path):
    exe = Path(sys.executable).parent / "nano-vision"
    env = {k: v for k, v in os.environ.items() if k != "NANO_VISION_UPLOAD_TOKEN"}
    out = subprocess.run(
        [str(exe), "receive", "--dir", str(tmp_path), "--port", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert out.returncode == 2 and "no token" in out.stderr


def test_connection_limit(receiver, tmp_path):
    """Uploads beyond --max-connections are refused 'busy' instead of piling up threads; only an
    authenticated upload holds one of those slots (idle, unauthenticated connections do not)."""
    rx = receiver("--max-connections", "2", "--timeout", "20")
    idle = [socket.create_connection(("127.0.0.1", rx.port), timeout=10) for _ in range(3)]
    held = []
    clip = tmp_path / "g.mp4"
    digest = make_clip(clip, 10_000)
    try:
        for i in range(2):  # two authenticated uploads that stall before their body
            s = socket.create_connection(("127.0.0.1", rx.port), timeout=10)
            s.sendall(
                json.dumps(
                    {
                        "proto": PROTO,
                        "token": TOKEN,
                        "name": f"held{i}.mp4",
                        "size": 1000,
                        "sha256": hashlib.sha256(b"held%d" % i).hexdigest(),
                    }
                ).encode()
                + b"\n"
            )
            assert json.loads(s.makefile().readline()) == {"ok": True, "offset": 0}
            held.append(s)
        with pytest.raises(UploadError) as err:
            upload_file(ServerAddress("127.0.0.1", rx.port, TOKEN), clip, "g.mp4")
        assert err.value.code == "busy" and err.value.retryable and "max 2" in str(err.value)
    finally:
        for s in idle + held:
            s.close()
    wait_for(lambda: _try_upload(rx.port, clip), 10, what="uploads served again once the held ones left")
    assert sha(rx.root / "g.mp4") == digest


def _try_upload(port: int, clip: Path) -> bool:
    try:
        upload_file(ServerAddress("127.0.0.1", port, TOKEN), clip, "g.mp4")
        return True
    except UploadError:
        return False


def test_tls(receiver, tmp_path):
    """--tls-cert/--tls-key: a client that trusts the certificate uploads; a plain one gets nowhere."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    rx = receiver("--tls-cert", str(cert), "--tls-key", str(key))
    clip = tmp_path / "t.mp4"
    digest = make_clip(clip, 100_000)
    res = upload_file(ServerAddress("127.0.0.1", rx.port, TOKEN, tls=True, tls_ca=str(cert)), clip, "t.mp4")
    assert res.sent == 100_000 and sha(rx.root / "t.mp4") == digest
    with pytest.raises(UploadError):
        upload_file(ServerAddress("127.0.0.1", rx.port, TOKEN, timeout=5), clip, "t2.mp4")
    with pytest.raises(UploadError):  # a certificate the client does not trust
        upload_file(ServerAddress("127.0.0.1", rx.port, TOKEN, tls=True, timeout=5), clip, "t3.mp4")
    assert not (rx.root / "t2.mp4").exists() and not (rx.root / "t3.mp4").exists()
