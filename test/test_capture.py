"""Capture core without ROS: every source that can run here, the loop's recovery, the settings."""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import free_port, wait_for

from nano_vision_ros.core.camera_info import load_calibration, uncalibrated
from nano_vision_ros.core.capture import (
    FINISHED,
    RECONNECTING,
    STREAMING,
    CaptureConfig,
    CaptureLoop,
    EndOfStream,
    SourceError,
    TestPatternSource,
    create_source,
    decode_frame_index,
    gst,
    infer_kind,
    render_test_pattern,
)
from nano_vision_ros.core.capture.opencv_source import OpenCVSource, ffmpeg_options
from nano_vision_ros.core.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "samples" / "vtest.mp4"


@pytest.fixture(scope="module")
def short_clip(tmp_path_factory) -> Path:
    """A 2 s, 10 fps, 160x120 H.264 clip (20 frames) made with ffmpeg's testsrc."""
    path = tmp_path_factory.mktemp("clips") / "short.mp4"
    subprocess.run(
        [
            "ffmpeg",
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=160x120:rate=10",
            "-t",
            "2",
            "-c:v",
            "libx264",
            "-pix_fmt",
            "yuv420p",
            "-g",
            "10",
            str(path),
        ],
        check=True,
        timeout=60,
    )
    return path


def _opencv_frames(path: Path, n: int) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    frames = []
    for _ in range(n):
        ok, f = cap.read()
        if not ok:
            break
        frames.append(f)
    cap.release()
    return frames


# --- test pattern ---------------------------------------------------------------------------------
@pytest.mark.parametrize("size", [(1920, 1080), (640, 480), (160, 120), (48, 32)])
def test_pattern_encodes_index_and_is_deterministic(size):
    w, h = size
    for i in (0, 1, 2, 999, 123456, 2**32 - 1):
        a = render_test_pattern(i, w, h)
        assert a.shape == (h, w, 3) and a.dtype == np.uint8
        assert decode_frame_index(a) == i
        assert np.array_equal(a, render_test_pattern(i, w, h))
    assert not np.array_equal(render_test_pattern(1, w, h), render_test_pattern(2, w, h))  # it moves


def test_pattern_rgb_is_bgr_reversed_and_writes_into_buffer():
    out = np.zeros((480, 640, 3), np.uint8)
    got = render_test_pattern(7, 640, 480, out=out, rgb=True)
    assert got is out
    assert np.array_equal(out, render_test_pattern(7, 640, 480)[:, :, ::-1])


def test_pattern_source_counts_from_zero_on_open():
    src = TestPatternSource(320, 240, fps=30)
    src.open()
    assert [decode_frame_index(src.read()) for _ in range(3)] == [0, 1, 2]
    src.open()
    assert decode_frame_index(src.read()) == 0


# --- files through OpenCV -------------------------------------------------------------------------
def test_bundled_sample_opens_with_its_size_and_rate():
    src = OpenCVSource("file", "samples/vtest.mp4")  # resolved against the package, as the node does
    src.open()
    try:
        assert (src.width, src.height, src.nominal_fps) == (768, 576, 10.0)
        buf = np.empty(src.shape, np.uint8)
        frame = src.read(buf)
        assert frame is buf  # decoded straight into the caller's memory
        assert np.array_equal(frame, _opencv_frames(SAMPLE, 1)[0])
    finally:
        src.close()


def test_file_loops_or_ends(short_clip):
    ref = _opencv_frames(short_clip, 100)
    assert len(ref) == 20
    looping = OpenCVSource("file", str(short_clip), loop=True)
    looping.open()
    got = [looping.read().copy() for _ in range(25)]
    looping.close()
    assert all(np.array_equal(got[i], ref[i % 20]) for i in range(25))
    once = OpenCVSource("file", str(short_clip), loop=False)
    once.open()
    for _ in range(20):
        once.read()
    with pytest.raises(EndOfStream):
        once.read()
    once.close()


def test_missing_file_and_device_are_source_errors(tmp_path):
    with pytest.raises(SourceError, match="file not found"):
        OpenCVSource("file", str(tmp_path / "nope.mp4")).open()
    with pytest.raises(SourceError, match="device not found"):
        OpenCVSource("v4l2", "/dev/video-does-not-exist").open()


# --- a file replaced or rewritten while it plays (issue 15) -------------------------------------------
@pytest.fixture(scope="module")
def other_clip(tmp_path_factory) -> Path:
    """Another clip: 320x240, other content (testsrc2), 8 frames, so nothing of it matches short_clip."""
    path = tmp_path_factory.mktemp("clips") / "other.mp4"
    subprocess.run(
        [
            "ffmpeg",
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=320x240:rate=10",
            "-t",
            "0.8",
            "-c:v",
            "libx264",
            "-pix_fmt",
            "yuv420p",
            "-g",
            "10",
            str(path),
        ],
        check=True,
        timeout=60,
    )
    return path


def _file_source(backend: str, path: Path):
    return create_source(CaptureConfig(source=str(path), backend=backend, loop=True))


def _read_until_size(src, size: tuple[int, int], limit: int) -> list[np.ndarray]:
    """Read up to `limit` frames; return the frames from the first one of `size` (w, h) on."""
    frames = [src.read().copy() for _ in range(limit)]
    first = next((i for i, f in enumerate(frames) if f.shape[:2] == (size[1], size[0])), None)
    assert first is not None, f"no {size[0]}x{size[1]} frame in {limit} reads: the old file is still playing"
    return frames[first:]


@pytest.mark.parametrize("backend", ["opencv", "gstreamer"])
@pytest.mark.parametrize("how", ["rename", "rewrite_in_place", "truncate_then_write"])
def test_looping_file_notices_a_replaced_file(tmp_path, short_clip, other_clip, backend, how):
    """A looping file that is replaced on disk (new inode by rename, or the same inode rewritten or
    truncated) plays the new file from its start at the loop point, not the old one again."""
    path = tmp_path / "cam.mp4"
    shutil.copy(short_clip, path)
    inode = path.stat().st_ino
    src = _file_source(backend, path)
    src.open()
    try:
        for _ in range(5):
            assert src.read().shape == (120, 160, 3)
        if how == "rename":
            staged = tmp_path / "cam.mp4.part"
            shutil.copy(other_clip, staged)
            staged.replace(path)
            assert path.stat().st_ino != inode
        elif how == "rewrite_in_place":
            shutil.copyfile(other_clip, path)  # opens the same inode with O_TRUNC and writes
            assert path.stat().st_ino == inode
        else:
            with open(path, "r+b") as f:
                f.truncate(0)
            time.sleep(0.05)
            with open(path, "r+b") as f:
                f.write(other_clip.read_bytes())
            assert path.stat().st_ino == inode
        new = _read_until_size(src, (320, 240), 40)  # 15 old frames left at most, then the new file
        assert (src.width, src.height) == (320, 240)
    finally:
        src.close()
    ref = _opencv_frames(other_clip, 8)
    assert len(ref) == 8 and len(new) >= 8
    for got, want in zip(new[:8], ref):  # the new file from its first frame, in order
        assert np.abs(got.astype(int) - want.astype(int)).mean() < 4.0


def test_loop_delivers_the_replaced_file_at_its_own_size(tmp_path, short_clip, other_clip):
    """Through the capture loop: the first frame of the new file is published at the new size
    (not scaled into the old frame size), right after the last frame of the old file."""
    path = tmp_path / "cam.mp4"
    shutil.copy(short_clip, path)
    sink = _Collect()
    loop = CaptureLoop(OpenCVSource("file", str(path), loop=True), sink, fps=50).start()
    try:
        wait_for(lambda: sink.count() >= 3, 20, what="frames of the first file")
        staged = tmp_path / "next.mp4"
        shutil.copy(other_clip, staged)
        staged.replace(path)
        wait_for(
            lambda: sum(f.shape == (240, 320, 3) for f, _s, _q in sink.frames[-10:]) >= 3,
            30,
            what="frames of the new file",
        )
    finally:
        loop.stop()
    frames = [f for f, _s, _q in sink.frames]
    switch = next(i for i, f in enumerate(frames) if f.shape == (240, 320, 3))
    old_ref, new_ref = _opencv_frames(short_clip, 20), _opencv_frames(other_clip, 8)
    assert np.abs(frames[switch].astype(int) - new_ref[0].astype(int)).mean() < 4.0
    assert any(np.array_equal(frames[switch - 1], r) for r in old_ref)  # the frame before is the old file's
    assert [q for _f, _s, q in sink.frames] == list(range(len(frames)))


def test_looping_file_truncated_while_playing_reopens(tmp_path, short_clip, other_clip):
    """A file cut short under the reader (half its bytes) is a read error or an early end: the
    source notices the change and reopens; once the new content is complete its frames arrive."""
    path = tmp_path / "cam.mp4"
    shutil.copy(short_clip, path)
    sink = _Collect()
    src = OpenCVSource("file", str(path), loop=True)
    loop = CaptureLoop(src, sink, fps=50, reconnect_delay=0.05, reconnect_max_delay=0.2).start()
    try:
        wait_for(lambda: sink.count() >= 3, 20, what="frames of the first file")
        data = path.read_bytes()
        with open(path, "r+b") as f:
            f.truncate(len(data) // 2)
        time.sleep(0.5)
        shutil.copyfile(other_clip, path)
        wait_for(
            lambda: any(f.shape == (240, 320, 3) for f, _s, _q in sink.frames[-5:]),
            30,
            what="frames of the rewritten file",
        )
    finally:
        loop.stop()
    sizes = [f.shape for f, _s, _q in sink.frames]
    switch = sizes.index((240, 320, 3))
    assert all(s == (120, 160, 3) for s in sizes[:switch]) and all(s == (240, 320, 3) for s in sizes[switch:])


# --- GStreamer subprocess ------------------------------------------------------------------------
def _gst_reference_rgba(pipeline: str, width: int, height: int) -> np.ndarray:
    """One frame of `pipeline` converted to RGBA (never row-padded) by gst-launch itself."""
    out = subprocess.run(
        [
            "gst-launch-1.0",
            "-q",
            *pipeline.split(),
            "!",
            "videoconvert",
            "!",
            f"video/x-raw,format=RGBA,width={width},height={height}",
            "!",
            "fdsink",
            "fd=1",
        ],
        capture_output=True,
        timeout=60,
        check=True,
    ).stdout
    return np.frombuffer(out[: width * height * 4], np.uint8).reshape(height, width, 4)


@pytest.mark.parametrize("width", [320, 322])  # 322*3 is not a multiple of 4: GStreamer pads BGR rows
def test_gst_videotestsrc_frames_match_gstreamer(width):
    pipe = f"videotestsrc pattern=smpte num-buffers=1 ! video/x-raw,format=I420,width={width},height=240"
    ref = _gst_reference_rgba(pipe, width, 240)
    src = gst.GstSubprocessSource(pipe.replace("num-buffers=1", "num-buffers=5"))
    src.open()
    try:
        assert (src.width, src.height) == (width, 240)
        frame = src.read()
        assert np.array_equal(frame, ref[:, :, 2::-1])  # RGBA -> BGR: the same pixels, no skew
        for _ in range(4):
            src.read()
        with pytest.raises(SourceError):  # a non-file pipeline that ends is a lost stream
            src.read()
    finally:
        src.close()


def test_gst_scales_to_requested_size():
    src = gst.GstSubprocessSource("videotestsrc is-live=true ! video/x-raw,width=640,height=480", 320, 180)
    src.open()
    try:
        assert src.read().shape == (180, 320, 3)
    finally:
        src.close()


def test_gst_file_source_decodes_like_opencv(short_clip):
    pipe = gst.file_pipeline(str(short_clip), hw=False)
    assert pipe.startswith("filesrc location=") and "decodebin" in pipe
    src = gst.GstSubprocessSource(pipe, finite=True, loop=False)
    src.open()
    try:
        assert (src.width, src.height, src.nominal_fps) == (160, 120, 10.0)
        frames = [src.read().copy() for _ in range(20)]
        with pytest.raises(EndOfStream):
            src.read()
    finally:
        src.close()
    ref = _opencv_frames(short_clip, 20)
    # two decoders and two YUV->BGR converters: the same picture within rounding
    for a, b in zip(frames, ref):
        assert np.abs(a.astype(int) - b.astype(int)).mean() < 4.0


def test_gst_file_loops(short_clip):
    src = gst.GstSubprocessSource(gst.file_pipeline(str(short_clip), hw=False), finite=True, loop=True)
    src.open()
    try:
        frames = [src.read().copy() for _ in range(22)]
        assert np.array_equal(frames[20], frames[0]) and np.array_equal(frames[21], frames[1])
    finally:
        src.close()


def test_gst_bad_pipeline_names_the_problem():
    src = gst.GstSubprocessSource("no_such_element_xyz ! fakesink", open_timeout=20)
    with pytest.raises(SourceError, match="no_such_element_xyz|no element"):
        src.open()
    missing = create_source(CaptureConfig(source="/nonexistent/clip.mp4", backend="gstreamer"))
    with pytest.raises(SourceError, match="file not found: /nonexistent/clip.mp4"):
        missing.open()


def test_pipeline_builders():
    # No CSI camera or Jetson here: the CSI preset and the hardware decoder path are checked as text.
    assert gst.csi_pipeline(1, 3840, 2160, 30, flip_method=2) == (
        "nvarguscamerasrc sensor-id=1 ! video/x-raw(memory:NVMM),width=3840,height=2160,framerate=30/1,format=NV12 ! "
        "nvvidconv flip-method=2 ! video/x-raw,width=3840,height=2160,format=BGRx"
    )
    assert "framerate=30000/1001" in gst.csi_pipeline(0, 1920, 1080, 29.97)
    assert gst.file_pipeline("/v/a b.mp4", hw=True) == (
        "filesrc location='/v/a b.mp4' ! parsebin ! nvv4l2decoder ! nvvidconv ! video/x-raw,format=BGRx"
    )
    rtsp = gst.url_pipeline("rtsp://cam/stream", transport="udp", latency_ms=50, hw=False)
    assert rtsp.startswith("rtspsrc location=rtsp://cam/stream latency=50 protocols=udp") and rtsp.endswith(
        "! decodebin"
    )
    assert "nvv4l2decoder" in gst.url_pipeline("rtsp://cam/s", hw=True)
    assert gst.url_pipeline("http://h/x.ts", hw=False) == "uridecodebin uri=http://h/x.ts"
    cmd = gst.full_command("videotestsrc", 7, 640, 480)
    assert cmd[:3] == ["gst-launch-1.0", "-v", "-e"] and cmd[-3:] == ["fdsink", "fd=7", "sync=false"]
    assert "caps=video/x-raw,format=BGR,width=640,height=480" in cmd
    cfg = CaptureConfig(source="csi://1", width=3840, height=2160, fps=30, flip_method=2)
    src = create_source(cfg)
    assert isinstance(src, gst.GstSubprocessSource) and src.pipeline == gst.csi_pipeline(1, 3840, 2160, 30, 2)
    assert gst.has_element("videotestsrc") and not gst.has_element("no_such_element_xyz")


# --- network stream (ffmpeg HTTP server on 127.0.0.1) -------------------------------------------------
def _serve(clip: Path, port: int) -> subprocess.Popen:
    return subprocess.Popen(
        [
            "ffmpeg",
            "-hide_banner",
            "-loglevel",
            "error",
            "-re",
            "-stream_loop",
            "-1",
            "-i",
            str(clip),
            "-c",
            "copy",
            "-f",
            "mpegts",
            "-listen",
            "1",
            f"http://127.0.0.1:{port}/live.ts",
        ],
        stdin=subprocess.DEVNULL,
    )


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(10)


@pytest.mark.parametrize("backend", ["opencv", "gstreamer"])
def test_http_stream(short_clip, backend):
    port = free_port()
    server = _serve(short_clip, port)
    try:
        cfg = CaptureConfig(source=f"http://127.0.0.1:{port}/live.ts", backend=backend)
        src = create_source(cfg)
        deadline = time.monotonic() + 20
        while True:  # the server needs a moment to listen
            try:
                src.open()
                break
            except SourceError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        assert (src.width, src.height) == (160, 120)
        frames = [src.read().copy() for _ in range(5)]
        assert all(f.shape == (120, 160, 3) for f in frames)
        assert (
            np.abs(frames[0].astype(int) - _opencv_frames(short_clip, 20)[0].astype(int)).mean() < 40
        )  # a testsrc picture
        src.close()
    finally:
        _stop(server)
    assert ffmpeg_options("rtsp://x/y", "udp").startswith("rtsp_transport;udp|fflags;nobuffer")


# --- the loop -------------------------------------------------------------------------------------
class _Collect:
    def __init__(self) -> None:
        self.frames: list[tuple[np.ndarray, int, int]] = []
        self.lock = threading.Lock()

    def __call__(self, frame: np.ndarray, stamp: int, seq: int) -> None:
        with self.lock:
            self.frames.append((frame.copy(), stamp, seq))

    def count(self) -> int:
        with self.lock:
            return len(self.frames)


def test_loop_delivers_resized_rgb_in_order():
    sink = _Collect()
    loop = CaptureLoop(TestPatternSource(640, 480, fps=200, rgb=True), sink, rgb=True, resize=(320, 0)).start()
    try:
        wait_for(lambda: sink.count() >= 10, 20, what="10 frames")
    finally:
        loop.stop()
    for frame, _stamp, seq in sink.frames[:10]:
        idx = decode_frame_index(frame, rendered_size=(640, 480))
        assert idx == seq  # nothing skipped, nothing reordered
        ref = cv2.resize(render_test_pattern(idx, 640, 480), (320, 240), interpolation=cv2.INTER_AREA)[:, :, ::-1]
        assert np.array_equal(frame, ref)
    stamps = [s for _, s, _ in sink.frames]
    assert stamps == sorted(stamps)
    assert loop.stats()["state"] == "stopped"


def test_loop_converts_bgr_sources_to_rgb(short_clip):
    sink = _Collect()
    loop = CaptureLoop(OpenCVSource("file", str(short_clip)), sink, rgb=True, pace=False).start()
    try:
        wait_for(lambda: sink.count() >= 3, 20, what="3 frames")
    finally:
        loop.stop()
    ref = _opencv_frames(short_clip, 3)
    for (frame, _s, _q), r in zip(sink.frames, ref):
        assert np.array_equal(frame, r[:, :, ::-1])


def test_loop_throttles_to_max_rate():
    sink = _Collect()
    loop = CaptureLoop(TestPatternSource(64, 48, fps=100), sink, max_rate=10).start()
    try:
        wait_for(lambda: loop.throttled >= 20 and sink.count() >= 3, 20, what="throttled frames")
    finally:
        loop.stop()
    assert loop.frames + loop.throttled == loop.read_frames


def test_loop_recovers_when_file_comes_back(tmp_path, short_clip):
    path = tmp_path / "cam.mp4"
    states: list[str] = []
    sink = _Collect()
    loop = CaptureLoop(
        OpenCVSource("file", str(path)),
        sink,
        fps=50,
        reconnect_delay=0.05,
        reconnect_max_delay=0.2,
        on_state=lambda s, _d: states.append(s),
    ).start()
    try:
        wait_for(lambda: loop.attempts >= 3, 20, what="failed attempts")
        assert loop.state == RECONNECTING and "file not found" in loop.last_error and sink.count() == 0
        shutil.copy(short_clip, path)
        wait_for(lambda: sink.count() >= 3, 20, what="frames after the file came back")
        assert loop.state == STREAMING and loop.reconnects == 1 and loop.attempts == 0
        assert states.count(RECONNECTING) == 1  # one transition, however many retries
    finally:
        loop.stop()


def test_loop_recovers_gst_file_source(tmp_path, short_clip):
    path = tmp_path / "later.mp4"
    sink = _Collect()
    src = create_source(CaptureConfig(source=str(path), backend="gstreamer", fps=50))
    loop = CaptureLoop(src, sink, fps=50, reconnect_delay=0.05, reconnect_max_delay=0.2).start()
    try:
        wait_for(lambda: loop.attempts >= 2, 20, what="failed attempts")
        assert "file not found" in loop.last_error
        shutil.copy(short_clip, path)
        wait_for(lambda: sink.count() >= 25, 30, what="frames, across the loop restart")
        assert loop.reconnects == 1 and loop.state == STREAMING and sink.frames[0][0].shape == (120, 160, 3)
    finally:
        loop.stop()


def test_loop_finishes_a_file_without_loop(short_clip):
    sink = _Collect()
    loop = CaptureLoop(OpenCVSource("file", str(short_clip), loop=False), sink, pace=False).start()
    try:
        wait_for(lambda: loop.state == FINISHED, 20, what="end of file")
        assert sink.count() == 20 and loop.running  # the thread idles until stop
    finally:
        loop.stop()
    assert not loop.running


def test_loop_reconnects_a_dropped_stream(short_clip):
    port = free_port()
    server = _serve(short_clip, port)
    sink = _Collect()
    src = OpenCVSource("url", f"http://127.0.0.1:{port}/live.ts", read_timeout=3)
    loop = CaptureLoop(src, sink, reconnect_delay=0.1, reconnect_max_delay=0.5).start()
    try:
        wait_for(lambda: sink.count() >= 3, 30, what="frames from the stream")
        _stop(server)
        wait_for(lambda: loop.state == RECONNECTING, 30, what="the loss to be noticed")
        before = sink.count()
        server = _serve(short_clip, port)
        wait_for(lambda: sink.count() >= before + 3, 30, what="frames after the server came back")
        assert loop.reconnects >= 1 and loop.state == STREAMING
    finally:
        loop.stop()
        _stop(server)


# --- settings -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "source,kind",
    [
        ("samples/vtest.mp4", "file"),
        ("/data/x.mkv", "file"),
        ("0", "v4l2"),
        ("/dev/video2", "v4l2"),
        ("rtsp://user:pw@10.0.0.2/s", "url"),
        ("http://h/x.mjpg", "url"),
        ("videotestsrc ! videoconvert", "gstreamer"),
        ("csi://0", "csi"),
        ("test://pattern", "test_pattern"),
    ],
)
def test_infer_kind(source, kind):
    assert infer_kind(source) == kind


@pytest.mark.parametrize(
    "values,param",
    [
        ({"source_kind": "webcam"}, "source_kind"),
        ({"width": 1920}, "height"),
        ({"width": 8, "height": 8}, "height"),
        ({"width": 99999, "height": 1080}, "width"),
        ({"fps": -1}, "fps"),
        ({"source_kind": "url", "source": "/tmp/x.mp4"}, "source"),
        ({"source_kind": "v4l2", "source": "cam"}, "source"),
        ({"source": "csi://left"}, "source"),
        ({"reconnect_delay": 5, "reconnect_max_delay": 1}, "reconnect_max_delay"),
        ({"flip_method": 9}, "flip_method"),
    ],
)
def test_bad_settings_name_the_parameter(values, param):
    from nano_vision_ros.ros.params import validate_config

    with pytest.raises(ConfigError, match=f"parameter '{param}'"):
        validate_config(CaptureConfig, values)


def test_source_accepts_int_device_index():
    cfg = CaptureConfig(source=0)
    assert cfg.source == "0" and cfg.kind == "v4l2"


# --- camera info ----------------------------------------------------------------------------------
def test_calibration_load_scale_and_errors(tmp_path):
    cal = load_calibration("package://nano_vision_ros/config/camera_info/example_768x576.yaml")
    assert (cal.width, cal.height, cal.calibrated) == (768, 576, True)
    assert cal.k[0] == 620.0 and len(cal.d) == 5 and len(cal.p) == 12
    half = cal.scaled(384, 288)
    assert half.k[0] == 310.0 and half.k[2] == 192.0 and half.k[5] == 144.0 and half.p[0] == 310.0 and half.k[8] == 1.0
    assert not uncalibrated(640, 480).calibrated
    with pytest.raises(ConfigError, match="parameter 'camera_info_url': cannot read"):
        load_calibration(str(tmp_path / "missing.yaml"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("image_width: 640\nimage_height: 480\ncamera_matrix: {rows: 3, cols: 3, data: [1, 2]}\n")
    with pytest.raises(ConfigError, match="camera_matrix' needs 9 values"):
        load_calibration(f"file://{bad}")
    bad.write_text("image_width: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_calibration(str(bad))
