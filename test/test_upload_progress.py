"""Receiver progress against the real `nano-vision receive` process: a fragmented MP4 clip half
uploaded shows received/expected and a rate on GET /status, and its partial file already plays
(ffprobe) while the upload is still open; then it completes, or stays `partial`."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from conftest import free_port, wait_for

from nano_vision_ros.core.recording.clip import ClipWriter
from nano_vision_ros.core.upload.protocol import PROTO, recv_json, send_json

TOKEN = "progress-token"


def _fragmented_mp4(path: Path) -> None:
    """A clip the way the recorder writes it (core.recording.ClipWriter: H.264 stream-copied into
    fragmented MP4): 6 s of 320x240 at 10 fps from ffmpeg's test source, a keyframe a second."""
    h264 = subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=320x240:rate=10",
            "-t",
            "6",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-g",
            "10",
            "-pix_fmt",
            "yuv420p",
            "-f",
            "h264",
            "-",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    ).stdout
    w = ClipWriter(path, fps=10.0)
    w.feed(h264)
    w.finish()


def _frames(path: Path) -> int:
    """Frames ffmpeg decodes from `path` (errors at a cut end are expected and ignored)."""
    out = subprocess.run(
        [
            "ffprobe",
            "-v",
            "quiet",
            "-count_frames",
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=nb_read_frames,width,height",
            "-of",
            "json",
            str(path),
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )  # a cut file may end in an error
    streams = json.loads(out.stdout or "{}").get("streams") or [{}]
    s = streams[0]
    assert not s or (s.get("width"), s.get("height")) == (320, 240), s
    return int(s.get("nb_read_frames") or 0)


def _status(port: int, token: str = TOKEN, query: str = "") -> dict:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/status{query}", headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=5) as r:
        return json.loads(r.read())


@pytest.fixture
def receiver(tmp_path):
    procs: list[subprocess.Popen] = []
    logs: list = []

    def _start(port: int, status_port: int) -> subprocess.Popen:
        exe = Path(sys.executable).parent / "nano-vision"
        log = open(tmp_path / f"receiver-{port}.log", "ab")  # noqa: SIM115 - closed at teardown
        logs.append(log)
        p = subprocess.Popen(
            [
                str(exe),
                "receive",
                "--dir",
                str(tmp_path / "received"),
                "--port",
                str(port),
                "--status-port",
                str(status_port),
            ],
            env={**os.environ, "NANO_VISION_UPLOAD_TOKEN": TOKEN},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        procs.append(p)

        def up() -> bool:
            assert p.poll() is None, (tmp_path / f"receiver-{port}.log").read_text()
            try:
                _status(status_port)
                return True
            except OSError:
                return False

        wait_for(up, 30, what="receiver status endpoint")
        return p

    yield _start
    for p in procs:
        if p.poll() is None:
            os.kill(p.pid, signal.SIGTERM)
            p.wait(10)
    for log in logs:
        log.close()


def test_half_uploaded_fragmented_clip_plays_and_shows_progress(receiver, tmp_path):
    clip = tmp_path / "cam0_event.mp4"
    _fragmented_mp4(clip)
    data = clip.read_bytes()
    total = _frames(clip)
    assert total == 60, total
    sha, size, half = hashlib.sha256(data).hexdigest(), len(data), len(data) // 2
    port, status_port = free_port(), free_port()
    receiver(port, status_port)
    with pytest.raises(urllib.error.HTTPError) as err:
        _status(status_port, token="wrong")
    assert err.value.code == 401

    sock = socket.create_connection(("127.0.0.1", port), 5)
    try:
        send_json(sock, {"proto": PROTO, "token": TOKEN, "name": "cam0/cam0_event.mp4", "size": size, "sha256": sha})
        assert recv_json(sock) == {"ok": True, "offset": 0}
        for i in range(0, half, 4096):  # half the file over ~0.5 s, so the rate is a real rate
            sock.sendall(data[i : min(i + 4096, half)])
            time.sleep(0.5 * 4096 / half)

        def receiving():
            ups = _status(status_port, query="?name=cam0/cam0_event.mp4")["uploads"]
            return ups if ups and ups[0]["received"] == half else None

        up = wait_for(receiving, 10, what="status shows half the bytes")[0]
        assert (up["state"], up["size"], up["sha256"], up["resumed_from"]) == ("receiving", size, sha, 0)
        assert up["percent"] == pytest.approx(50.0, abs=0.1) and up["rate_bytes_per_s"] > 0
        partial = Path(up["partial_path"])
        assert partial.stat().st_size == half
        # the half-file plays up to where it ends: a prefix of the frames, at the clip's size
        got = _frames(partial)
        assert 5 <= got < total, got
        sock.sendall(data[half:])
        assert recv_json(sock)["done"] is True
    finally:
        sock.close()
    done = wait_for(lambda: [u for u in _status(status_port)["uploads"] if u["state"] == "done"], 10, what="done")[0]
    assert (done["received"], done["percent"], done["partial_path"]) == (size, 100.0, None)
    assert (tmp_path / "received/cam0/cam0_event.mp4").read_bytes() == data
    assert _status(status_port)["received"] == 1


def test_cut_upload_is_listed_as_partial_after_a_restart(receiver, tmp_path):
    clip = tmp_path / "c.mp4"
    _fragmented_mp4(clip)
    data = clip.read_bytes()
    sha, third = hashlib.sha256(data).hexdigest(), len(data) // 3
    port, status_port = free_port(), free_port()
    p = receiver(port, status_port)
    with socket.create_connection(("127.0.0.1", port), 5) as sock:
        send_json(sock, {"proto": PROTO, "token": TOKEN, "name": "c.mp4", "size": len(data), "sha256": sha})
        recv_json(sock)
        sock.sendall(data[:third])
        wait_for(
            lambda: [u for u in _status(status_port)["uploads"] if u["received"] == third], 10, what="a third received"
        )
    wait_for(
        lambda: [u for u in _status(status_port)["uploads"] if u["state"] == "partial"],
        10,
        what="cut upload listed partial",
    )
    os.kill(p.pid, signal.SIGTERM)
    p.wait(10)
    receiver(port, status_port)
    ups = _status(status_port)["uploads"]
    assert [(u["name"], u["state"], u["received"], u["size"]) for u in ups] == [("c.mp4", "partial", third, len(data))]


def test_site_clip_receiver_with_status_port_serves_progress(tmp_path):
    """The site's clip receiver service (services.clip_receiver.status_port in the site file)."""
    from nano_vision_ros.site.config import ReceiverEntry
    from nano_vision_ros.site.services import ClipReceiver

    entry = ReceiverEntry(
        enabled=True,
        port=free_port(),
        dir=str(tmp_path / "rx"),
        token_file=str(tmp_path / "token"),
        status_port=free_port(),
    )
    with ClipReceiver(entry.port, entry.host, entry.dir, entry.token_file, entry.status_port):
        token = (tmp_path / "token").read_text().strip()
        body = wait_for(lambda: _try_status(entry.status_port, token), 20, what="the site receiver's /status")
        assert body == {"uploads": [], "received": 0, "refused": 0}


def _try_status(port: int, token: str) -> dict | None:
    try:
        return _status(port, token)
    except OSError:
        return None
