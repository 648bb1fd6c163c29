"""events_node in its own process: faces/plates topics, clip notices and upload states become
schema-valid `update` events; bad rules stop it with exit code 2 naming the parameter."""

from __future__ import annotations

import threading

import numpy as np
from conftest import wait_for

from nano_vision_ros.core.events import validate_event

RULES = """
rules:
  - {name: faces, type: face, watchlist: [mallory], report_known: false, report_unknown: false}
  - {name: gate, type: plate, deny: ["沪B99999"], report_unlisted: false, end_after: 0.3}
"""


def test_faces_plates_and_clip_updates(start_node, ros_node, tmp_path):
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from std_msgs.msg import Header
    from vision_msgs.msg import Detection2DArray

    from nano_vision_msgs.msg import Clip, ClipStatus, Event
    from nano_vision_ros.core.detection.types import Detections
    from nano_vision_ros.ros.detections import to_msg
    from nano_vision_ros.ros.events import event_from_msg

    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    node = start_node(
        "events_node",
        "-r",
        "__ns:=/gate",
        "-p",
        f"rules:={rules}",
        "-p",
        "snapshots:=false",
        "-p",
        "site_id:=yard",
        "-p",
        "device_id:=jetson1",
        name="events",
    )
    n = ros_node("tester")
    rel = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
    faces = n.create_publisher(Detection2DArray, "/gate/faces", rel)
    plates = n.create_publisher(Detection2DArray, "/gate/plates", rel)
    clips = n.create_publisher(Clip, "/gate/clips", rel)
    status = n.create_publisher(ClipStatus, "/gate/clip_status", rel)
    got: list[dict] = []
    lock = threading.Lock()

    def on_event(msg):
        with lock:
            got.append(event_from_msg(msg).to_json())

    n.create_subscription(
        Event,
        "/gate/events",
        on_event,
        QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL),
    )
    for p in (faces, plates, clips, status):
        wait_for(lambda p=p: p.get_subscription_count() > 0, 30, what=f"events_node subscribed to {p.topic_name}")

    def dets(labels, tids):
        k = len(labels)
        return Detections(
            np.tile([[10, 10, 50, 50]], (k, 1)), np.full(k, 0.9), np.arange(k), list(labels), np.array(tids)
        )

    h = Header(frame_id="cam")
    h.stamp = n.get_clock().now().to_msg()
    faces.publish(to_msg(dets(["alice", "mallory", "unknown"], [1, 2, 3]), h))
    plates.publish(to_msg(dets(["沪B·99999", "粤C11111"], [-1, -1]), h))
    wait_for(lambda: {e["type"] for e in got} >= {"face_watchlist", "plate_denied"}, 20, what="face and plate events")
    wait_for(lambda: any(e["state"] == "end" and e["type"] == "plate_denied" for e in got), 20, what="plate event end")
    with lock:
        assert {e["type"] for e in got} == {"face_watchlist", "plate_denied"}
        plate = next(e for e in got if e["type"] == "plate_denied")
        face = next(e for e in got if e["type"] == "face_watchlist")
    assert plate["plate"]["text"] == "沪B99999" and face["face"]["identity"] == "mallory"
    assert (face["site_id"], face["device_id"], face["camera"]) == ("yard", "jetson1", "gate")
    ids = [face["event_id"], plate["event_id"]]
    clips.publish(Clip(path="/clips/bad.mp4", sha256="not hex", event_ids=ids))  # refused, counted, logged
    clips.publish(Clip(event_ids=ids, path="/clips/g.mp4", duration=60.0, size=123456, sha256="0" * 64))
    for state in (ClipStatus.STATE_QUEUED, ClipStatus.STATE_UPLOADING, ClipStatus.STATE_DONE):
        status.publish(
            ClipStatus(
                path="/clips/g.mp4",
                sha256="0" * 64,
                state=state,
                remote="nv://backend/g.mp4" if state == ClipStatus.STATE_DONE else "",
            )
        )
    wait_for(
        lambda: sum(e.get("reason") == "clip_status" and e["clip"]["upload_state"] == "done" for e in got) == 2,
        20,
        what="clip upload done updates for both events",
    )
    with lock:
        evs = list(got)
    for e in evs:
        validate_event(e)
    plate_seq = [
        (e["state"], e.get("reason"), e["clip"]["upload_state"] if e["clip"] else None)
        for e in evs
        if e["event_id"] == plate["event_id"]
    ]
    assert plate_seq == [
        ("new", None, None),
        ("end", None, None),
        ("update", "clip", "pending"),
        ("update", "clip_status", "queued"),
        ("update", "clip_status", "uploading"),
        ("update", "clip_status", "done"),
    ]
    assert [e["sequence"] for e in evs if e["event_id"] == plate["event_id"]] == [0, 1, 2, 3, 4, 5]
    done = [e for e in evs if e["event_id"] == plate["event_id"]][-1]
    assert done["clip"]["remote"] == "nv://backend/g.mp4" and done["clip"]["size"] == 123456
    assert "clip notice ignored" in node.log()
    assert node.alive()


def test_bad_rules_exit_2_naming_the_parameter(start_node, tmp_path):
    bad = tmp_path / "rules.yaml"
    bad.write_text("rules: [{name: pit, type: intrusion}]")
    p = start_node("events_node", "-p", f"rules:={bad}", name="bad")
    wait_for(lambda: not p.alive(), 30, what="events_node exit")
    assert p.proc.returncode == 2
    assert "parameter 'rules'" in p.log() and "key 'rules.0.zone' missing" in p.log()


def test_example_params_file_loads(start_node, tmp_path):
    from conftest import REPO

    p = start_node(
        "events_node",
        "--params-file",
        str(REPO / "config" / "events.yaml"),
        "-r",
        "__ns:=/gate",
        "-p",
        f"snapshot_dir:={tmp_path}",
        name="example",
    )
    wait_for(lambda: "rules (" in p.log(), 30, what="events_node started with config/events.yaml")
    assert "camera gate: 7 rules (hardhat, vest, smoke, fire, mask, faces, plates)" in p.log()
    assert p.alive()
