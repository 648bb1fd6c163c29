"""Helper processes of test_boards.py that run inside a board's namespace.

`feeder CTL`: on board A, publishes /cam0/detections bursts when the test asks (files in CTL) and
records every /cam0/events message in CTL/ros_events.jsonl.
`mqtt CTL PORT BASE`: on board B, records every MQTT message under BASE/# in CTL/mqtt.jsonl.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path


def _wait_file(path: Path) -> None:
    while not path.exists():
        time.sleep(0.05)


def feeder(ctl: Path) -> None:
    import numpy as np
    import rclpy
    from rclpy.qos import (
        DurabilityPolicy,
        HistoryPolicy,
        QoSProfile,
        ReliabilityPolicy,
        qos_profile_sensor_data,
    )
    from sensor_msgs.msg import Image
    from std_msgs.msg import Header
    from vision_msgs.msg import Detection2DArray

    from nano_vision_msgs.msg import Event
    from nano_vision_ros.core.detection.types import Detections
    from nano_vision_ros.ros.detections import to_msg
    from nano_vision_ros.ros.events import event_from_msg

    rclpy.init()
    node = rclpy.create_node("board_a_feeder")
    pub = node.create_publisher(
        Detection2DArray, "/cam0/detections", QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE)
    )
    log = open(ctl / "ros_events.jsonl", "a", buffering=1)  # noqa: SIM115
    tl = QoSProfile(
        depth=2000,
        history=HistoryPolicy.KEEP_LAST,
        reliability=ReliabilityPolicy.RELIABLE,
        durability=DurabilityPolicy.TRANSIENT_LOCAL,
    )
    node.create_subscription(Event, "/cam0/events", lambda m: log.write(event_from_msg(m).to_json_text() + "\n"), tl)
    frames = [0]

    def on_frame(_msg: Image) -> None:  # proof that frames flow on board A while the link is measured
        frames[0] += 1
        tmp = ctl / "frames.tmp"
        tmp.write_text(str(frames[0]))
        tmp.replace(ctl / "frames")  # atomic: the test never reads a half-written count

    node.create_subscription(Image, "/cam0/image_raw", on_frame, qos_profile_sensor_data)
    threading.Thread(target=rclpy.spin, args=(node,), daemon=True).start()
    while pub.get_subscription_count() == 0:
        time.sleep(0.1)
    (ctl / "connected").touch()
    phase = 1
    while not (ctl / "stop").exists():
        go = ctl / f"go{phase}"
        if not go.exists():
            time.sleep(0.05)
            continue
        first, n, pace = (int(x) if i < 2 else float(x) for i, x in enumerate(go.read_text().split()))
        for tid in range(first, first + n):
            stamp = time.time()
            h = Header(frame_id="cam")
            h.stamp.sec, h.stamp.nanosec = int(stamp), int((stamp % 1) * 1e9)
            boxes = np.array([[10, 10, 60, 120]], np.float32)
            d = Detections(
                boxes, np.full(1, 0.8, np.float32), np.zeros(1, np.int32), ["person"], np.array([tid], np.int64)
            )
            pub.publish(to_msg(d, h))
            time.sleep(pace)
        (ctl / f"done{phase}").touch()
        phase += 1
    rclpy.shutdown()


def mqtt(ctl: Path, port: int, base: str) -> None:
    import paho.mqtt.client as paho

    log = open(ctl / "mqtt.jsonl", "a", buffering=1)  # noqa: SIM115
    lock = threading.Lock()

    def on_connect(client, userdata, flags, rc, props):
        if not rc.is_failure:
            client.subscribe(f"{base}/#", qos=1)
            (ctl / "mqtt_connected").touch()

    def on_message(client, userdata, msg):
        with lock:
            log.write(json.dumps({"topic": msg.topic, "payload": msg.payload.decode("utf-8", "replace")}) + "\n")

    c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="board-b-test-sub", clean_session=False)
    c.reconnect_delay_set(0.1, 0.5)
    c.on_connect = on_connect
    c.on_message = on_message
    c.connect_async("127.0.0.1", port, 10)
    c.loop_start()
    _wait_file(ctl / "stop")
    c.loop_stop()


if __name__ == "__main__":
    if sys.argv[1] == "feeder":
        feeder(Path(sys.argv[2]))
    else:
        mqtt(Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
