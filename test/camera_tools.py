"""camera_node test helpers shared by the camera and RTSP tests: thread-safe inboxes for a camera's
topics and its diagnostics as a dict.

A helper module, not a test module (pytest does not collect it): test modules share code through
conftest.py and modules like this one, never by importing each other (test_lint checks)."""

from __future__ import annotations

import threading


class Inbox:
    """Thread-safe list of received messages (subscription callbacks run on the executor thread)."""

    def __init__(self, keep=lambda m: m) -> None:
        self.items: list = []
        self._keep = keep
        self._lock = threading.Lock()

    def __call__(self, msg) -> None:
        item = self._keep(msg)
        with self._lock:
            self.items.append(item)

    def __len__(self) -> int:
        with self._lock:
            return len(self.items)

    def snapshot(self) -> list:
        with self._lock:
            return list(self.items)


def subscribe_camera(ros_node, ns: str, name: str = "t_sub"):
    """Subscribe node `name` (from the ros_node fixture) to camera `ns`: Inboxes of its images (header,
    encoding, size, step, pixels), camera infos, JPEGs and its own /diagnostics statuses."""
    from diagnostic_msgs.msg import DiagnosticArray
    from sensor_msgs.msg import CameraInfo, CompressedImage, Image

    from nano_vision_ros.ros import qos
    from nano_vision_ros.ros.image import converter

    conv = converter()
    node = ros_node(name)
    images = Inbox(lambda m: (m.header, m.encoding, m.width, m.height, m.step, conv.to_numpy(m).copy()))
    infos = Inbox()
    jpegs = Inbox()
    diags = Inbox(lambda m: [s for s in m.status if s.name == f"{ns}/camera_node"])
    node.create_subscription(Image, f"{ns}/image_raw", images, qos.SENSOR)
    node.create_subscription(CameraInfo, f"{ns}/camera_info", infos, qos.SENSOR)
    node.create_subscription(CompressedImage, f"{ns}/image_raw/compressed", jpegs, qos.SENSOR)
    node.create_subscription(DiagnosticArray, "/diagnostics", diags, 50)
    return images, infos, jpegs, diags


def diag_values(diags: Inbox) -> dict[str, str] | None:
    """The newest camera diagnostics status as a dict (values, plus _message and _level), or None."""
    for statuses in reversed(diags.snapshot()):
        if statuses:
            st = statuses[-1]
            return {
                "_message": st.message,
                "_level": int.from_bytes(st.level, "little") if isinstance(st.level, bytes) else int(st.level),
                **{kv.key: kv.value for kv in st.values},
            }
    return None


def stamped_diags(ros_node, ns: str, name: str = "t_diag_stamps") -> Inbox:
    """An Inbox of (stamp in s, values dict) of camera `ns`'s diagnostics, stamped by the node as it
    publishes: durations taken from these are on the node's clock, not on when this process (slow
    under load) got round to reading them."""
    from diagnostic_msgs.msg import DiagnosticArray

    node = ros_node(name)
    history = Inbox(
        lambda m: (
            m.header.stamp.sec + m.header.stamp.nanosec * 1e-9,
            next(({kv.key: kv.value for kv in s.values} for s in m.status if s.name == f"{ns}/camera_node"), None),
        )
    )
    node.create_subscription(DiagnosticArray, "/diagnostics", history, 50)
    return history
