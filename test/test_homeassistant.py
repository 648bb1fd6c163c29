"""core.mqtt.homeassistant: discovery configs, sensor states and the snapshot-file policy (no ROS, no broker)."""

from __future__ import annotations

import json

import pytest

from nano_vision_ros.core.events import EVENT_TYPES
from nano_vision_ros.core.mqtt import homeassistant as ha


def test_default_types_are_every_rule_types_events():
    assert ha.DEFAULT_TYPES == EVENT_TYPES
    for typ in ("count", "face_known", "plate_read", "object", "no_hardhat", "loitering"):
        assert typ in ha.DEFAULT_TYPES


def test_discovery_configs_per_camera_and_type():
    cfgs = dict(
        ha.discovery_configs(
            base="nano_vision/s/d",
            prefix="homeassistant",
            site_id="s",
            device_id="d",
            status_topic="nano_vision/s/d/status",
            cameras=["cam0"],
            types=["fire", "count"],
        )
    )
    assert sorted(cfgs) == [
        "homeassistant/binary_sensor/nv_s_d/cam0_count/config",
        "homeassistant/binary_sensor/nv_s_d/cam0_fire/config",
        "homeassistant/sensor/nv_s_d/cam0_last_event/config",
    ]
    fire = json.loads(cfgs["homeassistant/binary_sensor/nv_s_d/cam0_fire/config"])
    assert fire["state_topic"] == "nano_vision/s/d/cam0/fire/state" and fire["device_class"] == "smoke"
    assert fire["availability_topic"] == "nano_vision/s/d/status" and fire["device"]["identifiers"] == ["nv_s_d"]


def test_sensor_is_on_while_any_event_is_open():
    act = ha.ActiveEvents()
    assert act.update({"camera": "cam0", "type": "fire", "state": "new", "event_id": "a"}) == ("cam0", "fire", True)
    assert act.update({"camera": "cam0", "type": "fire", "state": "new", "event_id": "b"}) == ("cam0", "fire", True)
    assert act.update({"camera": "cam0", "type": "fire", "state": "end", "event_id": "a"}) == ("cam0", "fire", True)
    assert act.update({"camera": "cam0", "type": "fire", "state": "end", "event_id": "b"}) == ("cam0", "fire", False)
    assert act.update({"camera": "cam/0", "type": "fire", "state": "new", "event_id": "c"}) is None  # not a topic level


def test_snapshot_policy_publishes_only_small_jpegs(tmp_path):
    jpg = tmp_path / "e.jpg"
    jpg.write_bytes(b"\xff\xd8" + b"x" * 100)
    assert ha.snapshot_to_publish({"path": str(jpg), "camera": "cam0"}, 1000) == ("cam0", jpg.read_bytes())
    assert ha.snapshot_to_publish({"path": str(jpg), "camera": "cam0"}, 50) is None  # too big
    other = tmp_path / "secret.txt"
    other.write_text("token")
    assert ha.snapshot_to_publish({"path": str(other), "camera": "cam0"}, 1000) is None  # not a JPEG
    assert ha.snapshot_to_publish({"path": str(jpg), "camera": "../x"}, 1000) is None
    assert ha.snapshot_to_publish("nope", 1000) is None
    with pytest.raises(OSError):
        ha.snapshot_to_publish({"path": str(tmp_path / "gone.jpg"), "camera": "cam0"}, 1000)
