"""events_node: tracked detections (+ faces, plates) -> site-safety events on ``events``.

Subscribes ``detections`` (one or more Detection2DArray topics), ``faces``, ``plates``, the camera
image (sensor QoS; the newest frames are kept to cut JPEG snapshots from, matched by stamp),
``clips`` (recorder) and ``clip_status`` (uploader), ``plate_crops`` (plate_node: each plate
passage's best crop, the snapshot of its plate and gate events). With ``annotated_topic`` set it also
publishes the camera's annotated view (ros/annotated.py, core/overlay.py) while someone watches.
Publishes each event as ``nano_vision_msgs/Event`` (reliable, transient local with
``history_depth`` so a restarted MQTT bridge gets what it missed), made by ``ros/events.py`` from
the engine's event model after checking its JSON against ``schemas/event.schema.json``. ``clips``
are ``nano_vision_msgs/Clip``, ``clip_status`` ``nano_vision_msgs/ClipStatus``. Services (nano_vision_msgs/srv,
time-bounded by ros.services.BoundedServices): ``~/snapshot`` (Snapshot), ``~/reload_config``
(ReloadConfig).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image
from vision_msgs.msg import Detection2DArray

from nano_vision_msgs.msg import Clip, ClipStatus
from nano_vision_msgs.msg import Event as EventMsg
from nano_vision_msgs.srv import ReloadConfig, Snapshot
from nano_vision_ros.core import overlay
from nano_vision_ros.core.errors import ConfigError
from nano_vision_ros.core.events import (
    EventEngine,
    EventSchemaError,
    parse_rules,
    validate_event,
)
from nano_vision_ros.core.events.model import Event, SnapshotRef
from nano_vision_ros.core.events.schema import parse_iso
from nano_vision_ros.core.events.snapshot import FrameBuffer, PlateCrops, SnapshotWriter
from nano_vision_ros.core.opencv_threads import limit_opencv_threads
from nano_vision_ros.ros import diagnostics, qos
from nano_vision_ros.ros.annotated import AnnotatedView
from nano_vision_ros.ros.detections import from_msg
from nano_vision_ros.ros.events import clip_from_msg, event_to_msg, status_from_msg
from nano_vision_ros.ros.image import ImageError, check_image, to_bgr
from nano_vision_ros.ros.naming import camera_name
from nano_vision_ros.ros.params import load_config
from nano_vision_ros.ros.runtime import run_node
from nano_vision_ros.ros.services import BoundedServices, to_time

log = logging.getLogger(__name__)


class EventsNodeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    site_id: str = Field("site", min_length=1, description="site id written into every event")
    device_id: str = Field("device", min_length=1, description="device id written into every event")
    camera: str = Field("", description="camera name in events; default: the node's namespace (/cam0 -> cam0)")
    rules: str = Field("", description="rules as a YAML string or a .yaml file path (see docs/EVENTS.md)")
    detections_topics: list[str] = Field(
        default_factory=lambda: ["detections"],
        min_length=1,
        description="Detection2DArray topics evaluated by `detections` rules",
    )
    faces_topic: str = Field("faces", description="face identities (Detection2DArray, class_id = identity|unknown)")
    plates_topic: str = Field("plates", description="plate reads (Detection2DArray, class_id = plate text)")
    plate_crops_topic: str = Field(
        "plate_crops",
        description="plate crops (sensor_msgs/CompressedImage, frame_id = plate track): a plate or gate "
        "event's snapshot is its passage's best crop; '' = the frame as for other events",
    )
    image_topic: str = Field("image_raw", description="frames for snapshots (sensor_msgs/Image, sensor QoS)")
    snapshots: bool = Field(True, description="cut a JPEG snapshot for each new event (and answer `snapshot`)")
    annotated_topic: str = Field(
        "",
        description="publish the annotated view here (boxes, zones with counts, violators "
        "in red with the rule, legend; drawn only while someone subscribes); '' = none",
    )
    events_topic: str = Field("events", description="output events (nano_vision_msgs/Event)")
    clips_topic: str = Field("clips", description="recorder clip notices (nano_vision_msgs/Clip)")
    clip_status_topic: str = Field("clip_status", description="uploader clip states (nano_vision_msgs/ClipStatus)")
    history_depth: int = Field(500, ge=1, le=100000, description="events kept for late-joining subscribers")
    snapshot_dir: str = Field(
        "~/.local/share/nano_vision/snapshots", description="where event JPEGs go (<dir>/<camera>/<event_id>.jpg)"
    )
    snapshot_quality: int = Field(85, ge=10, le=100)
    snapshot_max_files: int = Field(2000, ge=1, description="oldest snapshots are deleted beyond this")
    frame_buffer: int = Field(10, ge=1, le=300, description="newest frames kept to match snapshots by stamp")
    snapshot_tolerance: float = Field(0.5, ge=0.0, description="largest stamp difference frame/detections (s)")
    tick_period: float = Field(0.5, gt=0.0, description="how often absent tracks are ended when no frames come (s)")
    queue_size: int = Field(200, ge=1, description="detections waiting for the rules thread; beyond: dropped, counted")
    commands: bool = Field(True, description="offer the snapshot / reload_config services")
    command_timeout: float = Field(
        4.0, gt=0, description="longest a service call may run before it is answered 'timeout' (s)"
    )
    diagnostics_period: float = Field(1.0, gt=0)

    @field_validator("detections_topics")
    @classmethod
    def _topics(cls, v: list[str]) -> list[str]:
        if any(not t for t in v):
            raise ValueError("topic names must not be empty")
        return v


def _stamp(header: Any) -> float:
    t = header.stamp.sec + header.stamp.nanosec * 1e-9
    return t if t > 0 else time.time()


class EventsNode(Node):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__("events_node", **kwargs)
        limit_opencv_threads()  # per-frame OpenCV work: no busy-waiting pool (core.opencv_threads)
        self.cfg = load_config(self, EventsNodeConfig)
        self.camera = self.cfg.camera or camera_name(self.get_namespace()) or "camera"
        self.engine = self._make_engine()
        self.bad_frames = diagnostics.BadFrames("events-frames")  # reported by Diagnostics itself
        self.images_in = 0
        self.images_buffered = 0
        self.frames: FrameBuffer[Image] = FrameBuffer(self.cfg.frame_buffer)  # decoded only for a snapshot
        self.snapshots = SnapshotWriter(
            self.cfg.snapshot_dir, self.camera, self.cfg.snapshot_quality, self.cfg.snapshot_max_files
        )
        self._q: queue.Queue[tuple | None] = queue.Queue(maxsize=self.cfg.queue_size)
        self.dropped = 0
        self.invalid = 0
        self.processed = 0
        self.bad_notices = 0
        self.last_ms = 0.0
        self.published = 0
        self._clock_ref: tuple[float, float] | None = None
        events_qos = QoSProfile(
            depth=self.cfg.history_depth,
            history=HistoryPolicy.KEEP_LAST,
            reliability=ReliabilityPolicy.RELIABLE,
            durability=DurabilityPolicy.TRANSIENT_LOCAL,
        )
        self.pub = self.create_publisher(EventMsg, self.cfg.events_topic, events_qos)
        # results must not be lost while this process is starved of CPU: reader history as deep as the queue
        results = QoSProfile(
            depth=self.cfg.queue_size,
            history=HistoryPolicy.KEEP_LAST,
            reliability=ReliabilityPolicy.RELIABLE,
            durability=DurabilityPolicy.VOLATILE,
        )
        self.subs = [
            self.create_subscription(Detection2DArray, t, lambda m, i=i: self._enqueue(("detections", m, i)), results)
            for i, t in enumerate(self.cfg.detections_topics)
        ]
        self.subs.append(
            self.create_subscription(
                Detection2DArray, self.cfg.faces_topic, lambda m: self._enqueue(("faces", m)), results
            )
        )
        self.plate_crops = PlateCrops()
        if self.cfg.plate_crops_topic and self.cfg.snapshots:
            # plate_node sends a crop before its plates message; both go through the one rules queue
            self.subs.append(
                self.create_subscription(
                    CompressedImage, self.cfg.plate_crops_topic, lambda m: self._enqueue(("plate_crop", m)), results
                )
            )
        self.subs.append(
            self.create_subscription(
                Detection2DArray, self.cfg.plates_topic, lambda m: self._enqueue(("plates", m)), results
            )
        )
        self.subs.append(
            self.create_subscription(Clip, self.cfg.clips_topic, lambda m: self._enqueue(("clip", m)), results)
        )
        self.subs.append(
            self.create_subscription(
                ClipStatus, self.cfg.clip_status_topic, lambda m: self._enqueue(("clip_status", m)), results
            )
        )
        self.view = (
            AnnotatedView(self, self.cfg.annotated_topic, self.frames, self.cfg.snapshot_tolerance)
            if self.cfg.annotated_topic
            else None
        )
        if self.view is not None:
            self.view.zones, self.view.lines = overlay.zones_of(self.engine.rules), overlay.lines_of(self.engine.rules)
        if self.cfg.snapshots or self.view is not None:
            self.subs.append(self.create_subscription(Image, self.cfg.image_topic, self._on_image, qos.sensor(2)))
        self._thread = threading.Thread(target=self._loop, name="events-rules", daemon=True)
        self._thread.start()
        self.timer = self.create_timer(self.cfg.tick_period, lambda: self._enqueue(("tick", None)))
        self.services_host: BoundedServices | None = None
        if self.cfg.commands:
            self.services_host = BoundedServices(self, self.cfg.command_timeout)
            self.services_host.add(Snapshot, "snapshot", self._srv_snapshot)
            self.services_host.add(ReloadConfig, "reload_config", self._srv_reload)
        self.diag = diagnostics.Diagnostics(self, self._collect, self.cfg.diagnostics_period)
        if not self.engine.rules:
            self.get_logger().warning("no rules configured (parameter 'rules'): no events will be raised")
        self.get_logger().info(
            f"camera {self.camera}: {len(self.engine.rules)} rules "
            f"({', '.join(r.name for r in self.engine.rules)}) -> {self.pub.topic_name}"
        )

    def _make_engine(self) -> EventEngine:
        rules = parse_rules(self.cfg.rules, self.camera)
        return EventEngine(rules, self.cfg.site_id, self.cfg.device_id, self.camera)

    # -- callbacks: only hand over --------------------------------------------------------------
    def _on_image(self, msg: Image) -> None:
        self.images_in += 1
        try:
            check_image(msg)  # header and length only: a bad frame never displaces a good one
        except ImageError as err:
            self.bad_frames.record(err, self.images_in)
            return
        self.frames.put(_stamp(msg.header), msg)  # converted only when a snapshot is cut
        self.images_buffered += 1

    def _enqueue(self, item: tuple) -> None:
        try:
            self._q.put_nowait(item)
        except queue.Full:
            if item[0] != "tick":
                self.dropped += 1
                self.get_logger().error("rules thread behind: input dropped", throttle_duration_sec=5.0)

    # -- rules thread -----------------------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            item = self._q.get()
            if item is None:
                return
            kind, msg = item[0], item[1]  # detections also carry their topic's index
            t0 = time.perf_counter()
            try:
                if kind in ("detections", "faces", "plates"):
                    stamp = _stamp(msg.header)
                    self._clock_ref = (stamp, time.monotonic())
                    dets = from_msg(msg)
                    events = self.engine.process(kind, dets, stamp)
                    self.processed += 1
                elif kind == "plate_crop":  # kept in the rules thread's order, before the plates that follow
                    self.plate_crops.put(msg.header.frame_id, _stamp(msg.header), bytes(msg.data))
                    continue
                elif kind == "tick":
                    if self._clock_ref is None:
                        continue
                    # frame time now = last stamp + wall time since (stamps may be a replay's, not now)
                    events = self.engine.tick(self._clock_ref[0] + time.monotonic() - self._clock_ref[1])
                else:
                    events = self._on_notice(kind, msg)
                for ev in events:
                    self._emit(ev)
                if kind == "detections" and self.view is not None:
                    self.view.submit(item[2], stamp, dets)  # after the events: violators are current
            except Exception as err:  # noqa: BLE001 - one bad message must not stop the node
                self.get_logger().error(f"{kind}: {type(err).__name__}: {err}", throttle_duration_sec=5.0)
            if kind != "tick":
                self.last_ms = (time.perf_counter() - t0) * 1000.0

    def _on_notice(self, kind: str, msg: Clip | ClipStatus) -> list[Event]:
        try:
            if isinstance(msg, Clip):
                return self.engine.on_clip(clip_from_msg(msg))
            return self.engine.on_clip_status(status_from_msg(msg))
        except ValueError as err:
            self.bad_notices += 1
            self.get_logger().warning(f"{kind} notice ignored ({msg.path[:200]!r}): {err}", throttle_duration_sec=5.0)
            return []

    def _emit(self, ev: Event) -> None:
        if ev.state == "new" and self.cfg.snapshots:
            snap = self._snapshot(ev)
            if snap is not None:
                ev.snapshot = SnapshotRef(**snap)
                self.engine.attach_snapshot(ev.event_id, ev.snapshot)
        try:
            validate_event(ev.to_json())
        except EventSchemaError as err:
            self.invalid += 1
            self.get_logger().error(f"event {ev.event_id} not published, invalid: {err}")
            return
        self.pub.publish(event_to_msg(ev))
        self.published += 1
        if self.view is not None:
            self.view.violations.update(ev.event_id, ev.rule, ev.state, ev.track_ids)
        if ev.state != "update":
            self.get_logger().info(ev.message or ev.type)

    def _snapshot(self, ev: Event) -> dict[str, Any] | None:
        if ev.plate is not None and ev.track_ids:
            # a plate / gate event: the passage's best plate crop (plate_node), else the frame
            crop = self.plate_crops.get(str(ev.track_ids[0]))
            snap = self.snapshots.write_jpeg(ev.event_id, crop[1], crop[0]) if crop else None
            if snap is not None:
                return snap
        found = self.frames.nearest(parse_iso(ev.stamp), self.cfg.snapshot_tolerance)
        if found is None:
            return None
        try:
            frame = to_bgr(found[1])
        except Exception as err:  # noqa: BLE001 - an undecodable frame: event without snapshot
            self.get_logger().warning(f"snapshot frame not usable: {err}", throttle_duration_sec=5.0)
            return None
        # a PPE violation's snapshot is the person's crop (the evidence is about that person)
        return self.snapshots.write(ev.to_json(), frame, found[0], crop=ev.evidence is not None)

    # -- services ---------------------------------------------------------------------------------
    def _srv_snapshot(self, req: Snapshot.Request, resp: Snapshot.Response) -> Snapshot.Response:
        cam = req.camera
        if cam and cam != self.camera:
            raise ValueError(f"this events node serves camera {self.camera!r}, not {cam!r}")
        found = self.frames.nearest(time.time(), float("inf"))
        if found is None:
            raise ValueError(f"no frame received yet on {self.cfg.image_topic!r}")
        frame = to_bgr(found[1])
        ev = {"event_id": f"snapshot-{int(found[0] * 1000)}", "type": "snapshot", "boxes": [], "labels": []}
        snap = self.snapshots.write(ev, frame, found[0])
        if snap is None:
            raise ValueError("snapshot could not be written (see the node log)")
        resp.camera, resp.path, resp.stamp = self.camera, snap["path"], to_time(found[0])
        resp.width, resp.height = snap["width"], snap["height"]
        return resp

    def _srv_reload(self, req: ReloadConfig.Request, resp: ReloadConfig.Response) -> ReloadConfig.Response:
        try:
            engine = self._make_engine()
        except ConfigError as err:
            raise ValueError(str(err)) from None
        for ev in self.engine.flush(time.time()):
            self._emit(ev)
        self.engine = engine
        if self.view is not None:
            self.view.zones, self.view.lines = overlay.zones_of(engine.rules), overlay.lines_of(engine.rules)
        resp.rules = [r.name for r in engine.rules]
        return resp

    def _collect(self) -> tuple[int, str, dict[str, object]]:
        level = diagnostics.OK
        msg = f"{self.engine.active()} active events"
        if self.dropped or self.invalid:
            level, msg = diagnostics.WARN, f"{self.dropped} inputs dropped, {self.invalid} invalid events"
        return (
            level,
            msg,
            {
                "camera": self.camera,
                "rules": len(self.engine.rules),
                "detections_processed": self.processed,
                "events_published": self.published,
                "active_events": self.engine.active(),
                "inputs_dropped": self.dropped,
                "invalid_events": self.invalid,
                "bad_notices": self.bad_notices,
                "images_received": self.images_in,
                "images_buffered": self.images_buffered,
                "snapshots_written": self.snapshots.written,
                "snapshots_failed": self.snapshots.failed,
                "plate_crops": len(self.plate_crops),
                "latency_ms": self.last_ms,
                "queue": self._q.qsize(),
                **({"annotated_published": self.view.published} if self.view is not None else {}),
                **self._compliance(),
            },
        )

    def _compliance(self) -> dict[str, object]:
        """PPE rules: people checked, violators and compliant share per rule and zone (in the bridge's stats)."""
        out: dict[str, object] = {}
        for rule in self.engine.rules:
            if hasattr(rule, "compliance"):
                for zone, c in rule.compliance().items():
                    for k, v in c.items():
                        out[f"compliance.{rule.name}.{zone}.{k}"] = v
        return out

    def destroy_node(self) -> None:
        view = getattr(self, "view", None)
        if view is not None:
            view.stop()
        q = getattr(self, "_q", None)  # None when __init__ failed half-way (rclpy cleans up anyway)
        if q is not None:
            try:
                q.put_nowait(None)
            except queue.Full:
                pass
        return super().destroy_node()


def main(args: list[str] | None = None) -> int:
    return run_node(EventsNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
