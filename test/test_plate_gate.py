"""A SYNTHETIC vehicle drives through a gate: plate_node (frame mode) -> events_node (gate rule) ->
mqtt_bridge_node -> mosquitto, each in its own process over DDS. The allow-listed plate crossing
the gate line inwards gives gate_open on the ROS events topic and on MQTT; nothing before it
crosses. The gate event's snapshot is the plate crop plate_node sent on plate_crops (the passage's
best rectified plate), not the whole frame."""

from __future__ import annotations

import json
import random
import threading
from pathlib import Path

import cv2
import numpy as np
import paho.mqtt.client as mqtt
from conftest import wait_for
from plates_synth import render_plate, vehicle_scene
from sensor_msgs.msg import Image
from vision_msgs.msg import Detection2DArray

from nano_vision_msgs.msg import Event
from nano_vision_ros.core.events import validate_event
from nano_vision_ros.ros import qos
from nano_vision_ros.ros.events import event_from_msg
from nano_vision_ros.ros.image import numpy_to_imgmsg

SITE, DEVICE, NS = "gs1", "gd1", "/gatecam"
TEXT = "苏E5M7K2"
RULES = """
rules:
  - {name: gate_in, type: gate, gate: north, line: [[0, 300], [640, 300]], direction: entry,
     allow: ["苏E·5M7K2"], end_after: 3.0}
"""


def frames() -> list[np.ndarray]:
    """640x480 frames: the vehicle moves down 6 px per frame, its plate from ~50 px above the line
    at y=300 to ~70 px below it (a plate track keeps its id at this step)."""
    car, box = vehicle_scene(
        render_plate(TEXT, "blue", height=70), random.Random(4), perspective=0.02, blur=0.5, noise=2
    )
    cy = float(box[1] + box[3]) / 2
    out = []
    for dy in range(int(250 - cy), int(370 - cy), 6):
        f = np.full((480, 640, 3), 90, np.uint8)
        f[dy : dy + 240, 160:480] = car
        out.append(f)
    return out


def test_allowed_plate_through_the_gate_opens_it_over_ros_and_mqtt(start_node, ros_node, broker, tmp_path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    mq: list[dict] = []
    lock = threading.Lock()
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="gate-test")
    sub.on_connect = lambda c, *a: c.subscribe(f"nano_vision/{SITE}/{DEVICE}/events", qos=1)

    def on_message(c, u, msg):
        with lock:
            mq.append(json.loads(msg.payload))

    sub.on_message = on_message
    sub.connect("127.0.0.1", broker.port)
    sub.loop_start()
    try:
        start_node("plate_node", "-r", f"__ns:={NS}", "-p", "finder.mode:=frame", name="gate_plate")
        start_node(
            "events_node",
            "-r",
            f"__ns:={NS}",
            "-p",
            f"rules:={rules}",
            "-p",
            f"site_id:={SITE}",
            "-p",
            f"device_id:={DEVICE}",
            "-p",
            f"snapshot_dir:={tmp_path / 'snaps'}",
            name="gate_events",
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
            f"events_topics:=[{NS}/events]",
            "-p",
            f"outbox_path:={tmp_path / 'outbox.sqlite'}",
            name="gate_bridge",
        )
        node = ros_node("gate_client")
        ros_events: list[dict] = []
        plates: list[Detection2DArray] = []
        node.create_subscription(
            Event, f"{NS}/events", lambda m: ros_events.append(event_from_msg(m).to_json()), qos.RELIABLE
        )
        node.create_subscription(Detection2DArray, f"{NS}/plates", plates.append, qos.RELIABLE)
        pub = node.create_publisher(Image, f"{NS}/image_raw", qos.SENSOR)
        seq = frames()
        state = {"k": 0, "sent": -1, "wait": 0}

        def tick():  # lockstep: the next frame once the plate node has answered the last (or after 4 s)
            k = state["k"]
            answered = any(m.header.stamp.sec == 100 + state["sent"] for m in plates)
            if state["sent"] == k and not answered and state["wait"] < 20:
                state["wait"] += 1
                return
            if state["sent"] == k:
                state["k"] = k = min(k + 1, len(seq) - 1)
            msg = numpy_to_imgmsg(seq[k], "bgr8")
            msg.header.stamp.sec, msg.header.frame_id = 100 + k, "gatecam"
            pub.publish(msg)
            state["sent"], state["wait"] = k, 0

        node.create_timer(0.2, tick)
        wait_for(
            lambda: any(e["type"] == "gate_open" for e in ros_events), 150, what="gate_open on the ROS events topic"
        )
        ev = next(e for e in ros_events if e["type"] == "gate_open")
        validate_event(ev)
        assert ev["state"] == "new" and ev["zone"] == "north" and ev["plate"]["text"] == TEXT
        assert ev["plate"]["list"] == "allow"
        assert ev["boxes"][0][3] >= 300 - 1  # raised once the plate is past the line, not before
        read_before = [m for m in plates if m.detections and m.header.stamp.sec < 100 + 3]
        assert read_before, "the plate is read before it reaches the line"
        wait_for(
            lambda: any(e["type"] == "gate_open" and e["event_id"] == ev["event_id"] for e in list(mq)),
            30,
            what="the same gate_open over MQTT",
        )
        assert not [e for e in ros_events if e["type"] == "gate_alarm"]
        # the snapshot is the plate: a plate-shaped crop (440x140 mm, rectified), not the 640x480 frame
        snap = ev["snapshot"]
        jpg = cv2.imread(snap["path"])
        assert jpg is not None and Path(snap["path"]).parent == tmp_path / "snaps" / "gatecam"
        assert (jpg.shape[1], jpg.shape[0]) == (snap["width"], snap["height"])
        assert 40 <= snap["height"] <= 120 and 2.4 <= snap["width"] / snap["height"] <= 4.2, snap
        mq_ev = next(e for e in list(mq) if e["event_id"] == ev["event_id"])
        assert mq_ev["snapshot"] == snap  # the MQTT payload names the same crop
    finally:
        sub.loop_stop()
        sub.disconnect()


def test_plate_crop_snapshot_is_stored_as_sent_and_a_broken_one_refused(tmp_path) -> None:
    """write_jpeg keeps the plate node's JPEG byte for byte (no re-encoding) with its own size; a
    JPEG that does not decode gives None, and the events node then cuts the frame instead."""
    from nano_vision_ros.core.events.snapshot import PlateCrops, SnapshotWriter

    w = SnapshotWriter(tmp_path, "gatecam")
    ok, jpg = cv2.imencode(".jpg", render_plate(TEXT, "blue", height=60))
    assert ok
    snap = w.write_jpeg("e1", jpg.tobytes(), 100.0)
    assert snap is not None and Path(snap["path"]).read_bytes() == jpg.tobytes()
    assert snap["height"] == 60 and snap["width"] > 2.4 * 60 and snap["stamp"].startswith("1970-01-01T00:01:40")
    assert w.write_jpeg("e2", b"\xff\xd8 not a jpeg", 101.0) is None
    assert not (tmp_path / "gatecam" / "e2.jpg").exists()
    crops = PlateCrops(size=2)
    for k in ("1", "2", "3"):
        crops.put(k, float(k), b"x")
    assert crops.get("1") is None and crops.get("3") == (3.0, b"x") and len(crops) == 2
