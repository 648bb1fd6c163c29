"""nano_vision_msgs: built into the venv by the set-up (importable from .venv/bin/python), built by
`colcon build` beside nano_vision_ros, and shown by the real `ros2 interface show`. The event
message covers every field of today's JSON event schema."""

from __future__ import annotations

import json

import pytest
from conftest import REPO
from ros2_tools import ros2, ws_path

# the first test of a change builds the colcon workspace (minutes on a loaded machine)
pytestmark = pytest.mark.timeout(1500)


def test_venv_imports_every_interface():
    from vision_msgs.msg import BoundingBox2D

    from nano_vision_msgs.msg import Clip, ClipRef, ClipStatus, Event, FaceIdentity
    from nano_vision_msgs.srv import (
        DeleteFace,
        EnrollFace,
        ListFaces,
        ReloadConfig,
        SetThreshold,
        Snapshot,
    )

    ev = Event(type=Event.TYPE_FIRE, state=Event.STATE_NEW, boxes=[BoundingBox2D()], clips=[ClipRef()])
    assert ev.dwell < 0 and ev.count < 0 and ev.clips[0].upload_state == ClipRef.UPLOAD_PENDING
    assert ClipStatus.STATE_FAILED == 3 and Clip().event_ids == [] and FaceIdentity().name == ""
    req = SetThreshold.Request()
    assert req.score_threshold < 0 and req.nms_threshold < 0  # "unchanged" unless given
    for srv in (EnrollFace, DeleteFace, ListFaces, ReloadConfig, Snapshot):
        assert hasattr(srv.Response(), "success") and hasattr(srv.Response(), "message")


def test_event_message_covers_the_json_schema():
    """Every JSON event field (of the event model the schema is generated from) has a typed
    counterpart in the message (named the same, or as listed here)."""
    from typing import get_args

    from nano_vision_msgs.msg import ClipRef, Event
    from nano_vision_ros.core.events.model import (
        ClipInfo,
        FaceInfo,
        PlateInfo,
        SnapshotRef,
    )
    from nano_vision_ros.core.events.model import Event as EventModel

    fields = set(Event.get_fields_and_field_types())
    renamed = {
        "dwell_s": "dwell",
        "face": "face_identity",
        "plate": "plate_text",
        "snapshot": "snapshot_path",
        "clip": "clips",
        "evidence": "extra",
    }  # PPE evidence: rule-specific key/values
    for name in EventModel.model_fields:
        assert renamed.get(name, name) in fields, name
    for name in FaceInfo.model_fields:
        assert f"face_{name}" in fields, name
    for name in PlateInfo.model_fields:
        assert {"list": "plate_list"}.get(name, f"plate_{name}") in fields, name
    for name in SnapshotRef.model_fields:
        assert f"snapshot_{name}" in fields, name
    assert set(ClipInfo.model_fields) <= set(ClipRef.get_fields_and_field_types())
    # the enums of the model (and so of the schema) are constants of the message
    schema = json.loads((REPO / "src" / "nano_vision_ros" / "schemas" / "event.schema.json").read_text())
    assert schema["properties"]["type"]["enum"] == list(get_args(EventModel.model_fields["type"].annotation))
    for t in schema["properties"]["type"]["enum"]:
        assert hasattr(Event, f"TYPE_{t.upper()}"), t
    for s in schema["properties"]["state"]["enum"]:
        assert hasattr(Event, f"STATE_{s.upper()}"), s
    for s in get_args(ClipInfo.model_fields["upload_state"].annotation):
        assert hasattr(ClipRef, f"UPLOAD_{s.upper()}"), s
    assert Event.get_fields_and_field_types()["stamp"] == "builtin_interfaces/Time"
    assert Event.get_fields_and_field_types()["boxes"] == "sequence<vision_msgs/BoundingBox2D>"


def test_colcon_builds_both_packages_and_ros2_interface_show():
    install = ws_path() / "install"
    assert (install / "nano_vision_msgs" / "share" / "nano_vision_msgs" / "msg" / "Event.msg").is_file()
    assert (
        install / "nano_vision_ros" / "share" / "ament_index" / "resource_index" / "packages" / "nano_vision_ros"
    ).is_file()
    r = ros2("interface", "show", "nano_vision_msgs/msg/Event")
    assert r.returncode == 0, r.stderr
    assert "builtin_interfaces/Time stamp" in r.stdout and "vision_msgs/BoundingBox2D[] boxes" in r.stdout
    assert "uint8 TYPE_FIRE=4" in r.stdout
    r = ros2("interface", "package", "nano_vision_msgs")
    names = set(r.stdout.split())
    for n in (
        "msg/Event",
        "msg/Clip",
        "msg/ClipRef",
        "msg/ClipStatus",
        "srv/EnrollFace",
        "srv/DeleteFace",
        "srv/ListFaces",
        "srv/SetThreshold",
        "srv/Snapshot",
        "srv/ReloadConfig",
    ):
        assert f"nano_vision_msgs/{n}" in names, (n, r.stdout)
    # the interface package of the install space is the one found first (not the venv's copy)
    r = ros2("pkg", "prefix", "nano_vision_msgs")
    assert r.stdout.strip() == str(install / "nano_vision_msgs"), r.stdout


def test_site_rviz_shows_the_demo_cameras_images():
    """rviz2 cannot run here (not installable without a ROS desktop install): config/site.rviz is
    checked as a file. Its Image displays subscribe what the demo site publishes — the camera's
    frames and the annotated frames (the events node's overlay, or the detector's with annotate) —
    with QoS that matches those sensor-QoS publishers, and its fixed frame is the demo camera's
    frame_id. Detections themselves (vision_msgs) have no display among rviz2's default plugins;
    they are drawn into image_annotated."""
    import yaml

    rviz = yaml.safe_load((REPO / "config" / "site.rviz").read_text())
    manager = rviz["Visualization Manager"]
    images = {d["Topic"]["Value"]: d for d in manager["Displays"] if d["Class"] == "rviz_default_plugins/Image"}
    site = yaml.safe_load((REPO / "config" / "site.yaml").read_text())
    cam = site["cameras"][0]
    assert {"camera", "detector"} <= set(cam["nodes"])
    assert set(images) == {f"/{cam['name']}/image_raw", f"/{cam['name']}/image_annotated"}
    for d in images.values():
        assert d["Enabled"] and d["Topic"]["Reliability Policy"] == "Best Effort", d
        assert d["Topic"]["Durability Policy"] == "Volatile" and d["Topic"]["Depth"] >= 1, d
    params = yaml.safe_load((REPO / "config" / "site_params.yaml").read_text())
    annotated = [p["ros__parameters"] for k, p in params.items() if k.endswith(("events_node", "detector_node"))]
    assert any(p.get("annotated_topic") == "image_annotated" or p.get("annotate") for p in annotated), annotated
    assert manager["Global Options"]["Fixed Frame"] == params["/**/camera_node"]["ros__parameters"]["frame_id"]
