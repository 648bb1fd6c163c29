"""The clip receiver under attack (issue 15): slow headers, slow bodies, floods from one address.

Every test runs the real `nano-vision receive` process. Attackers use distinct loopback source
addresses (127.0.0.2, 127.0.0.3, …; Linux routes all of 127.0.0.0/8 to lo) so the per-address cap
can be told apart from the good client, which comes from 127.0.0.1.
"""

from __future__ import annotations

import hashlib
import json
import selectors
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest
from conftest import free_port, wait_for
from upload_tools import TOKEN, ReceiverProcess, make_clip, sha

from nano_vision_ros.core.upload import ServerAddress, UploadError, upload_file
from nano_vision_ros.core.upload.protocol import PROTO


@pytest.fixture
def receiver(tmp_path):
    procs: list[ReceiverProcess] = []

    def _start(*extra: str) -> ReceiverProcess:
        root = tmp_path / "received"
        root.mkdir(exist_ok=True)
        r = ReceiverProcess(root, free_port(), *extra)
        procs.append(r)
        return r

    yield _start
    for r in procs:
        r.kill()


def connect_from(src: str, port: int, timeout: float = 10.0) -> socket.socket:
    """A TCP connection to the receiver from loopback source address `src`."""
    s = socket.socket()
    s.settimeout(timeout)
    s.bind((src, 0))
    s.connect(("127.0.0.1", port))
    return s


def header(name: str, size: int, digest: str, token: str = TOKEN) -> bytes:
    return json.dumps({"proto": PROTO, "token": token, "name": name, "size": size, "sha256": digest}).encode() + b"\n"


def read_reply(s: socket.socket) -> dict | None:
    """The server's one-line reply, or None if the connection ended without one (closed/reset)."""
    buf = b""
    try:
        while not buf.endswith(b"\n"):
            b = s.recv(4096)
            if not b:
                break
            buf += b
    except ConnectionResetError:
        pass
    return json.loads(buf) if buf.endswith(b"\n") else None


def has_reply(s: socket.socket) -> bool:
    """True if the server has written to (or closed) `s` already; never blocks."""
    timeout = s.gettimeout()
    s.setblocking(False)
    try:
        s.recv(1, socket.MSG_PEEK)
        return True  # data, or b"" at the end of the stream
    except BlockingIOError:
        return False
    except OSError:
        return True
    finally:
        s.settimeout(timeout)


class SlowLoris:
    """`count` connections that each send one header byte every `every` seconds, spread over
    `sources` loopback addresses; a connection the server closes is opened again after `pause` s.
    One thread, one selector; stops at `stop()`."""

    JUNK = header("cam9/x.mp4", 10**6, "0" * 64, token="not-the-token")

    def __init__(self, port: int, count: int, sources: list[str], every: float = 2.0, pause: float = 0.5) -> None:
        self.port, self.every, self.pause = port, every, pause
        self.slots: list[dict] = [
            {"src": sources[i % len(sources)], "sock": None, "sent": 0, "next": 0.0} for i in range(count)
        ]
        self.opened = 0
        self.closed_by_server = 0
        self.replies: dict[str, int] = {}
        self._stop = threading.Event()
        self._sel = selectors.DefaultSelector()
        self._thread = threading.Thread(target=self._run, daemon=True, name="slowloris")
        self._thread.start()

    def _open(self, slot: dict) -> None:
        try:
            slot["sock"] = connect_from(slot["src"], self.port, timeout=5)
        except OSError:
            slot["next"] = time.monotonic() + self.pause
            return
        slot["sock"].setblocking(False)
        slot["sent"] = 0
        slot["next"] = time.monotonic() + self.every
        self._sel.register(slot["sock"], selectors.EVENT_READ, slot)
        self.opened += 1

    def _close(self, slot: dict) -> None:
        self._sel.unregister(slot["sock"])
        slot["sock"].close()
        slot["sock"] = None
        slot["next"] = time.monotonic() + self.pause

    def _run(self) -> None:
        for slot in self.slots:
            self._open(slot)
        while not self._stop.is_set():
            for key, _ in self._sel.select(timeout=0.2):
                slot = key.data
                try:
                    data = slot["sock"].recv(4096)
                except OSError:
                    data = b""
                for line in data.splitlines():
                    try:
                        code = json.loads(line).get("code", "?")
                    except ValueError:
                        code = "?"
                    self.replies[code] = self.replies.get(code, 0) + 1
                self.closed_by_server += 1
                self._close(slot)
            now = time.monotonic()
            for slot in self.slots:
                if now < slot["next"]:
                    continue
                if slot["sock"] is None:
                    self._open(slot)
                    continue
                try:
                    slot["sock"].send(self.JUNK[slot["sent"] % (len(self.JUNK) - 1) :][:1])
                    slot["sent"] += 1
                except OSError:
                    self.closed_by_server += 1
                    self._close(slot)
                    continue
                slot["next"] = now + self.every
        for slot in self.slots:
            if slot["sock"] is not None:
                self._close(slot)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


def upload_until(addr: ServerAddress, clip: Path, name: str, deadline: float):
    """Upload like the uploader does (retry retryable errors) until `deadline` (monotonic)."""
    last: UploadError | None = None
    while time.monotonic() < deadline:
        try:
            return upload_file(addr, clip, name)
        except UploadError as err:
            if not err.retryable:
                raise
            last = err
            time.sleep(0.5)
    pytest.fail(f"the good upload did not finish before the test deadline; last error: {last}")


def real_clip(tmp_path: Path, samples: Path) -> tuple[Path, str]:
    clip = tmp_path / "vtest.avi"
    shutil.copyfile(samples / "vtest.avi", clip)
    return clip, hashlib.sha256(clip.read_bytes()).hexdigest()


FORTY = [f"127.0.0.{i}" for i in range(2, 42)]


@pytest.mark.parametrize(
    "sources, extra",
    [(FORTY, ()), (["127.0.0.1"], ()), (FORTY, ("--max-pending", "16"))],
    ids=["40-addresses", "same-address-as-client", "pending-pool-smaller-than-attack"],
)
def test_good_upload_during_slowloris(receiver, tmp_path, samples, sources, extra):
    """40 slow-loris connections (a byte every 2 s, reconnecting when cut): a good client still
    uploads a real clip, checksum exact, well within 60 s (defaults, or a pending pool smaller
    than the attack)."""
    rx = receiver(*extra)
    attack = SlowLoris(rx.port, 40, sources)
    try:
        wait_for(lambda: attack.opened >= 40, 30, what="40 attacking connections open")
        time.sleep(3)  # every attacker has sent a byte or two: they hold whatever they can hold
        clip, digest = real_clip(tmp_path, samples)
        res = upload_until(
            ServerAddress("127.0.0.1", rx.port, TOKEN, timeout=10), clip, "cam0/vtest.avi", time.monotonic() + 60
        )
        assert res.sha256 == digest and sha(rx.root / "cam0" / "vtest.avi") == digest
    finally:
        attack.stop()
    assert attack.opened >= 40  # the attack really ran
    if sources == ["127.0.0.1"] or extra:
        # more attackers than one address's share (or than the pool) are pushed out ('busy', a clear reason)
        assert attack.replies.get("busy", 0) > 0, attack.replies


def test_slow_header_is_cut_at_the_header_deadline(receiver):
    """A header dribbled a byte a second is cut at --header-timeout, with a one-line reason."""
    rx = receiver("--header-timeout", "3")
    s = connect_from("127.0.0.2", rx.port)
    junk = header("a.mp4", 10, "0" * 64)
    t0 = time.monotonic()
    sent = 0
    while not has_reply(s) and time.monotonic() - t0 < 30:
        try:
            s.send(junk[sent : sent + 1])
        except OSError:
            break
        sent += 1
        time.sleep(1)
    assert time.monotonic() - t0 < 30, "a dribbled header kept its connection for 30 s"
    reply = read_reply(s)
    s.close()
    assert reply is not None and reply["ok"] is False and reply["code"] == "timeout", reply
    assert "header" in reply["error"], reply


def test_slow_body_is_cut_and_resume_is_exact(receiver, tmp_path):
    """An authenticated client that stalls in the body (below --min-rate over --rate-window) is
    cut; what it sent is kept and the next try resumes exactly there, checksum matching."""
    rx = receiver("--min-rate", "20000", "--rate-window", "2")
    clip = tmp_path / "slow.mp4"
    digest = make_clip(clip, 1_000_000)
    data = clip.read_bytes()
    s = connect_from("127.0.0.2", rx.port)
    s.sendall(header("cam1/slow.mp4", len(data), digest))
    f = s.makefile("rb")
    assert json.loads(f.readline()) == {"ok": True, "offset": 0}
    s.sendall(data[:100_000])
    sent = 100_000
    t0 = time.monotonic()
    cut = False
    while time.monotonic() - t0 < 30:
        time.sleep(0.5)
        if has_reply(s):
            cut = True
            break
        try:
            s.send(data[sent : sent + 10])  # 20 bytes/s: far below --min-rate
        except OSError:
            cut = True
            break
        sent += 10
    assert cut, "a body trickling 20 bytes/s kept its connection for 30 s"
    s.close()
    partial = rx.root / ".partial" / f"{digest}.part"
    wait_for(lambda: partial.exists() and partial.stat().st_size >= 100_000, 10, what="partial kept")
    kept = partial.stat().st_size
    assert partial.read_bytes() == data[:kept]
    res = upload_file(ServerAddress("127.0.0.1", rx.port, TOKEN), clip, "cam1/slow.mp4")
    assert res.resumed_from == kept and res.sent == len(data) - kept
    assert sha(rx.root / "cam1" / "slow.mp4") == digest and not partial.exists()


def test_per_address_cap(receiver, tmp_path):
    """--max-per-address: idle connections from one address beyond the cap push out that address's
    oldest ones ('busy'); authenticated uploads from it beyond the cap are refused; other
    addresses are not affected."""
    rx = receiver("--max-per-address", "3", "--header-timeout", "60")
    idle = [connect_from("127.0.0.2", rx.port) for _ in range(6)]
    try:
        replies = [read_reply(s) for s in idle[:3]]
        for r in replies:
            assert r is not None and r["code"] == "busy" and "127.0.0.2" in r["error"], r
        assert not any(has_reply(s) for s in idle[3:])  # the newest three are still waiting for a header
    finally:
        for s in idle:
            s.close()
    # three stalled authenticated uploads from 127.0.0.3 fill its cap; a fourth from it is refused
    clip = tmp_path / "p.mp4"
    digest = make_clip(clip, 200_000)
    held = []
    try:
        for i in range(3):
            s = connect_from("127.0.0.3", rx.port)
            s.sendall(header(f"cam3/held{i}.mp4", 200_000, hashlib.sha256(b"held%d" % i).hexdigest()))
            assert json.loads(s.makefile("rb").readline())["ok"] is True
            held.append(s)
        fourth = connect_from("127.0.0.3", rx.port)
        reply = read_reply(fourth)
        fourth.close()
        assert reply is not None and reply["code"] == "busy" and "127.0.0.3" in reply["error"], reply
        # meanwhile 127.0.0.1 uploads normally
        res = upload_file(ServerAddress("127.0.0.1", rx.port, TOKEN), clip, "cam1/p.mp4")
        assert sha(rx.root / "cam1" / "p.mp4") == digest and res.sent + res.resumed_from == 200_000
    finally:
        for s in held:
            s.close()


def test_pending_pool_pushes_out_the_oldest(receiver, tmp_path):
    """--max-pending: unauthenticated connections beyond the pool push out the oldest ones
    ('busy'), so a flood from many addresses cannot keep a new, fast client out."""
    rx = receiver("--max-pending", "4", "--header-timeout", "60")
    idle = [connect_from(f"127.0.0.{2 + i}", rx.port) for i in range(6)]
    try:
        for s in idle[:2]:
            r = read_reply(s)
            assert r is not None and r["code"] == "busy" and "unauthenticated" in r["error"], r
        clip = tmp_path / "q.mp4"
        digest = make_clip(clip, 50_000)
        upload_file(ServerAddress("127.0.0.1", rx.port, TOKEN), clip, "q.mp4")
        assert sha(rx.root / "q.mp4") == digest
    finally:
        for s in idle:
            s.close()


def test_slow_tls_handshake_is_cut_at_the_header_deadline(receiver, tmp_path):
    """Over TLS the deadline covers the handshake too: a ClientHello dribbled a byte a second is
    closed at --header-timeout, while a real TLS client uploads meanwhile."""
    import subprocess

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
    rx = receiver("--tls-cert", str(cert), "--tls-key", str(key), "--header-timeout", "3")
    s = connect_from("127.0.0.2", rx.port)
    s.sendall(b"\x16\x03\x01\x02\x00")  # a TLS handshake record of 512 bytes … sent one byte a second
    t0 = time.monotonic()
    while not has_reply(s) and time.monotonic() - t0 < 30:
        try:
            s.send(b"\x01")
        except OSError:
            break
        time.sleep(1)
    assert time.monotonic() - t0 < 30, "a dribbled TLS handshake kept its connection for 30 s"
    s.close()
    clip = tmp_path / "tls.mp4"
    digest = make_clip(clip, 300_000)
    upload_file(ServerAddress("127.0.0.1", rx.port, TOKEN, tls=True, tls_ca=str(cert)), clip, "tls.mp4")
    assert sha(rx.root / "tls.mp4") == digest


@pytest.mark.parametrize(
    "option, value",
    [("--max-pending", "0"), ("--header-timeout", "0"), ("--max-per-address", "-1"), ("--min-rate", "-5")],
)
def test_limits_that_would_disable_the_protection_are_refused(tmp_path, option, value):
    import os
    import subprocess
    import sys

    exe = Path(sys.executable).parent / "nano-vision"
    out = subprocess.run(
        [str(exe), "receive", "--dir", str(tmp_path), "--port", "0", option, value],
        env={**os.environ, "NANO_VISION_UPLOAD_TOKEN": TOKEN},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert out.returncode == 1 and option in out.stderr, out.stderr
