"""Real RTSP cameras: gst-rtsp-server (test/rtsp_server.py, its own process) -> camera_node (its own
process) over TCP and UDP on 127.0.0.1 -> subscribers here.

The server's picture carries the frame index (decode_frame_index) and the server writes the wall
time each frame went to the encoder, so the tests check that what arrives are the server's frames,
in order, and stamped after they were sent.
"""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from camera_tools import diag_values, stamped_diags, subscribe_camera
from conftest import free_port, wait_for

from nano_vision_ros.core.capture import decode_frame_index

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SERVER = HERE / "rtsp_server.py"
SYSTEM_PYTHON = "/usr/bin/python3"
SAMPLE = REPO / "samples" / "vtest.mp4"
#: stated recovery time: frames again within this many seconds of the server coming back
#: (reconnect_max_delay 1 s + an RTSP open; generous for a loaded 2-core machine)
RECOVERY_DEADLINE = 30.0
pytestmark = pytest.mark.timeout(240)


def _have_rtsp_server() -> bool:
    if not Path(SYSTEM_PYTHON).exists():
        return False
    probe = subprocess.run(
        [SYSTEM_PYTHON, "-c", "import gi; gi.require_version('GstRtspServer', '1.0')"],
        capture_output=True,
        timeout=60,
        check=False,
    )
    return probe.returncode == 0


if not _have_rtsp_server():  # a missing dependency is an error here, not a skip: see requirements/rtsp.apt
    raise RuntimeError(
        "test_rtsp needs /usr/bin/python3 with python3-gi and gir1.2-gst-rtsp-server-1.0 (requirements/rtsp.apt)"
    )


class RtspServer:
    """test/rtsp_server.py in its own process; stopped by PID."""

    def __init__(self, port: int, tmp: Path, *args: str) -> None:
        self.port = port
        self.stamps_path = tmp / f"stamps-{port}-{time.monotonic_ns()}.txt"
        self.args = args
        self.lines: list[str] = []
        self.proc: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        self.lines = []
        self.proc = subprocess.Popen(
            [SYSTEM_PYTHON, str(SERVER), "--port", str(self.port), "--stamps", str(self.stamps_path), *self.args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        threading.Thread(target=self._drain, args=(self.proc,), daemon=True).start()
        wait_for(
            lambda: any(ln.startswith("READY") for ln in self.lines) or self.proc.poll() is not None,
            60,
            what="the RTSP server to listen",
        )
        assert self.proc.poll() is None, "\n".join(self.lines)

    def _drain(self, proc: subprocess.Popen) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self.lines.append(line.rstrip())

    def url(self, mount: str = "cam", auth: str = "") -> str:
        return f"rtsp://{auth + '@' if auth else ''}127.0.0.1:{self.port}/{mount}"

    def clients(self) -> int:
        return sum(ln.startswith("client ") for ln in list(self.lines))

    def sent(self) -> dict[int, int]:
        """frame index -> wall time (ns) it went to the encoder."""
        out = {}
        if self.stamps_path.exists():
            for ln in self.stamps_path.read_text().splitlines():
                parts = ln.split()
                if len(parts) == 2:
                    out[int(parts[0])] = int(parts[1])
        return out

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


@pytest.fixture
def rtsp_server(tmp_path):
    servers: list[RtspServer] = []

    def _start(*args: str, port: int | None = None) -> RtspServer:
        s = RtspServer(port or free_port(), tmp_path, *args)
        servers.append(s)
        return s

    yield _start
    for s in servers:
        s.stop()


def _stamp_ns(header) -> int:
    return header.stamp.sec * 1_000_000_000 + header.stamp.nanosec


def _camera(start_node, ns: str, url: str, *params: str):
    return start_node(
        "camera_node",
        "-r",
        f"__ns:={ns}",
        "-p",
        f"source:={url}",
        "-p",
        "diagnostics_period:=0.3",
        "-p",
        "reconnect_delay:=0.2",
        "-p",
        "reconnect_max_delay:=1.0",
        *params,
    )


@pytest.mark.parametrize("backend", ["opencv", "gstreamer"])
@pytest.mark.parametrize("transport", ["tcp", "udp"])
def test_camera_reads_rtsp(start_node, ros_node, rtsp_server, transport, backend):
    server = rtsp_server("--size", "640x480", "--fps", "15")
    ns = f"/rtsp_{transport}_{backend}"
    node = _camera(start_node, ns, server.url(), "-p", f"transport:={transport}", "-p", f"backend:={backend}")
    images, _infos, _jpegs, diags = subscribe_camera(ros_node, ns)
    wait_for(lambda: len(images) >= 20, 90, what=f"20 frames over RTSP/{transport}")
    sent = server.sent()
    received = images.snapshot()[:20]
    indices = []
    for header, encoding, w, h, _step, arr in received:
        assert (encoding, w, h) == ("bgr8", 640, 480)
        idx = decode_frame_index(arr)
        assert idx in sent, f"frame index {idx} was never sent by the server"
        assert _stamp_ns(header) > sent[idx], "a frame stamped before the server sent it"
        indices.append(idx)
    assert indices == sorted(indices) and len(set(indices)) == len(indices)
    assert indices[-1] - indices[0] <= 2 * len(indices)  # few frames lost on loopback
    wait_for(lambda: (diag_values(diags) or {}).get("state") == "streaming", 30, what="diagnostics: streaming")
    assert f"rtsp://127.0.0.1:{server.port}/cam" in diag_values(diags)["source"] and node.alive()
    assert server.clients() == 1  # one connection, no retries


@pytest.mark.parametrize("transport", ["tcp", "udp"])
def test_server_killed_and_restarted(start_node, ros_node, rtsp_server, transport):
    server = rtsp_server("--fps", "15")
    ns = f"/rtsp_restart_{transport}"
    node = _camera(start_node, ns, server.url(), "-p", f"transport:={transport}", "-p", "read_timeout:=2.0")
    images, _infos, _jpegs, diags = subscribe_camera(ros_node, ns)
    wait_for(lambda: len(images) >= 5, 90, what="frames before the server dies")
    pid = node.pid
    server.kill()  # SIGKILL: no RTSP TEARDOWN, the camera just vanishes
    wait_for(lambda: (diag_values(diags) or {}).get("state") == "reconnecting", 30, what="diagnostics: reconnecting")
    time.sleep(1.0)  # a few refused attempts while it is down
    before = len(images)
    server.start()  # the same port
    back = time.monotonic()
    wait_for(
        lambda: len(images) >= before + 5,
        RECOVERY_DEADLINE,
        what=f"frames within {RECOVERY_DEADLINE:g} s of the restart",
    )
    took = time.monotonic() - back
    assert node.alive() and node.pid == pid, "the node was restarted"
    wait_for(
        lambda: int((diag_values(diags) or {}).get("reconnects", 0)) >= 1, 30, what="diagnostics: reconnect counted"
    )
    newest = images.snapshot()[-1]
    assert decode_frame_index(newest[5]) in server.sent()  # frames of the new server process
    print(f"RTSP/{transport}: frames again {took:.1f} s after the server restarted")


@pytest.mark.parametrize("backend", ["opencv", "gstreamer"])
def test_wrong_password_is_named_and_retried_with_backoff(start_node, ros_node, rtsp_server, backend):
    server = rtsp_server("--user", "site", "--password", "s3cret")
    ns = f"/rtsp_auth_{backend}"
    node = start_node(
        "camera_node",
        "-r",
        f"__ns:={ns}",
        "-p",
        f"source:={server.url(auth='site:wrong')}",
        "-p",
        f"backend:={backend}",
        "-p",
        "diagnostics_period:=0.2",
        "-p",
        "reconnect_delay:=0.4",
        "-p",
        "reconnect_max_delay:=3.2",
    )
    images, _infos, _jpegs, diags = subscribe_camera(ros_node, ns)
    history = stamped_diags(ros_node, ns)
    wait_for(lambda: int((diag_values(diags) or {}).get("attempts", 0)) >= 1, 60, what="a failed attempt")
    d = diag_values(diags)
    assert (
        "RTSP authentication failed (401 Unauthorized)" in d["last_error"]
        and "wrong user or password" in d["last_error"]
    )
    assert "site:wrong" not in d["last_error"]  # credentials never shown

    # the delay after failed attempt k is 0.4 * 2**(k-1) s, at most 3.2 s: three more attempts from
    # attempt k take at least the sum of those delays (minus the 0.2 s diagnostics period). Timed on the
    # node's diagnostics stamps from a count seen arriving (the first one after the first message), not
    # on this process's clock when it read the count: under load that read came a second late and
    # shortened the interval (attempts 3..6 "took 6.8 s" against 8.0 s asked).
    def first_stamp(k: int) -> float | None:
        return next((t for t, v in history.snapshot() if v and int(v.get("attempts", 0)) >= k), None)

    wait_for(lambda: any(v for _, v in history.snapshot()), 30, what="stamped diagnostics of the camera")
    seen = 1 + int(next(v for _, v in history.snapshot() if v).get("attempts", 0))
    wait_for(lambda: first_stamp(seen + 3), 60, what="three more attempts")
    took = first_stamp(seen + 3) - first_stamp(seen)
    backoff = sum(min(3.2, 0.4 * 2 ** (k - 1)) for k in range(seen, seen + 3))
    assert took >= backoff - 0.5, f"attempts {seen}..{seen + 3} took {took:.1f} s, backoff asks {backoff:.1f} s"
    assert node.alive() and len(images) == 0
    log = node.log()
    assert log.count("RTSP authentication failed") == 1 and "retrying with backoff" in log  # logged once, not per retry
    assert "site:wrong" not in log
    # the right password on the same server works (the refusal was the password, nothing else)
    ok = start_node(
        "camera_node",
        "-r",
        f"__ns:={ns}_ok",
        "-p",
        f"source:={server.url(auth='site:s3cret')}",
        "-p",
        f"backend:={backend}",
        name="ok",
    )
    good, *_ = subscribe_camera(ros_node, f"{ns}_ok", name="t_sub_ok")
    wait_for(lambda: len(good) >= 3, 90, what="frames with the right password")
    assert ok.alive()


def test_sample_video_over_rtsp(start_node, ros_node, rtsp_server):
    """The bundled sample's own H.264, payloaded by the server as it is, arrives frame for frame."""
    server = rtsp_server("--video", str(SAMPLE))
    ns = "/rtsp_video"
    _camera(start_node, ns, server.url("video"), "-p", "transport:=tcp")
    images, *_ = subscribe_camera(ros_node, ns)
    wait_for(lambda: len(images) >= 10, 90, what="sample frames over RTSP")
    cap = cv2.VideoCapture(str(SAMPLE), cv2.CAP_FFMPEG)
    ref = []
    for _ in range(300):
        ok, f = cap.read()
        assert ok
        ref.append(cv2.resize(f, (96, 72), interpolation=cv2.INTER_AREA).astype(int))
    cap.release()
    matches = []
    for _header, _enc, w, h, _step, arr in images.snapshot()[:10]:
        assert (w, h) == (768, 576)
        small = cv2.resize(arr, (96, 72), interpolation=cv2.INTER_AREA).astype(int)
        diffs = [np.abs(small - r).mean() for r in ref]
        best = int(np.argmin(diffs))
        assert diffs[best] < 2.0, "a received frame is not a frame of the sample video"
        matches.append(best)
    assert matches == sorted(matches)


@pytest.mark.parametrize("backend", ["gstreamer", "opencv"])
def test_stream_that_changes_resolution(start_node, ros_node, rtsp_server, backend):
    """640x480 for 3 s, then 320x240 in the same RTSP session.

    gstreamer: the new caps restart the pipeline and frames of the new size are published.
    opencv: OpenCV's FFmpeg reader keeps the size it opened with and scales the new pictures to
    it (a known limit of that backend, see docs/nodes/camera_node.md): the stream goes on, the
    pictures are the new ones."""
    server = rtsp_server("--size", "640x480", "--switch-after", "3", "--size2", "320x240")
    ns = f"/rtsp_resize_{backend}"
    node = _camera(start_node, ns, server.url(), "-p", f"backend:={backend}")
    images, infos, _jpegs, _diags = subscribe_camera(ros_node, ns)
    wait_for(lambda: len(images) >= 3, 90, what="frames at the first size")
    assert images.snapshot()[0][2:4] == (640, 480)
    if backend == "gstreamer":
        wait_for(
            lambda: sum(w == 320 for _h, _e, w, *_ in images.snapshot()[-5:]) == 5, 60, what="frames of the new size"
        )
        wait_for(lambda: infos.snapshot()[-1].width == 320, 10, what="camera_info of the new size")
        sizes = [(w, h) for _h, _e, w, h, *_ in images.snapshot()]
        switch = sizes.index((320, 240))
        assert set(sizes[:switch]) == {(640, 480)} and set(sizes[switch:]) == {(320, 240)}
        rendered = None
    else:
        wait_for(lambda: len(server.sent()) > 0 and max(server.sent()) > 15 * 5, 60, what="the switch on the server")
        before = len(images)
        wait_for(lambda: len(images) >= before + 5, 30, what="frames after the switch")
        rendered = (320, 240)
    sent = server.sent()
    for _header, _enc, w, h, _step, arr in images.snapshot()[-5:]:
        assert decode_frame_index(arr, rendered_size=rendered) in sent, "not a frame of the new picture"
    assert node.alive()
    assert node.log().count("retrying with backoff") == 0  # a size change is not a failure
