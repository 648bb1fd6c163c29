"""The README's demo, end to end: config/site.yaml + config/site_params.yaml as shipped (only
ports, folders and clip lengths changed for the test) run by `nano-vision site`, with the local
mosquitto, nginx-rtmp and clip receiver it starts. An external MQTT subscriber gets schema-valid
events and the retained `online` status, the annotated stream is readable over RTMP as H.264, and
an event clip reaches the receiver intact."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import jsonschema
import numpy as np
import paho.mqtt.client as mqtt
from conftest import REPO, demo_site_files, free_port, wait_for

NANO_VISION = str(Path(sys.executable).parent / "nano-vision")


def test_demo_site_end_to_end(tmp_path):
    mqtt_port, rtmp_port, recv_port, metrics_port = free_port(), free_port(), free_port(), free_port()
    site = demo_site_files(tmp_path, mqtt_port, rtmp_port, recv_port, metrics_port)
    schema = json.loads((REPO / "src" / "nano_vision_ros" / "schemas" / "event.schema.json").read_text())
    log = open(tmp_path / "site.log", "w+")  # noqa: SIM115 - read back at the end
    runner = subprocess.Popen(
        [NANO_VISION, "site", str(site), "--workdir", str(tmp_path / "work")],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        cwd=tmp_path,
    )
    events: list[dict] = []
    status: list[str] = []
    lock = threading.Lock()

    def on_message(_c, _u, msg):
        with lock:
            if msg.topic.endswith("/events"):
                events.append(json.loads(msg.payload))
            elif msg.topic.endswith("/status"):
                status.append(msg.payload.decode())

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="demo-test")
    client.on_message = on_message
    try:

        def connected():
            try:
                client.connect("127.0.0.1", mqtt_port)
                return True
            except OSError:
                return False

        wait_for(connected, timeout=30, interval=0.3, what="the demo's mosquitto")
        client.subscribe("nano_vision/demo-site/demo-device/#", qos=1)
        client.loop_start()
        wait_for(lambda: "online" in status, timeout=60, what="retained online status")
        wait_for(lambda: any(e["state"] == "new" for e in events), timeout=90, what="a new event over MQTT")

        # the annotated live stream: H.264 at the camera's size
        probe = subprocess.run(
            [
                "ffprobe",
                "-v",
                "error",
                "-rw_timeout",
                "15000000",
                "-select_streams",
                "v:0",
                "-show_entries",
                "stream=codec_name,width,height",
                "-of",
                "json",
                f"rtmp://127.0.0.1:{rtmp_port}/live/cam0",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        stream = json.loads(probe.stdout or "{}").get("streams", [{}])[0]
        assert (stream.get("codec_name"), stream.get("width"), stream.get("height")) == ("h264", 768, 576), probe.stderr
        # ... drawn by the events node: the walkway zone's top edge (y = 400, config/site_params.yaml) is a
        # white line across the frame, and the legend panel sits top left (docs/VIEWS.md)
        grab = subprocess.run(
            [
                "ffmpeg",
                "-v",
                "error",
                "-rw_timeout",
                "15000000",
                "-i",
                f"rtmp://127.0.0.1:{rtmp_port}/live/cam0",
                "-frames:v",
                "1",
                "-f",
                "rawvideo",
                "-pix_fmt",
                "bgr24",
                "-",
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        frame = np.frombuffer(grab.stdout, np.uint8)[: 768 * 576 * 3].reshape(576, 768, 3)
        white = (frame[396:404, 20:740] > 170).all(axis=2).mean(axis=1).max()
        assert white > 0.6, f"walkway zone edge not on the stream ({white:.2f} of the row white)"
        assert frame[2:40, 2:150].mean() < frame[200:300, 2:150].mean(), "legend panel (dark) top left"

        # an event clip recorded, uploaded, stored intact
        received = tmp_path / "var" / "received"
        clips = wait_for(lambda: [p for p in received.rglob("*.mp4")], timeout=120, what="an uploaded clip")
        local = {p.name: p for p in (tmp_path / "var" / "clips").glob("*.mp4")}
        for c in clips:
            assert hashlib.sha256(c.read_bytes()).hexdigest() == hashlib.sha256(local[c.name].read_bytes()).hexdigest()
        wait_for(
            lambda: any((e.get("clip") or {}).get("upload_state") == "done" for e in events),
            timeout=60,
            what="an event update saying its clip is uploaded",
        )

        # Prometheus metrics of the running demo: every node up, the camera and detector at a rate
        def scraped() -> dict[tuple[str, str], float]:
            from prometheus_client.parser import text_string_to_metric_families

            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as r:
                    text = r.read().decode()
            except OSError:
                return {}
            return {
                (s.name, s.labels.get("node", "")): s.value
                for fam in text_string_to_metric_families(text)
                for s in fam.samples
            }

        def all_up() -> dict[tuple[str, str], float]:
            m = scraped()
            want = [
                "/cam0/camera_node",
                "/cam0/detector_node",
                "/cam0/events_node",
                "/cam0/rtmp_streamer_node",
                "/cam0/recorder_node",
                "/mqtt_bridge_node",
                "/uploader_node",
            ]
            ok = all(m.get(("nano_vision_node_up", n)) == 1 for n in want) and all(
                m.get(("nano_vision_node_fps", n), 0) > 0 for n in want[:2]
            )
            return m if ok else {}

        wait_for(all_up, timeout=60, interval=1.0, what="/metrics: every demo node up, camera and detector fps > 0")
    finally:
        client.loop_stop()
        runner.send_signal(signal.SIGINT)
        try:
            code = runner.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(runner.pid, signal.SIGKILL)
            code = None
        log.seek(0)
        text = log.read()
        sys.stderr.write(text[-6000:])
    with lock:
        for e in events:
            jsonschema.validate(e, schema)
        assert {e["camera"] for e in events} == {"cam0"}
    assert code == 0, "the runner stops cleanly on Ctrl-C"
    assert "start-up failed" not in text and "Traceback" not in text
