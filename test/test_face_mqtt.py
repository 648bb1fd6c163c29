"""Enroll and delete a face from an MQTT back end: paho -> a real mosquitto (started here, stopped
by PID) -> mqtt_bridge_node -> face_node services (enroll_face, delete_face) -> replies back over MQTT."""

from __future__ import annotations

import base64
import json
import threading
from pathlib import Path

import cv2
import paho.mqtt.client as mqtt
from conftest import wait_for

BASE = "nano_vision/s9/d9"


def test_enroll_and_delete_over_mqtt(start_node, broker, tmp_path: Path, samples: Path) -> None:
    db = tmp_path / "faces.db"
    face = start_node(
        "face_node", "-r", "__ns:=/cam0", "-p", f"gallery:={db}", "-p", "detector.kind:=centerface", name="face"
    )
    start_node(
        "mqtt_bridge_node",
        "-p",
        f"port:={broker.port}",
        "-p",
        "site_id:=s9",
        "-p",
        "device_id:=d9",
        "-p",
        f"outbox_path:={tmp_path / 'outbox.sqlite'}",
        "-p",
        "command_timeout:=20.0",
        "-p",
        "ha_discovery:=false",
        name="bridge",
    )
    replies: list[dict] = []
    lock = threading.Lock()
    online = threading.Event()

    def on_message(client, userdata, msg):
        if msg.topic.endswith("/reply"):
            with lock:
                replies.append(json.loads(msg.payload))
        elif msg.topic == f"{BASE}/status" and b"online" in msg.payload:
            online.set()

    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="backend")
    c.on_message = on_message
    c.on_connect = lambda cl, *a: (cl.subscribe(f"{BASE}/cmd/#", qos=1), cl.subscribe(f"{BASE}/status", qos=1))
    c.connect("127.0.0.1", broker.port)
    c.loop_start()
    try:
        wait_for(online.is_set, 30, what="bridge online")
        wait_for(lambda: "faces: centerface" in face.log(), 60, what="face_node configured")

        def command(name: str, rid: str, args: dict) -> dict:
            c.publish(f"{BASE}/cmd/{name}", json.dumps({"request_id": rid, "target": "cam0", "args": args}), qos=1)

            def got():
                with lock:
                    return next((r for r in replies if r.get("request_id") == rid), None)

            return wait_for(got, 60, what=f"MQTT reply to {name}")

        jpg = cv2.imencode(".jpg", cv2.imread(str(samples / "astronaut.png")))[1].tobytes()
        rep = command("enroll_face", "enr-1", {"name": "Eileen", "image_b64": base64.b64encode(jpg).decode()})
        assert rep["ok"] is True, rep
        node_reply = rep["replies"][0]
        assert node_reply["node"] == "/cam0/face_node" and node_reply["result"]["name"] == "Eileen"
        dog = cv2.imencode(".jpg", cv2.imread(str(samples / "dog.jpg")))[1].tobytes()
        rep = command("enroll_face", "enr-2", {"name": "Rex", "image_b64": base64.b64encode(dog).decode()})
        assert rep["ok"] is False and "no face found" in json.dumps(rep)
        rep = command("delete_face", "del-1", {"name": "Eileen"})
        assert rep["ok"] is True, rep
        assert b"Eileen" not in db.read_bytes()
    finally:
        c.loop_stop()
        c.disconnect()
