"""rtmp_streamer_node against a real nginx-rtmp: read the stream back with ffprobe; survive nginx restarts."""

from __future__ import annotations

import json
import subprocess
import threading
import time

import numpy as np
import pytest
from conftest import free_port, wait_for

from nano_vision_ros.core.streaming.encoder import EncoderSettings, ffmpeg_command, gstreamer_command
from nano_vision_ros.site.nginx_rtmp import NginxRtmp


def probe(url: str, timeout: float = 25.0) -> dict | None:
    """The first video stream ffprobe reads from `url`, or None."""
    try:
        out = subprocess.run(
            [
                "ffprobe",
                "-v",
                "error",
                "-rw_timeout",
                "8000000",
                "-show_entries",
                "stream=codec_name,width,height,avg_frame_rate,r_frame_rate",
                "-of",
                "json",
                url,
            ],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return None
    streams = json.loads(out.stdout or "{}").get("streams", [])
    return streams[0] if streams else None


def test_command_lines_carry_settings():
    s = EncoderSettings(width=640, height=360, fps=25, bitrate_kbps=1500, gop=50)
    ff = ffmpeg_command("rtmp://h/live/a", s, "libx264")
    assert ff[ff.index("-s") + 1] == "640x360" and ff[ff.index("-r") + 1] == "25"
    assert "keyint=50" in ff[ff.index("-x264-params") + 1] and ff[-1] == "rtmp://h/live/a"
    gst = " ".join(gstreamer_command("rtmp://h/live/a", s, "x264enc"))
    assert (
        "width=640 height=360" in gst and "key-int-max=50" in gst and "rtmpsink location=rtmp://h/live/a live=1" in gst
    )


def test_nginx_config_stays_in_workdir(tmp_path):
    n = NginxRtmp(port=free_port(), workdir=tmp_path / "ng")
    conf = n.render_config()
    assert f"pid {tmp_path / 'ng'}/nginx.pid;" in conf and "listen 127.0.0.1:" in conf and "/var/" not in conf


@pytest.fixture
def nginx(tmp_path):
    n = NginxRtmp(port=free_port(), workdir=tmp_path / "nginx")
    n.start()
    yield n
    n.stop()


class Diag:
    """The latest diagnostics values of one node, from /diagnostics."""

    def __init__(self, node, name_part: str) -> None:
        from diagnostic_msgs.msg import DiagnosticArray

        self.values: dict[str, str] = {}
        self.updates = 0

        def cb(msg):
            for st in msg.status:
                if name_part in st.name:
                    self.values = {kv.key: kv.value for kv in st.values}
                    self.updates += 1

        node.create_subscription(DiagnosticArray, "/diagnostics", cb, 10)

    def num(self, key: str) -> int:
        return int(float(self.values.get(key, "0")))


class Publisher:
    """Publishes moving test frames (640x480 bgr8) at ~20 fps from this process."""

    def __init__(self, node, topic: str) -> None:
        from sensor_msgs.msg import Image

        from nano_vision_ros.ros import qos
        from nano_vision_ros.ros.image import numpy_to_imgmsg

        self.pub = node.create_publisher(Image, topic, qos.SENSOR)
        self.sent = 0
        self._stop = threading.Event()
        base = np.zeros((480, 640, 3), np.uint8)
        base[:, :, 1] = np.linspace(0, 255, 640, dtype=np.uint8)[None, :]

        def run():
            while not self._stop.is_set():
                frame = np.roll(base, self.sent * 8, axis=1)
                self.pub.publish(numpy_to_imgmsg(frame, "bgr8"))
                self.sent += 1
                time.sleep(0.05)

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(2)


@pytest.mark.timeout(240)
def test_stream_reaches_nginx_and_survives_restart(nginx, start_node, ros_node):
    url = f"{nginx.url}/cam1"
    node = start_node(
        "rtmp_streamer_node",
        "-p",
        "image_topic:=/t_stream/image_raw",
        "-p",
        f"url:={url}",
        "-p",
        "width:=320",
        "-p",
        "height:=240",
        "-p",
        "fps:=10",
        "-p",
        "gop:=10",
        "-p",
        "bitrate_kbps:=300",
        "-p",
        "encoder:=ffmpeg",
        "-p",
        "ffmpeg_codec:=libx264",
        "-p",
        "backoff_max:=2.0",
        "-p",
        "diagnostics_period:=0.5",
        "-r",
        "__node:=streamer_t1",
    )
    me = ros_node("stream_test")
    diag = Diag(me, "streamer_t1")
    pub = Publisher(me, "/t_stream/image_raw")
    try:
        wait_for(lambda: diag.values.get("state") == "streaming", 40, what="streamer state 'streaming'")
        info = probe(url)
        assert info is not None, node.log()[-2000:]
        assert info["codec_name"] == "h264" and (info["width"], info["height"]) == (320, 240)
        assert info["avg_frame_rate"] == "10/1" or info["r_frame_rate"] == "10/1", info

        # The server goes away: the node keeps consuming frames, counts drops and says it reconnects.
        restarts = diag.num("restarts")
        nginx.stop()
        wait_for(lambda: diag.values.get("state") == "reconnecting", 30, what="state 'reconnecting'")
        in_before, drops_before = diag.num("frames_in"), diag.num("dropped_total")
        wait_for(lambda: diag.num("frames_in") > in_before + 10, 20, what="frames still consumed while offline")
        wait_for(lambda: diag.num("dropped_total") > drops_before, 20, what="drops counted while offline")
        assert node.alive()

        # The server returns on the same port: the stream resumes by itself.
        nginx.start()
        wait_for(
            lambda: diag.values.get("state") == "streaming" and diag.num("restarts") > restarts,
            40,
            what="stream resumed by a restarted encoder",
        )
        info = wait_for(lambda: probe(url), 60, interval=0.5, what="stream readable again after nginx restart")
        assert info["codec_name"] == "h264" and (info["width"], info["height"]) == (320, 240)
        assert node.alive()
    finally:
        pub.stop()


@pytest.mark.timeout(60)
def test_bad_url_is_rejected_at_start(start_node):
    node = start_node("rtmp_streamer_node", "-p", "url:=http://example/x")
    node.proc.wait(30)
    assert node.proc.returncode == 2
    assert "parameter 'url'" in node.log()


def test_example_param_files_validate():
    """config/rtmp_streamer.yaml, recorder.yaml and uploader.yaml name every parameter and validate."""
    import yaml
    from conftest import REPO

    from nano_vision_ros.nodes.recorder_node import RecorderConfig
    from nano_vision_ros.nodes.rtmp_streamer_node import StreamerConfig
    from nano_vision_ros.nodes.uploader_node import UploaderConfig

    for name, node, model in [
        ("rtmp_streamer", "rtmp_streamer_node", StreamerConfig),
        ("recorder", "recorder_node", RecorderConfig),
        ("uploader", "uploader_node", UploaderConfig),
    ]:
        params = yaml.safe_load((REPO / "config" / f"{name}.yaml").read_text())[node]["ros__parameters"]
        assert set(params) == set(model.model_fields) - {"token"}, name  # the token never goes in a file
        model.model_validate(params)


@pytest.mark.timeout(120)
def test_gstreamer_encoder_streams_and_scales(nginx):
    """The GStreamer pipeline (fdsrc ! x264enc ! flvmux ! rtmpsink) with frames of another size."""
    from nano_vision_ros.core.streaming import RtmpStreamer, StreamerOptions

    url = f"{nginx.url}/gst"
    st = RtmpStreamer(
        StreamerOptions(url=url, width=256, height=144, fps=10, gop=10, bitrate_kbps=200, encoder="gstreamer")
    )
    stop = threading.Event()

    def feed():
        i = 0
        while not stop.is_set():
            frame = np.zeros((240, 320, 3), np.uint8)
            frame[:, (i * 9) % 320 :] = 180
            st.push(frame)
            i += 1
            time.sleep(0.05)

    th = threading.Thread(target=feed, daemon=True)
    th.start()
    try:
        wait_for(lambda: st.state == "streaming", 30, what="gstreamer encoder streaming")
        info = wait_for(lambda: probe(url), 60, interval=0.5, what="gstreamer stream readable")
        assert st.encoder_name.startswith("gstreamer/")
        assert info["codec_name"] == "h264" and (info["width"], info["height"]) == (256, 144)
    finally:
        stop.set()
        th.join(2)
        st.close()
    assert st.frames_sent > 0 and st.skipped > 0  # 20 fps in, 10 fps out


def test_bad_frame_does_not_stop_the_writer():
    """A frame of the wrong kind is counted as an error; the writer keeps going (no server needed)."""
    from nano_vision_ros.core.streaming import RtmpStreamer, StreamerOptions

    started = []

    def fake_factory(settings):
        started.append(settings)
        return "fake/cat", ["sh", "-c", "cat > /dev/null"]  # an 'encoder' that swallows its input

    st = RtmpStreamer(
        StreamerOptions(url="rtmp://127.0.0.1:1/live/x", width=64, height=48, fps=50), command_factory=fake_factory
    )
    try:
        st.push(np.zeros((48, 64), np.float32))  # not BGR uint8
        wait_for(lambda: st.errors >= 1, 10, what="bad frame counted")
        for _ in range(5):
            st.push(np.zeros((48, 64, 3), np.uint8))
            time.sleep(0.05)
        wait_for(lambda: st.frames_sent >= 3, 10, what="good frames sent after the bad one")
        assert st.errors == 1  # the bad frame was not repeated
    finally:
        st.close()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("namespace,camera", [("/t_cam_ns", "t_cam_ns"), ("/t_site/t_cam_nested", "t_cam_nested")])
def test_url_names_the_camera_namespace(nginx, start_node, ros_node, namespace, camera):
    """The default url template streams /<ns>/image_raw to rtmp://…/live/<camera>; the camera is the
    namespace's last part (ros.naming.camera_name), so /site/cam0 streams as cam0 like /cam0."""
    node = start_node(
        "rtmp_streamer_node",
        "-r",
        f"__ns:={namespace}",
        "-p",
        "image_topic:=image_raw",
        "-p",
        f"url:={nginx.url}/{{camera}}",
        "-p",
        "fps:=10",
        "-p",
        "gop:=10",
        "-p",
        "width:=160",
        "-p",
        "height:=120",
        "-p",
        "encoder:=ffmpeg",
        "-p",
        "ffmpeg_codec:=libx264",
    )
    pub = Publisher(ros_node("ns_test"), f"{namespace}/image_raw")
    try:
        info = wait_for(
            lambda: probe(f"{nginx.url}/{camera}", timeout=15), 60, interval=0.5, what=f"stream at live/{camera}"
        )
        assert (info["width"], info["height"]) == (160, 120)
        assert node.alive()
    finally:
        pub.stop()


def test_stalled_input_keeps_the_stream_alive():
    """No new frame: the last picture is repeated (slowly after max_repeat), the age is reported."""
    from nano_vision_ros.core.streaming import RtmpStreamer, StreamerOptions

    st = RtmpStreamer(
        StreamerOptions(url="rtmp://127.0.0.1:1/live/x", width=64, height=48, fps=20, max_repeat=0.3, keepalive=0.2),
        command_factory=lambda s: ("fake/cat", ["sh", "-c", "cat > /dev/null"]),
    )
    try:
        st.push(np.zeros((48, 64, 3), np.uint8))
        wait_for(lambda: st.stats()["input_age_s"] > 1.0, 10, what="input age reported")
        sent = st.frames_sent
        wait_for(lambda: st.frames_sent > sent + 2, 10, what="keep-alive frames while the input is stalled")
        assert st.frames_in == 1
    finally:
        st.close()


def test_jetson_pipeline_shape():
    """The Jetson GStreamer pipeline (not runnable here): I420 -> nvvidconv -> NVMM NV12 -> nvv4l2h264enc,
    no CPU colour conversion."""
    s = EncoderSettings(width=1280, height=720, fps=30, bitrate_kbps=4000, gop=30)
    gst = " ".join(gstreamer_command("rtmp://h/live/a", s, "nvv4l2h264enc"))
    assert "format=i420 " in gst and "videoconvert" not in gst
    assert "! nvvidconv ! video/x-raw(memory:NVMM),format=NV12 ! nvv4l2h264enc bitrate=4000000" in gst
    assert "iframeinterval=30" in gst and "! h264parse" in gst


def test_stream_keeps_colours_and_geometry(tmp_path):
    """The encoder is fed I420 converted by the streamer (not BGR): blue, green, red and white blocks
    and a stripe come out of the stream where and as they went in; repeats of a stalled picture too."""
    from nano_vision_ros.core.streaming import RtmpStreamer, StreamerOptions

    out = tmp_path / "out.flv"  # ffmpeg's flv muxer writes a file as it would an RTMP url
    w, h = 250, 144  # half width 125: odd chroma rows catch a stride mistake
    img = np.zeros((h, w, 3), np.uint8)
    img[:, :60] = (255, 0, 0)
    img[:, 60:120] = (0, 255, 0)
    img[:, 120:180] = (0, 0, 255)
    img[:, 180:] = (255, 255, 255)
    img[100:110, :] = (0, 0, 0)
    st = RtmpStreamer(
        StreamerOptions(url="rtmp://unused/live/x", fps=10, gop=5, max_repeat=5.0),
        command_factory=lambda s: ("ffmpeg/libx264", ffmpeg_command(str(out), s, "libx264")),
    )
    try:
        st.push(img)  # one picture, then repeated by the writer while no new frame comes
        wait_for(lambda: st.frames_sent >= 15, 20, what="the picture sent and repeated")
    finally:
        st.close()
    frames = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(out), "-f", "rawvideo", "-pix_fmt", "bgr24", "-"],
        capture_output=True,
        check=True,
    ).stdout
    got = np.frombuffer(frames, np.uint8).reshape(-1, h, w, 3).astype(int)
    assert len(got) >= 10, f"{len(got)} frames in the stream"
    for frame in (got[0], got[-1]):
        for (x0, x1), bgr in (
            ((5, 55), (255, 0, 0)),
            ((65, 115), (0, 255, 0)),
            ((125, 175), (0, 0, 255)),
            ((185, 245), (255, 255, 255)),
        ):
            mean = frame[10:90, x0:x1].reshape(-1, 3).mean(axis=0)
            assert np.abs(mean - bgr).max() < 30, f"block {bgr} came out as {mean.round()}"
        assert frame[102:108, 5:245].mean() < 40, "the black stripe moved or vanished"
