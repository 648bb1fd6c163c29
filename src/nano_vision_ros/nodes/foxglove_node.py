"""foxglove_node: the site's live topics over the Foxglove WebSocket protocol (foxglove-sdk), no ROS on the viewer.

Open Foxglove (app or web) -> "Open connection" -> Foxglove WebSocket ``ws://HOST:8765`` and load
``config/foxglove_layout.json``. Per camera (``cameras``, or every namespace with an ``events`` or
``detections`` topic on the graph) it serves:

- ``/<cam>/<image topic>`` (``image_topics``: image_annotated, image_raw): foxglove.CompressedImage
  JPEG at most ``max_fps``; the ROS image is subscribed only while a Foxglove client subscribes
  the channel (so the events node draws ``image_annotated`` only then), encoded in a worker;
- ``/<cam>/annotations``: foxglove.ImageAnnotations from ``detections`` with the zones (the events
  node's ``rules`` parameter, read over the ROS parameter service) and violators in red: the same
  ``core.overlay.scene`` the annotated image is drawn from, as vectors the app draws;
- ``/<cam>/events``: each event (JSON, with the event JSON schema); ``/events_log``: each event as a
  foxglove.Log line (the Log panel's event log);
- ``/diagnostics``: /diagnostics as JSON (diagnostic_msgs/msg/DiagnosticArray fields), only while watched.

Nothing but the events subscription and a graph look-up every ``discovery_period`` runs while
no Foxglove client subscribes. On a ROS install, ``foxglove_bridge`` serves every ROS topic
instead (docs/FOXGLOVE.md).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from importlib import resources
from typing import Any

import cv2
from diagnostic_msgs.msg import DiagnosticArray
from pydantic import BaseModel, Field, field_validator
from rcl_interfaces.srv import GetParameters
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from vision_msgs.msg import Detection2DArray

from nano_vision_msgs.msg import Event as EventMsg
from nano_vision_ros.core import overlay
from nano_vision_ros.core.errors import ConfigError
from nano_vision_ros.core.events import parse_rules
from nano_vision_ros.ros import diagnostics, qos
from nano_vision_ros.ros.detections import from_msg
from nano_vision_ros.ros.events import event_from_msg
from nano_vision_ros.ros.image import to_bgr
from nano_vision_ros.ros.params import load_config
from nano_vision_ros.ros.runtime import run_node
from nano_vision_ros.ros.worker import LatestWorker

log = logging.getLogger(__name__)
FOXGLOVE_HINT = "pip install 'foxglove-sdk>=0.30,<0.31' (requirements/foxglove.txt; scripts/setup.sh installs it)"


class FoxgloveConfig(BaseModel):
    host: str = Field("127.0.0.1", description="address the WebSocket server binds (0.0.0.0: other machines; no auth)")
    port: int = Field(8765, ge=0, le=65535, description="WebSocket port (0 = any free port, logged)")
    cameras: list[str] = Field(
        default_factory=list,
        description="camera namespaces to serve (cam0, site/gate); "
        "[] = every namespace with an events or detections topic",
    )
    image_topics: list[str] = Field(
        default_factory=lambda: ["image_annotated", "image_raw"],
        description="image topics of each camera served as JPEG (relative to the camera)",
    )
    detections_topic: str = Field("detections", description="Detection2DArray drawn as ImageAnnotations")
    events_topic: str = Field("events", description="events topic of each camera (nano_vision_msgs/Event)")
    events_node: str = Field(
        "events_node", description="name of each camera's events node (its `rules` give the zones)"
    )
    max_fps: float = Field(5.0, gt=0, le=60, description="most JPEG frames and annotations per second per camera")
    jpeg_quality: int = Field(80, ge=10, le=100)
    discovery_period: float = Field(2.0, gt=0, description="s between looks at the graph for new cameras")
    zones_period: float = Field(10.0, gt=0, description="s between reads of the events nodes' rules (zones)")
    diagnostics_period: float = Field(1.0, gt=0)

    @field_validator("cameras", "image_topics")
    @classmethod
    def _names(cls, v: list[str]) -> list[str]:
        if any(not t.strip("/") for t in v):
            raise ValueError("names must not be empty")
        return [t.strip("/") for t in v]


def _foxglove() -> Any:
    try:
        import foxglove
    except ImportError as err:
        raise ConfigError(f"foxglove-sdk is not installed ({err}): {FOXGLOVE_HINT}") from None
    return foxglove


def _ns(stamp: Any) -> int:
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def image_annotations(sc: overlay.Scene, stamp_ns: int) -> Any:
    """core.overlay.Scene -> foxglove.ImageAnnotations (the same shapes the annotated image shows)."""
    from foxglove.messages import (
        Color,
        ImageAnnotations,
        Point2,
        PointsAnnotation,
        PointsAnnotationType,
        TextAnnotation,
    )
    from foxglove.schemas import Timestamp

    ts = Timestamp(stamp_ns // 1_000_000_000, stamp_ns % 1_000_000_000)

    def color(bgr: tuple[int, int, int], a: float = 1.0) -> Any:
        r, g, b = overlay.rgb(bgr)
        return Color(r=r, g=g, b=b, a=a)

    black, white = color(overlay.BLACK), color(overlay.WHITE)
    points, texts = [], []
    for p in sc.polygons:
        points.append(
            PointsAnnotation(
                timestamp=ts,
                type=PointsAnnotationType.LineLoop,
                thickness=2.0,
                points=[Point2(x=x, y=y) for x, y in p.points],
                outline_color=color(p.color),
            )
        )
        x, y = min(q[0] for q in p.points), min(q[1] for q in p.points)
        texts.append(
            TextAnnotation(
                timestamp=ts,
                position=Point2(x=x + 2, y=y + 16),
                text=p.text,
                font_size=13.0,
                text_color=black,
                background_color=color(p.color, 0.85),
            )
        )
    for ln in sc.lines:
        points.append(
            PointsAnnotation(
                timestamp=ts,
                type=PointsAnnotationType.LineStrip,
                thickness=2.0,
                points=[Point2(x=x, y=y) for x, y in ln.points],
                outline_color=color(ln.color),
            )
        )
        points.append(
            PointsAnnotation(
                timestamp=ts,
                type=PointsAnnotationType.LineList,
                thickness=2.0,
                points=[Point2(x=x, y=y) for a in ln.arrows for x, y in a],
                outline_color=color(ln.color),
            )
        )
        (ax, ay), (bx, by) = ln.points
        texts.append(
            TextAnnotation(
                timestamp=ts,
                position=Point2(x=min(ax, bx) + 2, y=min(ay, by) - 4),
                text=ln.text,
                font_size=12.0,
                text_color=black,
                background_color=color(ln.color, 0.85),
            )
        )
    for b in sc.boxes:
        x1, y1, x2, y2 = b.box
        points.append(
            PointsAnnotation(
                timestamp=ts,
                type=PointsAnnotationType.LineLoop,
                thickness=3.0 if b.violation else 2.0,
                points=[Point2(x=x1, y=y1), Point2(x=x2, y=y1), Point2(x=x2, y=y2), Point2(x=x1, y=y2)],
                outline_color=color(b.color),
            )
        )
        texts.append(
            TextAnnotation(
                timestamp=ts,
                position=Point2(x=x1, y=max(12.0, y1 - 2)),
                text=b.text,
                font_size=12.0,
                text_color=white if b.violation else black,
                background_color=color(b.color, 0.85),
            )
        )
    for t in sc.legend:
        texts.append(
            TextAnnotation(
                timestamp=ts,
                position=Point2(x=t.position[0], y=t.position[1] + 13),
                text=t.text,
                font_size=12.0,
                text_color=color(t.color),
                background_color=color(overlay.PANEL, 0.8),
            )
        )
    return ImageAnnotations(points=points, texts=texts)


class _Subscribers:
    """Foxglove ServerListener: how many clients subscribe each channel (by channel id)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts: dict[int, int] = {}

    def on_subscribe(self, client: Any, channel: Any) -> None:
        with self._lock:
            self.counts[channel.id] = self.counts.get(channel.id, 0) + 1

    def on_unsubscribe(self, client: Any, channel: Any) -> None:
        with self._lock:
            self.counts[channel.id] = max(0, self.counts.get(channel.id, 0) - 1)

    def watched(self, channel: Any) -> bool:
        with self._lock:
            return self.counts.get(channel.id(), 0) > 0


class _Feed:
    """One ROS topic -> one Foxglove channel, subscribed in ROS only while the channel is watched."""

    def __init__(
        self,
        node: FoxgloveNode,
        msg_type: Any,
        topic: str,
        channel: Any,
        qos_profile: Any,
        handle: Any,
        max_fps: float | None,
    ) -> None:
        self.node, self.msg_type, self.topic, self.channel, self.qos = node, msg_type, topic, channel, qos_profile
        self.sub: Any = None
        self.min_dt = 1.0 / max_fps if max_fps else 0.0
        self._last = 0.0
        self.sent = 0
        self.worker: LatestWorker[Any] = LatestWorker(lambda m: self._run(handle, m), name=f"foxglove{topic}")

    def reconcile(self, watched: bool) -> None:
        if watched and self.sub is None:
            self.sub = self.node.create_subscription(self.msg_type, self.topic, self._on_msg, self.qos)
        elif not watched and self.sub is not None:
            self.node.destroy_subscription(self.sub)
            self.sub = None

    def _on_msg(self, msg: Any) -> None:
        now = time.monotonic()
        if now - self._last < self.min_dt:
            return  # over max_fps: dropped here, before any work
        self._last = now
        self.worker.submit(msg)

    def _run(self, handle: Any, msg: Any) -> None:
        handle(self.channel, msg)
        self.sent += 1


class _Camera:
    def __init__(self, name: str) -> None:
        self.name = name
        self.zones: list[overlay.ZoneShape] = []
        self.lines: list[overlay.LineShape] = []
        self.violations = overlay.Violations()
        self.feeds: list[_Feed] = []
        self.events_channel: Any = None
        self.events_sub: Any = None
        self.param_client: Any = None
        self.zones_error = ""


class FoxgloveNode(Node):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__("foxglove_node", **kwargs)
        self.cfg = c = load_config(self, FoxgloveConfig)
        self.fg = _foxglove()
        self.subscribers = _Subscribers()
        try:
            self.server = self.fg.start_server(
                name="nano_vision_ros", host=c.host, port=c.port, server_listener=self.subscribers
            )
        except Exception as err:  # noqa: BLE001 - the SDK raises its own error type for a port in use
            raise ConfigError(
                f"parameter 'port': cannot serve Foxglove WebSocket on {c.host}:{c.port}: {err}", "port"
            ) from None
        self.port = self.server.port
        self.cameras: dict[str, _Camera] = {}
        self.jpeg_encoded = 0
        self.events_seen = 0
        self.bad_events = 0
        from foxglove.channels import LogChannel

        self.log_channel = LogChannel("/events_log")
        schema = self.fg.Schema(
            name="diagnostic_msgs/msg/DiagnosticArray",
            encoding="jsonschema",
            data=json.dumps({"type": "object"}).encode(),
        )
        self.diag_channel = self.fg.Channel("/diagnostics", message_encoding="json", schema=schema)
        self.diag_feed = _Feed(
            self, DiagnosticArray, "/diagnostics", self.diag_channel, 50, self._send_diagnostics, None
        )
        self._event_schema = self.fg.Schema(
            name="nano_vision_ros.Event",
            encoding="jsonschema",
            data=resources.files("nano_vision_ros").joinpath("schemas/event.schema.json").read_bytes(),
        )
        self._events_qos = QoSProfile(
            depth=100,
            history=HistoryPolicy.KEEP_LAST,
            reliability=ReliabilityPolicy.RELIABLE,
            durability=DurabilityPolicy.TRANSIENT_LOCAL,
        )
        for cam in c.cameras:
            self._add_camera(cam)
        self.create_timer(0.25, self._reconcile)
        if not c.cameras:
            self.create_timer(c.discovery_period, self._discover)
        self.create_timer(
            c.zones_period, lambda: self._read_zones()
        )  # EventsExecutor passes a TimerInfo to a callback with a parameter
        self.diag = diagnostics.Diagnostics(self, self._collect, c.diagnostics_period)
        self.get_logger().info(
            f"Foxglove WebSocket on ws://{c.host}:{self.port} (cameras: {', '.join(c.cameras) or 'found on the graph'})"
        )

    # -- cameras ------------------------------------------------------------------------------------
    def _discover(self) -> None:
        wanted = {self.cfg.events_topic, self.cfg.detections_topic}
        for topic, _types in self.get_topic_names_and_types():
            ns, _, leaf = topic.rpartition("/")
            if leaf in wanted and ns.strip("/") and ns.strip("/") not in self.cameras:
                self._add_camera(ns.strip("/"))

    def _add_camera(self, name: str) -> None:
        from foxglove.channels import CompressedImageChannel, ImageAnnotationsChannel

        cam = _Camera(name)
        c = self.cfg
        for t in c.image_topics:
            cam.feeds.append(
                _Feed(
                    self,
                    Image,
                    f"/{name}/{t}",
                    CompressedImageChannel(f"/{name}/{t}"),
                    qos.sensor(1),
                    self._send_image,
                    c.max_fps,
                )
            )
        cam.feeds.append(
            _Feed(
                self,
                Detection2DArray,
                f"/{name}/{c.detections_topic}",
                ImageAnnotationsChannel(f"/{name}/annotations"),
                qos.RELIABLE,
                lambda ch, m, cam=cam: self._send_annotations(cam, ch, m),
                c.max_fps,
            )
        )
        cam.events_channel = self.fg.Channel(f"/{name}/events", message_encoding="json", schema=self._event_schema)
        cam.events_sub = self.create_subscription(
            EventMsg, f"/{name}/{c.events_topic}", lambda m, cam=cam: self._on_event(cam, m), self._events_qos
        )
        cam.param_client = self.create_client(GetParameters, f"/{name}/{c.events_node}/get_parameters")
        self.cameras[name] = cam
        self._read_zones(cam)
        self.get_logger().info(f"serving camera {name}")

    def _read_zones(self, only: _Camera | None = None) -> None:
        """Ask each events node for its `rules` (async): the zones follow a reload_config too."""
        for cam in [only] if only else list(self.cameras.values()):
            if not cam.param_client.service_is_ready():
                continue
            fut = cam.param_client.call_async(GetParameters.Request(names=["rules", "camera"]))
            fut.add_done_callback(lambda f, cam=cam: self._got_rules(cam, f))

    def _got_rules(self, cam: _Camera, fut: Any) -> None:
        try:
            values = fut.result().values
            rules_text = values[0].string_value if values else ""
            camera = (values[1].string_value if len(values) > 1 else "") or cam.name.split("/")[-1]
            rules = parse_rules(rules_text, camera)
            cam.zones, cam.lines = overlay.zones_of(rules), overlay.lines_of(rules)
            cam.zones_error = ""
        except Exception as err:  # noqa: BLE001 - a bad or unreadable rules parameter: boxes without zones
            if str(err) != cam.zones_error:
                self.get_logger().warning(f"{cam.name}: zones not available: {err}")
            cam.zones_error = str(err)

    # -- watched or not -----------------------------------------------------------------------------
    def _reconcile(self) -> None:
        for cam in list(self.cameras.values()):
            for f in cam.feeds:
                f.reconcile(self.subscribers.watched(f.channel))
        self.diag_feed.reconcile(self.subscribers.watched(self.diag_channel))

    # -- senders (worker threads) -------------------------------------------------------------------
    def _send_image(self, channel: Any, msg: Image) -> None:
        from foxglove.messages import CompressedImage
        from foxglove.schemas import Timestamp

        img = to_bgr(msg)
        ok, jpeg = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, self.cfg.jpeg_quality])
        if not ok:
            raise ValueError(f"JPEG encoding failed for a {img.shape} frame")
        ns = _ns(msg.header.stamp)
        channel.log(
            CompressedImage(
                timestamp=Timestamp(ns // 1_000_000_000, ns % 1_000_000_000),
                frame_id=msg.header.frame_id,
                data=jpeg.tobytes(),
                format="jpeg",
            ),
            log_time=ns,
        )
        self.jpeg_encoded += 1

    def _send_annotations(self, cam: _Camera, channel: Any, msg: Detection2DArray) -> None:
        ns = _ns(msg.header.stamp)
        sc = overlay.scene(from_msg(msg), cam.zones, cam.violations.snapshot(), cam.lines)
        channel.log(image_annotations(sc, ns), log_time=ns)

    def _send_diagnostics(self, channel: Any, msg: DiagnosticArray) -> None:
        st = msg.header.stamp
        body = {
            "header": {"stamp": {"sec": st.sec, "nsec": st.nanosec}, "frame_id": msg.header.frame_id},
            "status": [
                {
                    "level": int.from_bytes(s.level, "little") if isinstance(s.level, bytes) else int(s.level),
                    "name": s.name,
                    "message": s.message,
                    "hardware_id": s.hardware_id,
                    "values": [{"key": kv.key, "value": kv.value} for kv in s.values],
                }
                for s in msg.status
            ],
        }
        channel.log(body, log_time=_ns(st))

    # -- events (light: parse, remember the violators, forward) --------------------------------------
    def _on_event(self, cam: _Camera, msg: EventMsg) -> None:
        from foxglove.messages import Log, LogLevel

        try:
            ev = event_from_msg(msg)
            cam.violations.update(ev.event_id, ev.rule, ev.state, ev.track_ids)
        except ValueError as err:
            self.bad_events += 1
            self.get_logger().warning(f"{cam.name}: event not understood: {err}", throttle_duration_sec=10.0)
            return
        self.events_seen += 1
        cam.events_channel.log(ev.to_json_text())  # the MQTT JSON, same schema
        level = LogLevel.Warning if ev.state == "new" else LogLevel.Info
        self.log_channel.log(
            Log(level=level, name=cam.name, message=f"[{ev.state}] {ev.message or ev.type} ({ev.rule})")
        )

    def _collect(self) -> tuple[int, str, dict[str, object]]:
        watched = sum(1 for cam in self.cameras.values() for f in cam.feeds if f.sub is not None)
        values: dict[str, object] = {
            "url": f"ws://{self.cfg.host}:{self.port}",
            "cameras": len(self.cameras),
            "ros_subscriptions_watched": watched,
            "jpeg_encoded": self.jpeg_encoded,
            "events_seen": self.events_seen,
            "bad_events": self.bad_events,
        }
        for cam in self.cameras.values():
            values[f"{cam.name}.zones"] = len(cam.zones)
        return diagnostics.OK, f"{len(self.cameras)} cameras, {watched} topics watched", values

    def destroy_node(self) -> None:
        server = getattr(self, "server", None)
        if server is not None:
            server.stop()
        for cam in getattr(self, "cameras", {}).values():
            for f in cam.feeds:
                f.worker.stop()
        feed = getattr(self, "diag_feed", None)
        if feed is not None:
            feed.worker.stop()
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    return run_node(FoxgloveNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
