"""Issue 15: malformed frames to every image-taking node, in its own process over DDS.

Each node gets 11 kinds of bad frames, then good ones: it stays up, the good frame is handled
(its output appears), diagnostics count and name the bad frames, and the log holds a few
throttled lines, not one WARNING per bad frame. Plus unit tests of the throttle (BadFrames) and
of LatestWorker routing ImageError to it.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import pytest
from conftest import wait_for

W, H = 64, 48


def _bad_frames() -> list:
    """The 11 kinds: (name, Image) with a good bgr8 frame mangled one way each."""
    from sensor_msgs.msg import Image

    def img(**kw) -> Image:
        m = Image(height=H, width=W, encoding="bgr8", step=W * 3)
        m.data = bytes(W * H * 3)
        for k, v in kw.items():
            setattr(m, k, v)
        return m

    return [
        ("unknown encoding", img(encoding="weird9")),
        ("encoding not an image", img(encoding="32FC1")),
        ("empty encoding", img(encoding="")),
        ("zero width", img(width=0)),
        ("zero height", img(height=0)),
        ("step smaller than a row", img(step=10)),
        ("data shorter than step*height", img(data=bytes(100))),
        ("no data", img(data=b"")),
        ("huge declared size", img(width=100000, height=100000, step=300000)),
        ("odd width yuyv", img(encoding="yuyv", width=W - 1, step=(W - 1) * 2)),
        ("nv12 short data", img(encoding="nv12", step=W, data=bytes(W * H))),
    ]


def _good(stamp_sec: int):
    from nano_vision_ros.ros.image import numpy_to_imgmsg

    rng = np.random.default_rng(stamp_sec)
    msg = numpy_to_imgmsg(rng.integers(0, 255, (H * 4, W * 4, 3), dtype=np.uint8), "bgr8")
    msg.header.stamp.sec = stamp_sec
    return msg


class _Diag:
    """The newest diagnostics values of one node (by name suffix)."""

    def __init__(self, node, name: str) -> None:
        from diagnostic_msgs.msg import DiagnosticArray

        self.name, self.values, self.level, self.message = name, {}, None, ""
        node.create_subscription(DiagnosticArray, "/diagnostics", self._on, 10)

    def _on(self, msg) -> None:
        for st in msg.status:
            if st.name.endswith(self.name):
                self.values = {kv.key: kv.value for kv in st.values}
                self.level, self.message = st.level, st.message


def _bad_frame_warnings(log: str) -> int:
    return sum(1 for line in log.splitlines() if "WARN" in line and "bad frame" in line)


def _exercise(me, proc, topic: str, diag: _Diag, output_seen, rounds: int = 3) -> None:
    """Bad frames (all kinds, `rounds` times), then good frames until `output_seen()`."""
    from sensor_msgs.msg import Image

    from nano_vision_ros.ros import qos

    pub = me.create_publisher(Image, topic, qos.SENSOR)
    wait_for(lambda: pub.get_subscription_count() > 0, 90, what=f"a subscriber on {topic}")
    bad = _bad_frames()
    sent = 0
    for _ in range(rounds):
        for _name, msg in bad:
            pub.publish(msg)
            sent += 1
            time.sleep(0.04)  # the worker keeps only the newest frame: give it time to see each
    assert proc.alive(), proc.log()[-3000:]

    def good_handled():
        pub.publish(_good(777))
        return output_seen()

    wait_for(good_handled, 120, interval=0.5, what="output for a good frame after the bad ones")
    wait_for(lambda: int(diag.values.get("bad_frames", "0")) >= len(bad), 30, what="bad_frames in diagnostics")
    v = diag.values
    assert proc.alive()
    assert "last_bad_frame" in v and v["last_bad_frame"].startswith("frame ")
    kinds = {k for k in v if k.startswith("bad_frames_")}
    assert {
        "bad_frames_encoding",
        "bad_frames_empty",
        "bad_frames_step",
        "bad_frames_data",
        "bad_frames_size",
    } <= kinds, v
    counted = int(v["bad_frames"])
    warnings = _bad_frame_warnings(proc.log())
    assert 1 <= warnings <= 4 < counted, f"{warnings} bad-frame warnings for {counted} bad frames"


@pytest.mark.timeout(240)
def test_recorder_survives_bad_frames(start_node, ros_node, tmp_path):
    node = start_node(
        "recorder_node",
        "-p",
        "image_topic:=/t_bad/rec/image_raw",
        "-p",
        "events_topic:=/t_bad/rec/events",
        "-p",
        "clips_topic:=/t_bad/rec/clips",
        "-p",
        f"output_dir:={tmp_path / 'clips'}",
        "-p",
        "fps:=10.0",
        "-p",
        "use_header_stamp:=false",
        name="recorder",
    )
    me = ros_node("bad_rec_test")
    diag = _Diag(me, "recorder_node")
    before: list[int] = []

    def recorded() -> bool:
        n = int(diag.values.get("frames_recorded", "0"))
        before.append(n)
        return n > before[0] if before else False

    wait_for(lambda: diag.values, 60, what="recorder diagnostics")
    _exercise(me, node, "/t_bad/rec/image_raw", diag, recorded)


@pytest.mark.timeout(240)
def test_recorder_survives_garbage_compressed_frames(start_node, ros_node, tmp_path):
    from sensor_msgs.msg import CompressedImage

    from nano_vision_ros.ros import qos
    from nano_vision_ros.ros.image import numpy_to_compressed

    node = start_node(
        "recorder_node",
        "-p",
        "image_topic:=/t_bad/crec/image_raw/compressed",
        "-p",
        "compressed:=true",
        "-p",
        "events_topic:=/t_bad/crec/events",
        "-p",
        "clips_topic:=/t_bad/crec/clips",
        "-p",
        f"output_dir:={tmp_path / 'clips'}",
        "-p",
        "fps:=10.0",
        "-p",
        "use_header_stamp:=false",
        name="crecorder",
    )
    me = ros_node("bad_crec_test")
    diag = _Diag(me, "recorder_node")
    pub = me.create_publisher(CompressedImage, "/t_bad/crec/image_raw/compressed", qos.SENSOR)
    wait_for(lambda: pub.get_subscription_count() > 0, 60, what="recorder subscription")
    good = numpy_to_compressed(np.full((48, 64, 3), 90, np.uint8), "jpeg")
    raw = good.data.tobytes()
    garbage = [b"", b"\xff\xd8 not a jpeg", raw[: len(raw) // 2], b"\x89PNG\r\n\x1a\n", bytes(500)]
    for _ in range(3):
        for data in garbage:
            m = CompressedImage(format="jpeg")
            m.data = data
            pub.publish(m)
            time.sleep(0.05)
    m = CompressedImage(format="png")
    m.data = b"\x00garbage"
    pub.publish(m)
    wait_for(lambda: int(diag.values.get("bad_frames", "0")) >= 5, 30, what="bad compressed frames counted")

    def recorded():
        pub.publish(good)
        return int(diag.values.get("frames_recorded", "0")) > 0

    wait_for(recorded, 60, interval=0.3, what="a good jpeg recorded after garbage")
    assert node.alive()
    assert "could not be decoded" in diag.values["last_bad_frame"] or "bad_frames_decode" in diag.values
    assert _bad_frame_warnings(node.log()) <= 4 < int(diag.values["bad_frames"])


@pytest.mark.timeout(240)
def test_streamer_survives_bad_frames(start_node, ros_node):
    from conftest import free_port

    # nothing listens on the port: the streamer retries, but takes every good frame in (frames_in)
    node = start_node(
        "rtmp_streamer_node",
        "-p",
        "image_topic:=/t_bad/str/image",
        "-p",
        f"url:=rtmp://127.0.0.1:{free_port()}/live/x",
        name="streamer",
    )
    me = ros_node("bad_str_test")
    diag = _Diag(me, "rtmp_streamer_node")
    wait_for(lambda: diag.values, 60, what="streamer diagnostics")
    _exercise(me, node, "/t_bad/str/image", diag, lambda: int(diag.values.get("frames_in", "0")) > 0)


@pytest.mark.timeout(240)
def test_events_node_survives_bad_frames(start_node, ros_node, tmp_path):
    node = start_node(
        "events_node", "-r", "__ns:=/t_bad_ev", "-p", f"snapshot_dir:={tmp_path / 'snaps'}", name="events"
    )
    me = ros_node("bad_ev_test")
    diag = _Diag(me, "events_node")
    wait_for(lambda: diag.values, 60, what="events diagnostics")
    _exercise(me, node, "/t_bad_ev/image_raw", diag, lambda: int(diag.values.get("images_buffered", "0")) > 0)


def _stamped_output(me, topic: str):
    from vision_msgs.msg import Detection2DArray

    from nano_vision_ros.ros import qos

    got: list[int] = []
    me.create_subscription(Detection2DArray, topic, lambda m: got.append(m.header.stamp.sec), qos.RELIABLE)
    return lambda: 777 in got


@pytest.mark.timeout(300)
def test_face_node_survives_bad_frames(start_node, ros_node, tmp_path):
    node = start_node(
        "face_node",
        "-r",
        "__ns:=/t_bad_face",
        "-p",
        f"gallery:={tmp_path / 'faces.db'}",
        "-p",
        "detector.kind:=centerface",
        name="face",
    )
    me = ros_node("bad_face_test")
    diag = _Diag(me, "face_node")
    seen = _stamped_output(me, "/t_bad_face/faces")
    _exercise(me, node, "/t_bad_face/image_raw", diag, seen)


@pytest.mark.timeout(300)
def test_plate_node_survives_bad_frames(start_node, ros_node):
    node = start_node(
        "plate_node", "-r", "__ns:=/t_bad_plate", "-p", "finder.mode:=frame", "-p", "publish_empty:=true", name="plate"
    )
    me = ros_node("bad_plate_test")
    diag = _Diag(me, "plate_node")
    seen = _stamped_output(me, "/t_bad_plate/plates")
    _exercise(me, node, "/t_bad_plate/image_raw", diag, seen)


@pytest.mark.timeout(300)
def test_detector_node_survives_bad_frames(start_node, ros_node):
    node = start_node("detector_node", "-r", "__ns:=/t_bad_det", "-p", "task:=coco_objects", name="detector")
    me = ros_node("bad_det_test")
    diag = _Diag(me, "detector_node")
    seen = _stamped_output(me, "/t_bad_det/detections")
    from sensor_msgs.msg import Image

    from nano_vision_ros.ros import qos

    pub = me.create_publisher(Image, "/t_bad_det/image_raw", qos.SENSOR)
    wait_for(lambda: pub.get_subscription_count() > 0, 120, what="detector subscription")
    warn_before = sum(1 for line in node.log().splitlines() if "WARN" in line)
    for _ in range(3):
        for _name, msg in _bad_frames():
            pub.publish(msg)
            time.sleep(0.04)

    def good_handled():
        pub.publish(_good(777))
        return seen()

    wait_for(good_handled, 120, interval=0.5, what="detections for a good frame after the bad ones")
    assert node.alive()
    # detector_node converts with to_bgr in its LatestWorker: bad frames reach its diagnostics without it doing more
    wait_for(
        lambda: int(diag.values.get("bad_frames", "0")) >= 11, 30, what="bad frames counted in detector diagnostics"
    )
    assert diag.values["last_bad_frame"].startswith("frame ") and "bad_frames_step" in diag.values
    # 33 bad frames: the worker's throttle (ros.worker / BadFrames) allows a few lines, not 33
    warnings = sum(1 for line in node.log().splitlines() if "WARN" in line) - warn_before
    assert warnings <= 4, node.log()[-3000:]


# --- the throttle itself -------------------------------------------------------------------------


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_bad_frames_log_first_then_one_summary_per_period():
    from nano_vision_ros.ros.diagnostics import BadFrames
    from nano_vision_ros.ros.image import ImageError

    logger = logging.getLogger("test.badframes")
    caplog = _Lines()
    logger.addHandler(caplog)
    bad = BadFrames("cam0-frames", period=0.5, logger=logger)
    try:
        for i in range(300):
            bad.record(ImageError("step 10 < row of 2304 bytes", "step"), i)
        bad.record(ImageError("encoding 'foo' unknown", "encoding"), 300)
        assert len(caplog.records) == 1 and "frame 0: step 10 < row of 2304 bytes" in caplog.records[0].getMessage()
        time.sleep(0.6)
        bad.flush()
        assert len(caplog.records) == 2
        summary = caplog.records[1].getMessage()
        assert "300 bad frames in the last" in summary and "encoding: 1" in summary and "step: 299" in summary
        assert "last: frame 300: encoding 'foo' unknown" in summary
        bad.flush()  # nothing new: no line
        assert len(caplog.records) == 2
    finally:
        logger.removeHandler(caplog)
    v = bad.values()
    assert v["bad_frames"] == 301 and v["bad_frames_step"] == 300 and v["bad_frames_encoding"] == 1
    assert v["last_bad_frame"] == "frame 300: encoding 'foo' unknown" and bad.recent(within=60)


def test_latest_worker_routes_image_errors_to_bad_frames_and_keeps_going():
    from nano_vision_ros.ros.image import ImageError, to_bgr
    from nano_vision_ros.ros.worker import LatestWorker

    done: list[tuple] = []
    w = LatestWorker(lambda m: done.append(to_bgr(m).shape), name="t-worker")
    try:
        for _name, msg in _bad_frames():
            w.submit(msg)
            wait_for(lambda: w.processed + w.errors >= w.submitted - w.dropped, 5, what="worker caught up")
        w.submit(_good(1))
        wait_for(lambda: done, 5, what="the good frame handled")
    finally:
        w.stop()
    assert done == [(H * 4, W * 4, 3)]
    assert w.bad.total == w.errors == 11 - w.dropped and w.bad.total >= 1
    assert w.bad.last.startswith("frame ") and isinstance(ImageError("x"), ValueError)
