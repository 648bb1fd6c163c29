"""`ros2 launch nano_vision_ros site.launch.py` for real, from a `colcon build` install space: the
demo site (on free ports) produces frames, detections and MQTT events, and one SIGINT (Ctrl-C: the
whole process group) stops every node and every server it started, none left behind."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time

import paho.mqtt.client as mqtt
import pytest
from conftest import free_port, wait_for
from ros2_tools import VENV, demo_site, workspace

# the first test of a change builds the colcon workspace (minutes on a loaded machine)
pytestmark = pytest.mark.timeout(1500)


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_ros2_launch_site_runs_and_sigint_leaves_nothing(tmp_path, ros_node):
    env = workspace()
    import psutil  # installed with the ros2 tools (ros2cli needs it)
    from sensor_msgs.msg import Image
    from vision_msgs.msg import Detection2DArray

    from nano_vision_ros.ros import qos

    mqtt_port, rtmp_port, recv_port = free_port(), free_port(), free_port()
    site = demo_site(tmp_path, mqtt_port, rtmp_port, recv_port)
    log = open(tmp_path / "launch.log", "w+")  # noqa: SIM115 - read back at the end
    launch = subprocess.Popen(
        [str(VENV / "bin" / "ros2"), "launch", "nano_vision_ros", "site.launch.py", f"site_config:={site}"],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=tmp_path,
        start_new_session=True,
    )
    frames, dets, events = [], [], []
    lock = threading.Lock()
    node = ros_node("launch_test_listener")
    node.create_subscription(Image, "/cam0/image_raw", lambda m: frames.append(m.header.stamp), qos.SENSOR)
    node.create_subscription(
        Detection2DArray, "/cam0/detections", lambda m: dets.append(len(m.detections)), qos.RELIABLE
    )

    def on_message(_c, _u, msg):
        with lock:
            events.append(json.loads(msg.payload))

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="launch-test")
    client.on_message = on_message
    seen: dict[int, psutil.Process] = {}

    def note_tree() -> None:
        try:
            for p in psutil.Process(launch.pid).children(recursive=True):
                seen.setdefault(p.pid, p)
        except psutil.NoSuchProcess:
            pass

    def log_text() -> str:
        log.flush()
        return (tmp_path / "launch.log").read_text(errors="replace")

    try:

        def connected():
            note_tree()
            assert launch.poll() is None, log_text()[-4000:]
            try:
                client.connect("127.0.0.1", mqtt_port)
                return True
            except OSError:
                return False

        wait_for(connected, timeout=90, interval=0.5, what="the launched mosquitto")
        client.subscribe("nano_vision/demo-site/demo-device/events", qos=1)
        client.loop_start()
        wait_for(lambda: len(frames) >= 5, timeout=120, what="frames on /cam0/image_raw")
        wait_for(lambda: any(n > 0 for n in dets), timeout=120, what="detections on /cam0/detections")
        wait_for(lambda: events, timeout=120, what="an event over MQTT from the launched site")
        assert events[0]["camera"] == "cam0" and events[0]["site_id"] == "demo-site"
        note_tree()
        names = {p.name() for p in seen.values() if p.is_running()}
        assert {"mosquitto", "nginx"} <= names, names
        for exe in ("camera_node", "detector_node", "events_node", "mqtt_bridge_node", "uploader_node"):
            assert any(exe in " ".join(p.cmdline()) for p in seen.values() if p.is_running()), exe
    finally:
        client.loop_stop()
        client.disconnect()
        note_tree()
        os.killpg(launch.pid, signal.SIGINT)  # what Ctrl-C in the terminal does
        try:
            launch.wait(90)
        except subprocess.TimeoutExpired:
            os.killpg(launch.pid, signal.SIGKILL)
            launch.wait(10)
            raise AssertionError("ros2 launch did not stop within 90 s of SIGINT:\n" + log_text()[-4000:]) from None

    def leftovers() -> list[str]:
        left = []
        for p in seen.values():
            try:
                if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                    left.append(f"{p.pid} {' '.join(p.cmdline())[:120]}")
            except psutil.NoSuchProcess:
                pass
        return left

    deadline = time.monotonic() + 30
    while leftovers() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(seen) >= 8, [p.pid for p in seen.values()]
    assert not leftovers(), leftovers()
    group = [p.pid for p in psutil.process_iter() if _pgid(p.pid) == launch.pid]
    assert not group, group
    for port in (mqtt_port, rtmp_port, recv_port):
        assert not _listening(port), f"port {port} still served after the launch stopped"
    text = log_text()
    assert "Traceback" not in text, text[-4000:]


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except OSError:
        return None
