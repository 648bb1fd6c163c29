"""``nano-vision attributes collect --camera cam0``: crops from a running site, over DDS.

Subscribes to ``/<camera>/image_raw`` and ``/<camera>/detections`` (tracked, from the site's
detector_node) and pairs them by header stamp; the pairing and saving is core/attributes/collect.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from pathlib import Path

from nano_vision_ros.core.attributes.collect import CollectConfig, CropCollector

log = logging.getLogger(__name__)


def collect_live(camera: str, out: Path, minutes: float, config: CollectConfig) -> CropCollector:
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from sensor_msgs.msg import Image
    from vision_msgs.msg import Detection2DArray

    from nano_vision_ros.ros import qos
    from nano_vision_ros.ros.detections import from_msg
    from nano_vision_ros.ros.image import to_bgr

    col = CropCollector(Path(out), camera, config)
    frames: OrderedDict[tuple[int, int], Image] = OrderedDict()
    counts = {"images": 0, "detections": 0, "paired": 0}

    def on_image(msg: Image) -> None:
        counts["images"] += 1
        frames[(msg.header.stamp.sec, msg.header.stamp.nanosec)] = msg
        while len(frames) > 30:
            frames.popitem(last=False)

    def on_dets(msg: Detection2DArray) -> None:
        counts["detections"] += 1
        img = frames.get((msg.header.stamp.sec, msg.header.stamp.nanosec))
        if img is None:
            return
        counts["paired"] += 1
        stamp = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
        col.add(to_bgr(img), from_msg(msg), stamp)

    ns = "/" + camera.strip("/")
    rclpy.init()
    node = rclpy.create_node("attributes_collect")
    try:
        node.create_subscription(Image, f"{ns}/image_raw", on_image, qos.SENSOR)
        node.create_subscription(Detection2DArray, f"{ns}/detections", on_dets, qos.RELIABLE)
        ex = SingleThreadedExecutor()
        ex.add_node(node)
        end = time.monotonic() + minutes * 60.0
        last = time.monotonic()
        while time.monotonic() < end:
            ex.spin_once(timeout_sec=0.2)
            if time.monotonic() - last > 10.0:
                last = time.monotonic()
                print(
                    f"{counts['images']} images, {counts['detections']} detections, {col.saved} crop sets", flush=True
                )
        if not counts["paired"]:
            print(f"warning: no image/detections pair seen on {ns} (is the site running, with a detector on {camera}?)")
    finally:
        node.destroy_node()
        rclpy.shutdown()
    return col
