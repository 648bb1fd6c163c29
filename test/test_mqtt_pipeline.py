"""The real pipeline on the sample video: camera_node (vtest.avi) -> detector_node (coco_objects,
ByteTrack) -> events_node -> mqtt_bridge_node -> mosquitto (started here) -> paho subscriber.
People walk through the video, so person events with snapshots must arrive and validate."""

from __future__ import annotations

import cv2
from conftest import wait_for
from mqtt_tools import DEVICE, SITE, Subscriber

from nano_vision_ros.core.events import validate_event

RULES = """
rules:
  - {name: people, type: object, labels: [person], min_duration: 0.3, end_after: 1.0, cooldown: 5}
  - {name: crowd, type: count, thresholds: {person: 2}, end_after: 1.0}
"""


def test_sample_video_pipeline_events_over_mqtt(start_node, broker, tmp_path, samples):
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    sub = Subscriber(broker.port)
    start_node(
        "camera_node", "-r", "__ns:=/cam0", "-p", f"source:={samples / 'vtest.avi'}", "-p", "fps:=5", name="camera"
    )
    start_node("detector_node", "-r", "__ns:=/cam0", "-p", "task:=coco_objects", name="detector")
    events = start_node(
        "events_node",
        "-r",
        "__ns:=/cam0",
        "-p",
        f"rules:={rules}",
        "-p",
        f"site_id:={SITE}",
        "-p",
        f"device_id:={DEVICE}",
        "-p",
        f"snapshot_dir:={tmp_path / 'snaps'}",
        name="events",
    )
    start_node(
        "mqtt_bridge_node",
        "-p",
        f"port:={broker.port}",
        "-p",
        f"site_id:={SITE}",
        "-p",
        f"device_id:={DEVICE}",
        "-p",
        "events_topics:=[/cam0/events]",
        "-p",
        f"outbox_path:={tmp_path / 'outbox.sqlite'}",
        name="bridge",
    )
    wait_for(
        lambda: any(e["type"] == "object" and e["state"] == "new" and e["snapshot"] for e in sub.events()),
        150,
        what="a person event with a snapshot over MQTT",
    )
    wait_for(lambda: any(e["type"] == "count" for e in sub.events()), 60, what="a crowd (count >= 2) event over MQTT")
    evs = sub.events()
    for e in evs:
        validate_event(e)
    new = next(e for e in evs if e["type"] == "object" and e["state"] == "new" and e["snapshot"])
    assert new["labels"] == ["person"] and new["track_ids"][0] >= 0 and new["camera"] == "cam0"
    x1, y1, x2, y2 = new["boxes"][0]
    assert 0 <= x1 < x2 <= 768 and 0 <= y1 < y2 <= 576
    snap = cv2.imread(new["snapshot"]["path"])
    assert snap is not None and snap.shape == (576, 768, 3)
    assert events.alive()
    sub.close()
