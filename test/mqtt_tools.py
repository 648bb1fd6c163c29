"""MQTT-side test helpers shared by the bridge, pipeline, PPE and disk-full tests: the site and
device every test bridge runs as, a recording paho subscriber and a ROS detections feeder.

A helper module, not a test module (pytest does not collect it): test modules share code through
conftest.py and modules like this one, never by importing each other (test_lint checks)."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import paho.mqtt.client as mqtt
from conftest import wait_for

from nano_vision_ros.ros.events import event_from_msg

SITE, DEVICE = "s1", "d1"
BASE = f"nano_vision/{SITE}/{DEVICE}"
RULES = "rules: [{name: people, type: object, labels: [person], end_after: 0.4, cooldown: 0}]"


class Subscriber:
    """A paho client with a persistent session (QoS 1) that records everything under BASE/#."""

    def __init__(
        self,
        port: int,
        topics=(f"{BASE}/#",),
        tls: dict | None = None,
        user: tuple | None = None,
        client_id: str = "test-sub",
    ) -> None:
        self.messages: list[mqtt.MQTTMessage] = []
        self.lock = threading.Lock()
        self.topics = topics
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
        if tls:
            self.c.tls_set(ca_certs=tls["ca"])
        if user:
            self.c.username_pw_set(*user)
        self.c.reconnect_delay_set(0.1, 0.5)
        self.connected = threading.Event()
        self.c.on_connect = self._on_connect
        self.c.on_disconnect = lambda *a: self.connected.clear()
        self.c.on_message = self._on_message
        self.c.connect_async("127.0.0.1", port, 10)
        self.c.loop_start()
        wait_for(self.connected.is_set, 10, what="test subscriber connected")

    def _on_connect(self, client, userdata, flags, rc, props):
        if rc.is_failure:
            return
        for t in self.topics:
            client.subscribe(t, qos=1)
        self.connected.set()

    def _on_message(self, client, userdata, msg):
        with self.lock:
            self.messages.append(msg)

    def on(self, topic: str) -> list[mqtt.MQTTMessage]:
        with self.lock:
            return [m for m in self.messages if m.topic == topic]

    def events(self) -> list[dict]:
        return [json.loads(m.payload) for m in self.on(f"{BASE}/events")]

    def close(self):
        self.c.loop_stop()
        self.c.disconnect()


def _header(node, stamp: float):
    from std_msgs.msg import Header

    h = Header(frame_id="cam")
    h.stamp.sec, h.stamp.nanosec = int(stamp), int((stamp % 1) * 1e9)
    return h


class Feeder:
    """Publishes /cam0/detections (+ frames) from the test process."""

    def __init__(self, ros_node, image: np.ndarray | None = None) -> None:
        from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import Image
        from vision_msgs.msg import Detection2DArray

        from nano_vision_msgs.msg import Event

        self.node = ros_node("feeder")
        self.det_pub = self.node.create_publisher(
            Detection2DArray, "/cam0/detections", QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE)
        )
        self.img_pub = self.node.create_publisher(Image, "/cam0/image_raw", 5)
        self.ros_events: list[dict] = []
        self._lock = threading.Lock()
        tl = QoSProfile(
            depth=2000,
            history=HistoryPolicy.KEEP_LAST,
            reliability=ReliabilityPolicy.RELIABLE,
            durability=DurabilityPolicy.TRANSIENT_LOCAL,
        )
        self.node.create_subscription(Event, "/cam0/events", self._on_event, tl)
        self.image = image

    def _on_event(self, msg):
        with self._lock:
            self.ros_events.append(event_from_msg(msg).to_json())

    def wait_connected(self):
        wait_for(lambda: self.det_pub.get_subscription_count() > 0, 60, what="events_node subscribed to detections")

    def frame(self, track_ids, stamp=None):
        from nano_vision_ros.core.detection.types import Detections
        from nano_vision_ros.ros.detections import to_msg
        from nano_vision_ros.ros.image import numpy_to_imgmsg

        stamp = stamp or time.time()
        header = _header(self.node, stamp)
        if self.image is not None:
            self.img_pub.publish(numpy_to_imgmsg(self.image, "bgr8", header))
        n = len(track_ids)
        boxes = np.array([[10 + 5 * (i % 20), 10, 60 + 5 * (i % 20), 120] for i in range(n)], np.float32).reshape(-1, 4)
        d = Detections(
            boxes, np.full(n, 0.8, np.float32), np.zeros(n, np.int32), ["person"], np.array(track_ids, np.int64)
        )
        self.det_pub.publish(to_msg(d, header))

    def keys(self) -> set:
        with self._lock:
            return {(e["event_id"], e["sequence"]) for e in self.ros_events}


def burst(feeder: Feeder, first: int, n: int, pace: float = 0.01):
    for tid in range(first, first + n):
        feeder.frame([tid])
        time.sleep(pace)


def mqtt_keys(sub: Subscriber) -> set:
    return {(e["event_id"], e["sequence"]) for e in sub.events()}
