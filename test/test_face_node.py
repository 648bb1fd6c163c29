"""face_node end to end over DDS: the node in its own process, frames and commands from here."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import cv2
import numpy as np
from conftest import call_service, wait_for
from sensor_msgs.msg import Image
from vision_msgs.msg import Detection2DArray

from nano_vision_ros.ros import qos
from nano_vision_ros.ros.image import numpy_to_imgmsg


class _Frames:
    """A still image published like a camera (sensor QoS, increasing stamps); swappable."""

    def __init__(self, node, topic: str, image: np.ndarray, rate: float = 4.0) -> None:
        self.pub = node.create_publisher(Image, topic, qos.SENSOR)
        self.image, self.count = image, 0
        self.timer = node.create_timer(1.0 / rate, self._tick)

    def _tick(self) -> None:
        msg = numpy_to_imgmsg(self.image, "bgr8")
        msg.header.frame_id = "cam_optical"
        msg.header.stamp.sec, msg.header.stamp.nanosec = 100 + self.count, 0
        self.count += 1
        self.pub.publish(msg)


class _Services:
    """face_node's services called from rclpy; replies in the MQTT reply's shape (ok, result, error)."""

    def __init__(self, node, ns: str) -> None:
        self.node, self.ns = node, ns

    def send(self, command: str, timeout: float = 60.0, **fields) -> dict:
        from nano_vision_msgs.srv import DeleteFace, EnrollFace, ListFaces

        srv = {"enroll_face": EnrollFace, "delete_face": DeleteFace, "list_faces": ListFaces}[command]
        r = call_service(self.node, srv, f"{self.ns}/face_node/{command}", timeout, **fields)
        return {"ok": r.success, "error": r.message, "response": r}


def _labels(msg: Detection2DArray) -> list[str]:
    return [d.results[0].hypothesis.class_id for d in msg.detections]


def test_enroll_recognise_unknown_delete_over_dds(start_node, ros_node, samples: Path, tmp_path: Path) -> None:
    ns = "/gate1"
    db = tmp_path / "faces.db"
    face = start_node(
        "face_node",
        "-r",
        f"__ns:={ns}",
        "-p",
        f"gallery:={db}",
        "-p",
        "detector.kind:=centerface",
        "-p",
        "match.reembed_interval:=1",
        "-p",
        "match.vote_window:=3",
        name="face",
    )
    node = ros_node("face_test_client")
    got: list[Detection2DArray] = []
    node.create_subscription(Detection2DArray, f"{ns}/faces", got.append, qos.RELIABLE)
    cmds = _Services(node, ns)
    astronaut = cv2.imread(str(samples / "astronaut.png"))
    messi = cv2.imread(str(samples / "messi5.jpg"))

    # enroll over the service (what the MQTT bridge calls), retried until the models are loaded
    jpg = cv2.imencode(".jpg", astronaut)[1].tobytes()

    def enrolled():
        r = cmds.send("enroll_face", name="Eileen", image=jpg)
        return r if r["ok"] or "not configured" not in (r["error"] or "") else None

    reply = wait_for(enrolled, 90, interval=1.0, what="enroll_face accepted")
    assert reply["ok"], reply
    assert reply["response"].name == "Eileen" and reply["response"].total >= 1
    assert stat.S_IMODE(os.stat(db).st_mode) == 0o600

    frames = _Frames(node, f"{ns}/image_raw", astronaut)
    wait_for(lambda: any("Eileen" in _labels(m) for m in got), 60, what="Eileen recognised")
    msg = next(m for m in got if "Eileen" in _labels(m))
    d = msg.detections[0]
    assert 0.9 < d.results[0].hypothesis.score <= 1.0 and d.id.isdigit()
    assert 150 < d.bbox.center.position.x < 300 and 60 < d.bbox.center.position.y < 180

    frames.image = messi
    n = len(got)
    wait_for(lambda: any(_labels(m) == ["unknown"] for m in got[n:]), 60, what="messi reported unknown")

    # refusals come back as errors and leave the node running
    two = np.hstack([astronaut, cv2.flip(astronaut, 1)])
    r = cmds.send("enroll_face", name="Twins", image=cv2.imencode(".jpg", two)[1].tobytes())
    assert not r["ok"] and "2 faces" in r["error"]
    r = cmds.send("enroll_face", name="Broken", image=b"not an image")
    assert not r["ok"] and "does not decode" in r["error"]
    r = cmds.send("list_faces")
    assert r["ok"] and [i.name for i in r["response"].identities] == ["Eileen"]

    r = cmds.send("delete_face", name="Eileen")
    assert r["ok"], r
    r = cmds.send("delete_face", name="Eileen")
    assert not r["ok"] and "no identity" in r["error"]
    frames.image = astronaut
    n = len(got)
    wait_for(lambda: any(_labels(m) == ["unknown"] for m in got[n:]), 60, what="deleted identity now unknown")
    assert b"Eileen" not in db.read_bytes()
    assert face.alive()


def test_bad_parameter_exits_2_and_missing_model_stays_up(start_node, ros_node, tmp_path: Path) -> None:
    bad = start_node("face_node", "-r", "__ns:=/bad1", "-p", "match.metric:=manhattan", name="bad")
    wait_for(lambda: not bad.alive(), 30, what="face_node exiting on a bad parameter")
    assert bad.proc.returncode == 2 and "parameter 'match.metric'" in bad.log()

    missing = start_node(
        "face_node",
        "-r",
        "__ns:=/gate9",
        "-p",
        f"gallery:={tmp_path / 'g.db'}",
        "-p",
        "embedding.kind:=onnx",
        "-p",
        f"embedding.model:={tmp_path / 'absent.onnx'}",
        name="missing",
    )
    node = ros_node("face_missing_client")
    cmds = _Services(node, "/gate9")
    wait_for(lambda: "cannot load face models" in missing.log(), 60, what="model error logged")
    r = cmds.send("list_faces")
    assert not r["ok"] and "not configured" in r["error"] and "absent.onnx" in r["error"]
    assert missing.alive()


def test_face_node_on_the_real_camera_node(start_node, ros_node, samples: Path, tmp_path: Path) -> None:
    """camera_node (a still image as its source) -> face_node; the gallery enrolled by the CLI."""
    import shutil
    import subprocess
    import sys

    db = tmp_path / "cam.db"
    cli = Path(sys.executable).parent / "nano-vision"
    r = subprocess.run(
        [str(cli), "faces", "--gallery", str(db), "enroll", "--name", "Eileen", str(samples / "astronaut.png")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    src = shutil.copy(samples / "astronaut.png", tmp_path / "astronaut.png")
    ns = "/lobby"
    start_node("camera_node", "-r", f"__ns:={ns}", "-p", f"source:={src}", "-p", "fps:=4.0", name="camera")
    start_node("face_node", "-r", f"__ns:={ns}", "-p", f"gallery:={db}", name="face")
    node = ros_node("face_cam_client")
    got: list[Detection2DArray] = []
    node.create_subscription(Detection2DArray, f"{ns}/faces", got.append, qos.RELIABLE)
    wait_for(lambda: any("Eileen" in _labels(m) for m in got), 90, what="Eileen from the camera node's frames")
    ids = {m.detections[0].id for m in got if m.detections}
    assert len(ids) == 1  # one face, one track
