"""The real `ros2` command line against the site started by `ros2 launch` from a colcon install
space: topic echo of events and detections, param get/set of a detector threshold (it takes effect,
a typo is refused with help), `ros2 service call` of set_threshold (takes effect, same parameter)
and of enroll_face / list_faces (on a face_node started by `ros2 run`), lifecycle
deactivate/activate."""

from __future__ import annotations

import os
import signal
import subprocess

import pytest
import yaml
from conftest import free_port, wait_for
from ros2_tools import VENV, demo_site, ros2, workspace

# the first test of a change builds the colcon workspace (minutes on a loaded machine)
pytestmark = pytest.mark.timeout(1500)


def _interrupt(proc: subprocess.Popen, timeout: float) -> None:
    """SIGINT to the process group started for `proc` (Ctrl-C), SIGKILL if it is not gone in `timeout`."""
    os.killpg(proc.pid, signal.SIGINT)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    env = workspace()
    tmp = tmp_path_factory.mktemp("ros2_cli")
    path = demo_site(tmp, free_port(), free_port(), free_port())
    log = open(tmp / "launch.log", "w+")  # noqa: SIM115 - read back at the end
    launch = subprocess.Popen(
        [str(VENV / "bin" / "ros2"), "launch", "nano_vision_ros", "site.launch.py", f"site_config:={path}"],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=tmp,
        start_new_session=True,
    )

    def detector_active():
        assert launch.poll() is None, (tmp / "launch.log").read_text()[-4000:]
        r = ros2("lifecycle", "get", "/cam0/detector_node", env=env, timeout=60)
        return r.returncode == 0 and r.stdout.startswith("active")

    try:
        wait_for(detector_active, timeout=180, interval=2, what="/cam0/detector_node active")
        yield env
    finally:
        _interrupt(launch, 90)
        ros2("daemon", "stop", env=env, timeout=60)  # the CLI may have spawned one for this domain
        log.close()


def test_topic_echo_events_and_detections(site):
    r = ros2(
        "topic",
        "echo",
        "--once",
        "--qos-reliability",
        "reliable",
        "/cam0/detections",
        "vision_msgs/msg/Detection2DArray",
        env=site,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    msg = yaml.safe_load(r.stdout.split("\n---")[0])
    assert msg["header"]["frame_id"] and "detections" in msg
    # events: typed nano_vision_msgs/Event, transient local — the latest event reaches a late subscriber
    r = ros2(
        "topic",
        "echo",
        "--once",
        "--full-length",
        "--qos-durability",
        "transient_local",
        "--qos-reliability",
        "reliable",
        "/cam0/events",
        "nano_vision_msgs/msg/Event",
        env=site,
        timeout=180,
    )
    assert r.returncode == 0, r.stderr
    event = yaml.safe_load(r.stdout.split("\n---")[0])
    assert event["camera"] == "cam0" and event["state"] in (0, 1, 2) and event["schema_version"] == "1.1"
    assert event["stamp"]["sec"] > 0 and isinstance(event["boxes"], list) and len(event["event_id"]) == 36


def test_param_set_threshold_takes_effect(site):
    r = ros2("param", "set", "/cam0/detector_node", "score_threshold", "0.4", env=site)
    assert r.returncode == 0 and "Set parameter successful" in r.stdout, r.stdout + r.stderr
    r = ros2("param", "get", "/cam0/detector_node", "score_threshold", env=site)
    assert "0.4" in r.stdout, r.stdout + r.stderr
    assert abs(_labels_threshold(site) - 0.4) < 1e-6  # in effect: the latched class map carries the threshold in use
    # a bad value is refused with the reason, a misspelled name with the closest names
    r = ros2("param", "set", "/cam0/detector_node", "score_threshold", "7.0", env=site)
    out = r.stdout + r.stderr
    assert "Setting parameter failed: parameter 'score_threshold'" in out, out
    r = ros2("param", "set", "/cam0/detector_node", "score_treshold", "0.3", env=site)
    assert (
        "node /cam0/detector_node: unknown parameter 'score_treshold' (did you mean 'score_threshold'"
        in r.stdout + r.stderr
    ), r.stdout + r.stderr


def _labels_threshold(site) -> float:
    r = ros2(
        "topic",
        "echo",
        "--once",
        "--qos-durability",
        "transient_local",
        "--qos-reliability",
        "reliable",
        "/cam0/detections/labels",
        "vision_msgs/msg/LabelInfo",
        env=site,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    return float(yaml.safe_load(r.stdout.split("\n---")[0])["threshold"])


def test_service_call_set_threshold_takes_effect(site):
    r = ros2(
        "service",
        "call",
        "/cam0/detector_node/set_threshold",
        "nano_vision_msgs/srv/SetThreshold",
        "{score_threshold: 0.35}",
        env=site,
    )
    assert r.returncode == 0 and "success=True" in r.stdout, r.stdout + r.stderr
    assert abs(_labels_threshold(site) - 0.35) < 1e-6  # in effect: the latched class map carries it
    r = ros2("param", "get", "/cam0/detector_node", "score_threshold", env=site)
    assert "0.35" in r.stdout, r.stdout + r.stderr  # one path: the service set the parameter
    r = ros2(
        "service",
        "call",
        "/cam0/detector_node/set_threshold",
        "nano_vision_msgs/srv/SetThreshold",
        "{score_threshold: 7.0}",
        env=site,
    )
    assert "success=False" in r.stdout and "parameter 'score_threshold'" in r.stdout, r.stdout + r.stderr


def test_service_call_enroll_face(site, tmp_path, samples):
    """A face_node started with `ros2 run` beside the launched site (its own namespace: no frames)."""
    import shutil

    enroll = tmp_path / "enroll"
    enroll.mkdir()
    shutil.copy(samples / "astronaut.png", enroll / "eileen.png")
    with open(tmp_path / "face.log", "w+") as log:
        face = subprocess.Popen(
            [
                str(VENV / "bin" / "ros2"),
                "run",
                "nano_vision_ros",
                "face_node",
                "--ros-args",
                "-r",
                "__ns:=/gate",
                "-p",
                f"gallery:={tmp_path / 'faces.db'}",
                "-p",
                "detector.kind:=centerface",
                "-p",
                f"allowed_image_dirs:=[{enroll}]",
                "-p",
                "command_timeout:=60.0",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=site,
            start_new_session=True,
        )
        try:
            wait_for(
                lambda: face.poll() is None and "faces: centerface" in (tmp_path / "face.log").read_text(),
                180,
                interval=1,
                what="face_node configured",
            )
            r = ros2(
                "service",
                "call",
                "/gate/face_node/enroll_face",
                "nano_vision_msgs/srv/EnrollFace",
                f"{{name: Eileen, image_path: '{enroll / 'eileen.png'}'}}",
                env=site,
                timeout=180,
            )
            assert r.returncode == 0 and "success=True" in r.stdout and "name='Eileen'" in r.stdout, r.stdout + r.stderr
            r = ros2("service", "call", "/gate/face_node/list_faces", "nano_vision_msgs/srv/ListFaces", env=site)
            assert "success=True" in r.stdout and "name='Eileen'" in r.stdout, r.stdout + r.stderr
        finally:
            _interrupt(face, 30)


def test_lifecycle_deactivate_activate(site):
    r = ros2("lifecycle", "set", "/cam0/detector_node", "deactivate", env=site)
    assert r.returncode == 0 and "Transitioning successful" in r.stdout, r.stdout + r.stderr
    # `lifecycle get` itself may time out on a loaded machine: ask again until it answers
    wait_for(
        lambda: ros2("lifecycle", "get", "/cam0/detector_node", env=site).stdout.startswith("inactive"),
        timeout=120,
        interval=2,
        what="/cam0/detector_node inactive",
    )
    r = ros2("lifecycle", "set", "/cam0/detector_node", "activate", env=site)
    assert r.returncode == 0 and "Transitioning successful" in r.stdout, r.stdout + r.stderr
    wait_for(
        lambda: ros2("lifecycle", "get", "/cam0/detector_node", env=site).stdout.startswith("active"),
        timeout=120,
        interval=2,
        what="/cam0/detector_node active again",
    )
    r = ros2(
        "topic",
        "echo",
        "--once",
        "--qos-reliability",
        "reliable",
        "/cam0/detections",
        "vision_msgs/msg/Detection2DArray",
        env=site,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr


def test_interface_show_event(site):
    r = ros2("interface", "show", "nano_vision_msgs/msg/Event", env=site)
    assert r.returncode == 0, r.stderr
    assert "vision_msgs/BoundingBox2D[] boxes" in r.stdout and "ClipRef[] clips" in r.stdout
