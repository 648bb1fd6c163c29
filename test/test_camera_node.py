"""camera_node in its own process, over real DDS, to subscribers in this process."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest
from camera_tools import diag_values, subscribe_camera
from conftest import free_port, wait_for

from nano_vision_ros.core.capture import decode_frame_index, render_test_pattern

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "samples" / "vtest.mp4"
pytestmark = pytest.mark.timeout(180)


def _sample_hashes(n: int) -> dict[str, int]:
    cap = cv2.VideoCapture(str(SAMPLE), cv2.CAP_FFMPEG)
    out = {}
    for i in range(n):
        ok, f = cap.read()
        assert ok
        out[hashlib.sha256(f.tobytes()).hexdigest()] = i
    cap.release()
    return out


def test_sample_video_reaches_another_process(start_node, ros_node):
    ns = "/cam_sample"
    node = start_node(
        "camera_node",
        "-r",
        f"__ns:={ns}",
        "-p",
        "fps:=20",
        "-p",
        "frame_id:=cam_sample_optical",
        "-p",
        "camera_info_url:=package://nano_vision_ros/config/camera_info/example_768x576.yaml",
    )
    images, infos, _jpegs, diags = subscribe_camera(ros_node, ns)
    wait_for(lambda: len(images) >= 25 and len(infos) >= 5, 60, what="25 frames and camera infos")
    assert node.alive()
    received = images.snapshot()[:25]
    hashes = _sample_hashes(600)  # 20 fps: allows 30 s between the node's start and our first frame
    indices = []
    for header, encoding, w, h, step, arr in received:
        assert (encoding, w, h, step, arr.shape) == ("bgr8", 768, 576, 768 * 3, (576, 768, 3))
        assert header.frame_id == "cam_sample_optical"
        digest = hashlib.sha256(arr.tobytes()).hexdigest()
        assert digest in hashes, "a received frame is not a frame of the sample video"
        indices.append(hashes[digest])
    assert indices == sorted(indices) and len(set(indices)) == len(indices)  # in order, no repeats
    stamps = [(hd.stamp.sec, hd.stamp.nanosec) for hd, *_ in received]
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)
    info = infos.snapshot()[-1]
    assert (info.width, info.height, info.header.frame_id) == (768, 576, "cam_sample_optical")
    assert (
        list(info.k) == [620.0, 0.0, 384.0, 0.0, 620.0, 288.0, 0.0, 0.0, 1.0] and info.distortion_model == "plumb_bob"
    )
    wait_for(lambda: (diag_values(diags) or {}).get("state") == "streaming", 30, what="diagnostics")
    d = diag_values(diags)
    assert d["_level"] == 0 and int(d["frames"]) > 0 and d["width"] == "768" and d["reconnects"] == "0"
    assert "INFO" not in node.log().split("streaming", 1)[-1]  # no per-frame INFO lines after start-up


def test_1080p_pattern_arrives_intact(start_node, ros_node):
    ns = "/cam_hd"
    start_node(
        "camera_node",
        "-r",
        f"__ns:={ns}",
        "-p",
        "source:=test://pattern",
        "-p",
        "width:=1920",
        "-p",
        "height:=1080",
        "-p",
        "fps:=15",
    )
    images, infos, _jpegs, _diags = subscribe_camera(ros_node, ns)
    wait_for(lambda: len(images) >= 8, 60, what="8 1080p frames")
    seen = []
    for header, encoding, w, h, _step, arr in images.snapshot()[:8]:
        assert (encoding, w, h) == ("bgr8", 1920, 1080)
        idx = decode_frame_index(arr)
        assert np.array_equal(arr, render_test_pattern(idx, 1920, 1080)), f"frame {idx} changed on the way"
        seen.append(idx)
    assert seen == sorted(seen) and len(set(seen)) == len(seen)
    wait_for(lambda: len(infos) >= 1, 10, what="camera_info")
    info = infos.snapshot()[-1]
    assert (info.width, info.height) == (1920, 1080) and not any(info.k)  # uncalibrated default: K = 0


def test_resized_rgb_and_compressed(start_node, ros_node):
    ns = "/cam_small"
    start_node(
        "camera_node",
        "-r",
        f"__ns:={ns}",
        "-p",
        "source_kind:=test_pattern",
        "-p",
        "width:=640",
        "-p",
        "height:=480",
        "-p",
        "fps:=20",
        "-p",
        "resize_width:=320",
        "-p",
        "resize_height:=240",
        "-p",
        "encoding:=rgb8",
        "-p",
        "publish_compressed:=true",
        "-p",
        "jpeg_quality:=90",
    )
    images, infos, jpegs, _diags = subscribe_camera(ros_node, ns)
    wait_for(lambda: len(images) >= 3 and len(jpegs) >= 3, 60, what="raw and compressed frames")
    for _header, encoding, w, h, _step, arr in images.snapshot()[:3]:
        assert (encoding, w, h) == ("rgb8", 320, 240)
        idx = decode_frame_index(arr, rendered_size=(640, 480))
        ref = cv2.resize(render_test_pattern(idx, 640, 480), (320, 240), interpolation=cv2.INTER_AREA)[:, :, ::-1]
        assert np.array_equal(arr, ref)
    from nano_vision_ros.ros.image import compressed_to_numpy

    jpeg = jpegs.snapshot()[0]
    assert jpeg.format == "rgb8; jpeg compressed bgr8"
    img = compressed_to_numpy(jpeg)  # BGR
    idx = decode_frame_index(img, rendered_size=(640, 480))
    ref = cv2.resize(render_test_pattern(idx, 640, 480), (320, 240), interpolation=cv2.INTER_AREA)
    assert img.shape == (240, 320, 3) and np.abs(img.astype(int) - ref.astype(int)).mean() < 6
    assert (infos.snapshot()[-1].width, infos.snapshot()[-1].height) == (320, 240)


def _serve(port: int) -> subprocess.Popen:
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
            str(SAMPLE),
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


def _kill(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(10)


def test_stream_that_drops_is_recovered(start_node, ros_node):
    ns = "/cam_net"
    port = free_port()
    server = _serve(port)
    try:
        node = start_node(
            "camera_node",
            "-r",
            f"__ns:={ns}",
            "-p",
            f"source:=http://127.0.0.1:{port}/live.ts",
            "-p",
            "reconnect_delay:=0.2",
            "-p",
            "reconnect_max_delay:=1.0",
            "-p",
            "read_timeout:=5.0",
            "-p",
            "diagnostics_period:=0.3",
        )
        images, _infos, _jpegs, diags = subscribe_camera(ros_node, ns)
        wait_for(lambda: len(images) >= 5, 60, what="frames from the stream")
        mark = len(node.log())
        _kill(server)  # the stream vanishes
        wait_for(
            lambda: (diag_values(diags) or {}).get("state") == "reconnecting", 30, what="diagnostics: reconnecting"
        )
        d = diag_values(diags)
        assert d["_level"] in (1, 2) and d["last_error"] and node.alive()
        before = len(images)
        server = _serve(port)  # and comes back on the same address
        wait_for(lambda: len(images) >= before + 5, 60, what="frames after the stream came back")
        wait_for(
            lambda: (
                int((diag_values(diags) or {}).get("reconnects", 0)) >= 1 and diag_values(diags)["state"] == "streaming"
            ),
            30,
            what="diagnostics: reconnect counted",
        )
        assert node.alive()
        assert node.log()[mark:].count("retrying with backoff") == 1  # one line for the loss, not one per retry
    finally:
        _kill(server)


def test_missing_file_waits_then_recovers(start_node, ros_node, tmp_path):
    ns = "/cam_file"
    path = tmp_path / "later.mp4"
    node = start_node(
        "camera_node",
        "-r",
        f"__ns:={ns}",
        "-p",
        f"source:={path}",
        "-p",
        "reconnect_delay:=0.2",
        "-p",
        "reconnect_max_delay:=0.5",
        "-p",
        "fps:=20",
        "-p",
        "diagnostics_period:=0.3",
    )
    images, _infos, _jpegs, diags = subscribe_camera(ros_node, ns)
    wait_for(
        lambda: "file not found" in (diag_values(diags) or {}).get("last_error", ""),
        30,
        what="file-not-found diagnostics",
    )
    assert node.alive() and len(images) == 0
    shutil.copy(SAMPLE, path)
    wait_for(lambda: len(images) >= 3, 60, what="frames once the file exists")
    assert node.alive()


@pytest.mark.parametrize(
    "args,param",
    [
        (("-p", "source_kind:=webcam"), "source_kind"),
        (("-p", "width:=1920"), "height"),
        (("-p", "fps:=-5.0"), "fps"),
        (("-p", "camera_info_url:=file:///nonexistent/cal.yaml"), "camera_info_url"),
    ],
)
def test_bad_parameters_exit_2_naming_the_parameter(start_node, args, param):
    node = start_node("camera_node", *args)
    code = node.proc.wait(60)
    log = node.log()
    assert code == 2, log
    errors = [ln for ln in log.splitlines() if "ERROR" in ln]
    assert len(errors) == 1 and f"parameter '{param}'" in errors[0], log


def test_gstreamer_pipeline_source(start_node, ros_node):
    ns = "/cam_gst"
    start_node(
        "camera_node",
        "-r",
        f"__ns:={ns}",
        "-p",
        "source:=videotestsrc is-live=true pattern=ball ! video/x-raw,width=320,height=240,framerate=15/1",
        "-p",
        "frame_id:=gst_cam",
    )
    images, _infos, _jpegs, diags = subscribe_camera(ros_node, ns)
    wait_for(lambda: len(images) >= 5, 60, what="frames from the gst-launch subprocess")
    header, encoding, w, h, _step, arr = images.snapshot()[-1]
    assert (encoding, w, h, header.frame_id) == ("bgr8", 320, 240, "gst_cam") and arr.any()
    wait_for(lambda: "gstreamer videotestsrc" in (diag_values(diags) or {}).get("source", ""), 30, what="diagnostics")


def test_looping_file_replaced_on_disk_plays_the_new_file(start_node, ros_node, tmp_path):
    """Issue 15: a file source replaced on disk (by rename) plays the new file at its loop point,
    at the new size, without a restart of the node."""
    path, staged = tmp_path / "cam.mp4", tmp_path / "next.mp4"
    for out, size in ((path, "160x120"), (staged, "320x240")):
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
                f"testsrc=size={size}:rate=10",
                "-t",
                "1",
                "-c:v",
                "libx264",
                "-pix_fmt",
                "yuv420p",
                str(out),
            ],
            check=True,
            timeout=60,
        )
    ns = "/cam_replaced"
    node = start_node("camera_node", "-r", f"__ns:={ns}", "-p", f"source:={path}", "-p", "fps:=20")
    images, infos, _jpegs, _diags = subscribe_camera(ros_node, ns)
    wait_for(lambda: len(images) >= 3, 60, what="frames of the first file")
    pid = node.pid
    staged.replace(path)
    wait_for(lambda: sum(w == 320 for _h, _e, w, *_ in images.snapshot()[-5:]) == 5, 30, what="frames of the new file")
    assert node.alive() and node.pid == pid
    sizes = [(w, h) for _h, _e, w, h, *_ in images.snapshot()]
    switch = sizes.index((320, 240))
    assert set(sizes[:switch]) == {(160, 120)} and set(sizes[switch:]) == {(320, 240)}
    wait_for(lambda: infos.snapshot()[-1].width == 320, 10, what="camera_info of the new size")
    assert "the file changed on disk (replaced by another file)" in node.log()
