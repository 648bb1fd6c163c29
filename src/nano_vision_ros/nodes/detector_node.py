"""detector_node: one lifecycle node per task (objects, helmet, vest, smoke/fire, mask…) on a camera.

A task profile (``config/tasks/<task>.yaml``, or a path) names the model, decoder, labels and
thresholds, or a multi-stage pipeline class; several detector nodes can watch one camera.
Lifecycle: configure loads and warms the model (errors leave the node unconfigured and running),
activate subscribes, deactivate unsubscribes, cleanup frees the model.

Topics (relative, so they live in the camera namespace): subscribes ``image_raw`` (sensor QoS,
newest frame only); publishes ``detections`` (vision_msgs/Detection2DArray: class_id = label,
id = track id), ``detections/labels`` (LabelInfo, latched), ``image_annotated`` (optional),
``/diagnostics``. Service ``~/set_threshold`` (nano_vision_msgs/SetThreshold): sets the
``score_threshold`` / ``nms_threshold`` parameters, so it and ``ros2 param set`` are one path.
"""

from __future__ import annotations

import logging
import threading
import time
from functools import partial
from typing import Any

import numpy as np
from pydantic import BaseModel, Field, field_validator
from rclpy.lifecycle import LifecycleState, TransitionCallbackReturn
from rclpy.parameter import Parameter
from sensor_msgs.msg import Image
from vision_msgs.msg import Detection2DArray, LabelInfo

from nano_vision_msgs.srv import SetThreshold
from nano_vision_ros.core import overlay
from nano_vision_ros.core.attributes.classifier import (
    AttributeClassifier,
    AttributeStage,
    VoteConfig,
)
from nano_vision_ros.core.detection.motion import MotionConfig, MotionGate, parse_masks
from nano_vision_ros.core.detection.profiles import Backend, ProfileOverrides, build_detector, load_profile
from nano_vision_ros.core.detection.types import Detections
from nano_vision_ros.core.errors import (
    ConfigError,
    ModelError,
    NanoVisionError,
    RuntimeMissingError,
)
from nano_vision_ros.core.opencv_threads import limit_opencv_threads
from nano_vision_ros.core.options import options_from
from nano_vision_ros.core.tracking import ByteTracker, TrackerConfig
from nano_vision_ros.ros import diagnostics, qos
from nano_vision_ros.ros.detections import label_info, to_msg
from nano_vision_ros.ros.image import converter, to_bgr
from nano_vision_ros.ros.lifecycle import ModelLifecycleNode
from nano_vision_ros.ros.naming import camera_name
from nano_vision_ros.ros.params import load_config
from nano_vision_ros.ros.runtime import run_node
from nano_vision_ros.ros.services import BoundedServices
from nano_vision_ros.ros.worker import LatestWorker

log = logging.getLogger(__name__)


class TrackingParams(BaseModel):
    """ByteTrack settings; the same names as core.tracking.TrackerConfig (plus `enabled`)."""

    enabled: bool = Field(True, description="assign track ids (ByteTrack) to detections")
    high_threshold: float = Field(0.5, ge=0, le=1, description="score for first-round matches and new tracks")
    low_threshold: float = Field(0.1, ge=0, le=1, description="lower scores still keep an existing track alive")
    match_iou: float = Field(0.2, ge=0, le=1, description="minimum IoU between a predicted track and a detection")
    track_buffer: int = Field(30, ge=0, description="frames a lost track keeps its id")
    class_aware: bool = Field(True, description="never match a track to a detection of another class")

    def to_core(self) -> TrackerConfig:
        """The core's config: the shared fields by name; a new track needs the first-round score."""
        return options_from(TrackerConfig, self, new_track_threshold=self.high_threshold)


class MotionParams(BaseModel):
    enabled: bool = Field(True, description="run the model only on motion (+ keep-alive); off = every frame")
    width: int = Field(160, ge=16, description="width of the grey image motion is found in")
    sensitivity: int = Field(25, ge=1, le=255, description="grey-level change (0..255) that counts as motion")
    min_area: float = Field(0.0005, ge=0, lt=1, description="smallest motion region, share of the frame")
    alpha: float = Field(0.2, gt=0, le=1, description="background learning rate per frame")
    keepalive_period: float = Field(1.0, gt=0, description="s: the model runs at least this often without motion")
    hold: float = Field(0.5, ge=0, description="s: the model keeps running this long after motion stops")
    masks: str = Field("", description="YAML list of polygons to ignore, source pixels: [[[x,y],[x,y],[x,y]], ...]")
    max_rate: float = Field(
        0.0, ge=0, description="Hz: the model runs at most this often, motion or not (0 = no cap; several cameras)"
    )

    @field_validator("masks")
    @classmethod
    def _masks(cls, v: str) -> str:
        parse_masks(v)  # ValueError names the polygon
        return v

    def to_core(self) -> MotionConfig:
        """The core's config: the shared fields by name (test_options checks they cannot drift)."""
        return options_from(MotionConfig, self, masks=parse_masks(self.masks))


class AttributeParams(BaseModel):
    """Attribute classifiers on person tracks (PPE: hard hat, vest; docs/PPE.md)."""

    models: list[str] = Field(
        default_factory=list,
        description="classifier ONNX files from `nano-vision attributes "
        "train` (backbone + head, one each); [] = no attribute stage",
    )
    person_labels: list[str] = Field(
        default_factory=lambda: ["person"], description="labels whose tracks are classified"
    )
    min_attempts: int = Field(3, ge=1, description="vote: attempts before a class is assigned")
    agreement: float = Field(0.6, gt=0, le=1, description="vote: share of the window's attempts the class must have")
    min_score: float = Field(0.8, ge=0, le=1, description="vote: mean score of those attempts")
    window: int = Field(7, ge=1, description="vote: last attempts considered")
    period: float = Field(1.0, gt=0, description="s between attempts on a track while undecided")
    recheck: float = Field(5.0, gt=0, description="s between attempts on a track once assigned")
    min_height: int = Field(32, ge=8, description="person box height (px) below which no crop is classified")

    def vote(self) -> VoteConfig:
        return VoteConfig(
            self.min_attempts,
            self.agreement,
            self.min_score,
            self.window,
            self.period,
            self.recheck,
            forget=max(10.0, 3 * self.recheck),
        )


class DetectorConfig(BaseModel):
    task: str = Field("coco_objects", description="task profile name in config/tasks, or a path to a profile YAML")
    model: str | None = Field(
        None, min_length=1, description="model file overriding the profile's; not set = the profile's"
    )
    backend: Backend | None = Field(
        None, description="auto | onnxruntime | tensorrt | opencv; not set = the profile's (auto: by file suffix)"
    )
    device: str | None = Field(
        None,
        min_length=1,
        description="auto | cpu | cuda | tensorrt (onnxruntime), cuda:N (tensorrt); not set = the profile's",
    )
    score_threshold: float | None = Field(None, ge=0, le=1, description="minimum score; not set = the profile's")
    nms_threshold: float | None = Field(None, ge=0, le=1, description="NMS IoU threshold; not set = the profile's")
    input_topic: str = Field("image_raw", description="image topic (sensor_msgs/Image)")
    input_topics: list[str] = Field(
        default_factory=list,
        description="several cameras, one model: image topics with "
        "a namespace (/cam0/image_raw); outputs go to each one's namespace; [] = input_topic",
    )
    detections_topic: str = Field("detections", description="Detection2DArray output topic")
    annotate: bool = Field(True, description="publish image_annotated (only computed while someone subscribes)")
    annotated_topic: str = Field("image_annotated", description="annotated image topic")
    warmup_runs: int = Field(2, ge=0, description="inferences on a blank frame at configure")
    threads: int | None = Field(
        None,
        ge=1,
        description="ONNX Runtime intra-op threads; not set (or 0) = the profile's, else usable cores // "
        "detectors_on_machine",
    )
    detectors_on_machine: int = Field(
        1,
        ge=1,
        description="detector nodes sharing this machine's CPU (the site sets it; "
        "auto threads divide the cores among them)",
    )
    tracking: TrackingParams = Field(default_factory=TrackingParams)
    motion: MotionParams = Field(default_factory=MotionParams)
    attributes: AttributeParams = Field(default_factory=AttributeParams)
    command_timeout: float = Field(
        4.0, gt=0, description="longest a set_threshold call may take before it is answered 'timeout' (s)"
    )
    diagnostics_period: float = Field(1.0, gt=0, description="diagnostics period in s")

    @field_validator("model", "backend", "device", mode="before")
    @classmethod
    def _empty_is_not_set(cls, v: Any) -> Any:
        """A ROS parameter cannot be None: its empty form ('', as params files wrote it) means not set."""
        return None if v == "" else v

    @field_validator("threads", mode="before")
    @classmethod
    def _zero_is_not_set(cls, v: Any) -> Any:
        """threads 0 (ONNX Runtime's own 'default', as params files wrote it) means not set."""
        return None if v == 0 and not isinstance(v, bool) else v

    def overrides(self) -> ProfileOverrides:
        """What this node sets over its task profile (merged by core.detection.profiles.with_overrides)."""
        return ProfileOverrides(**self.model_dump(include=set(ProfileOverrides.model_fields)))


def annotate(image: np.ndarray, dets: Detections) -> np.ndarray:
    """Boxes, labels, scores and track ids drawn on a copy of the frame (core.overlay; the events
    node draws the same with zones and violations)."""
    return overlay.draw(image, overlay.scene(dets))


def _stamp_s(header: Any) -> float:
    return header.stamp.sec + header.stamp.nanosec * 1e-9


class _Ema:
    def __init__(self, alpha: float = 0.1) -> None:
        self.alpha, self.value = alpha, 0.0

    def add(self, x: float) -> None:
        self.value = x if self.value == 0.0 else self.value + self.alpha * (x - self.value)


class _Camera:
    """One input's state: its publishers, tracker, motion gate and the last model run's detections."""

    def __init__(self, topic: str, prefix: str) -> None:
        self.topic, self.prefix = topic, prefix
        self.det_pub: Any = None
        self.label_pub: Any = None
        self.ann_pub: Any = None
        self.tracker: ByteTracker | None = None
        self.gate: MotionGate | None = None
        self.held: Detections | None = None  # re-sent on gated frames
        self.held_msg: Detection2DArray | None = None  # ...as this message, built once per model run
        self.attributes: AttributeStage | None = None
        self.worker: LatestWorker[Image] | None = None
        self.frames = 0


def _camera_prefixes(cfg: DetectorConfig) -> list[tuple[str, str]]:
    """(input topic, output prefix): one camera on input_topic with relative outputs, or one per input_topics."""
    if not cfg.input_topics:
        return [(cfg.input_topic, "")]
    out = []
    for t in cfg.input_topics:
        ns = t.rstrip("/").rsplit("/", 1)[0] if "/" in t.strip("/") else ""
        if not ns:
            raise ConfigError(
                f"parameter 'input_topics': {t!r} has no camera namespace (e.g. /cam0/image_raw)", "input_topics"
            )
        out.append((t, ns + "/"))
    if len({p for _, p in out}) != len(out):
        raise ConfigError(f"parameter 'input_topics': two topics share a namespace: {cfg.input_topics}", "input_topics")
    return out


class DetectorNode(ModelLifecycleNode):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__("detector_node", **kwargs)
        limit_opencv_threads()  # per-frame OpenCV work: no busy-waiting pool (core.opencv_threads)
        self.cfg = load_config(self, DetectorConfig, on_change=self._on_param_change)
        self.detector: Any = None
        self.cameras: list[_Camera] = []
        self.state_text = "unconfigured"
        self.last_error = ""
        self._lock = threading.Lock()
        self._conv = converter()
        self.frames = 0
        self._t_first = 0.0
        self._fps = _Ema()
        self._last_t = 0.0
        self._stages = {k: _Ema() for k in ("motion", "pre", "infer", "post", "track", "publish", "total")}
        self.camera = camera_name(self.get_namespace())
        self.services_host = BoundedServices(self, self.cfg.command_timeout)
        self.services_host.add(SetThreshold, "set_threshold", self._srv_set_threshold)
        self.diag = diagnostics.Diagnostics(self, self._collect, self.cfg.diagnostics_period)

    # -- lifecycle ---------------------------------------------------------------------------------
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        c = self.cfg
        t0 = time.monotonic()
        try:
            prefixes = _camera_prefixes(c)
            profile = load_profile(c.task)
            det = build_detector(profile, **c.overrides().model_dump(), detectors=c.detectors_on_machine)
            if hasattr(det, "warmup") and c.warmup_runs:
                det.warmup(c.warmup_runs)
            classifiers = [AttributeClassifier(m) for m in c.attributes.models]
        except (ConfigError, ModelError, RuntimeMissingError, NanoVisionError) as err:
            self.last_error = f"{type(err).__name__}: {err}"
            self.state_text = "unconfigured (configure failed)"
            self.get_logger().error(f"configure failed for task {c.task!r}: {self.last_error}")
            return TransitionCallbackReturn.FAILURE
        except Exception as err:  # noqa: BLE001 - a broken pipeline class must not take the node down
            self.last_error = f"{type(err).__name__}: {err}"
            self.state_text = "unconfigured (configure failed)"
            self.get_logger().error(f"configure failed for task {c.task!r}: {self.last_error}")
            return TransitionCallbackReturn.FAILURE
        self.detector = det
        self.profile = profile
        self.last_error = ""
        tc = c.tracking
        self.cameras = []
        for topic, prefix in prefixes:
            cam = _Camera(topic, prefix)
            cam.tracker = ByteTracker(tc.to_core()) if tc.enabled else None
            cam.gate = MotionGate(c.motion.to_core())
            if classifiers:  # one stage (votes per track id) per camera, sharing the loaded classifiers
                cam.attributes = AttributeStage(
                    classifiers, c.attributes.vote(), tuple(c.attributes.person_labels), c.attributes.min_height
                )
            cam.det_pub = self.create_publisher(Detection2DArray, prefix + c.detections_topic, qos.RELIABLE)
            cam.label_pub = self.create_publisher(LabelInfo, prefix + c.detections_topic + "/labels", qos.LATCHED)
            cam.ann_pub = (
                self.create_publisher(Image, prefix + c.annotated_topic, qos.sensor(1)) if c.annotate else None
            )
            self.cameras.append(cam)
        self._publish_labels()
        backend = getattr(getattr(det, "backend", None), "name", type(det).__name__)
        self.state_text = "inactive"
        self.get_logger().info(
            f"task {profile.name!r} loaded ({backend}, {len(det.labels)} classes) in {time.monotonic() - t0:.1f}s"
        )
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        # one newest-frame worker per camera; they share the model (its lock), so inferences run
        # one after another (the shipped models have a fixed batch of 1: no batching across cameras)
        self.input_subs = []
        for cam in self.cameras:
            cam.worker = LatestWorker(partial(self._handle, cam), name=f"detector{len(self.input_subs)}")
            self.input_subs.append(self.create_subscription(Image, cam.topic, cam.worker.submit, qos.SENSOR))
        self.worker = self.cameras[0].worker if self.cameras else None
        self.state_text = "active"
        self.get_logger().info("detecting on " + ", ".join(self.resolve_topic_name(c.topic) for c in self.cameras))
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        result = super().on_deactivate(state)
        self.state_text = "inactive"
        return result

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        result = super().on_cleanup(state)
        self.state_text = "unconfigured"
        return result

    def _free(self) -> None:
        with self._lock:
            if self.detector is not None:
                try:
                    self.detector.close()
                except Exception as err:  # noqa: BLE001
                    self.get_logger().warning(f"closing the detector: {err}")
                self.detector = None
        for cam in self.cameras:
            for pub in (cam.det_pub, cam.label_pub, cam.ann_pub):
                if pub is not None:
                    self.destroy_publisher(pub)
        self.cameras = []

    def _stop_input(self) -> None:
        super()._stop_input()  # unsubscribes all inputs, stops the first camera's worker
        for cam in self.cameras:
            if cam.worker is not None:
                cam.worker.stop()  # idempotent for the one already stopped
                cam.worker = None

    def destroy_node(self) -> None:
        self._stop_input()
        self._free()
        super().destroy_node()

    # -- frames ------------------------------------------------------------------------------------
    def _handle(self, cam: _Camera, msg: Image) -> None:
        t0 = time.perf_counter()
        img = to_bgr(msg)  # ImageError names a bad frame; the worker counts it and goes on
        with self._lock:
            det, gate = self.detector, cam.gate
            if det is None or cam.det_pub is None:
                return
            ran = gate is None or gate.should_run(img, time.monotonic())
            tm = time.perf_counter()
            if ran:
                dets = det.detect(img)
                t1 = time.perf_counter()
                if cam.tracker is not None:
                    dets = cam.tracker.update(dets)
                if cam.attributes is not None:  # only the tracks due a re-check are classified
                    dets = cam.attributes.apply(img, dets, _stamp_s(msg.header))
                cam.held, cam.held_msg = dets, None
            else:
                # no motion: the scene is as the last model run saw it, so its tracked detections
                # are sent again (events_node ends a track absent for end_after s; ids must survive)
                t1 = time.perf_counter()
                dets = cam.held if cam.held is not None else Detections.empty(list(det.labels))
        t2 = time.perf_counter()
        out = None if ran else cam.held_msg
        if out is None:
            out = to_msg(dets, msg.header)
            cam.held_msg = out
        else:  # a gated frame: the last run's message, stamped with this frame (no per-box rebuild)
            out.header = msg.header
            for d in out.detections:
                d.header = msg.header
        cam.det_pub.publish(out)
        if cam.ann_pub is not None and cam.ann_pub.get_subscription_count() > 0:
            cam.ann_pub.publish(self._conv.to_msg(annotate(img, dets), "bgr8", msg.header))
        t3 = time.perf_counter()
        self._stages["motion"].add((tm - t0) * 1e3)
        if ran:
            timings = getattr(det, "timings", None) or {}
            for k in ("pre", "infer", "post"):
                if k in timings:
                    self._stages[k].add(timings[k])
            self._stages["track"].add((t2 - t1) * 1e3)
        self._stages["publish"].add((t3 - t2) * 1e3)
        self._stages["total"].add((t3 - t0) * 1e3)
        now = time.monotonic()
        if self._last_t:
            self._fps.add(1.0 / max(now - self._last_t, 1e-6))
        self._last_t = now
        self.frames += 1
        cam.frames += 1

    def _publish_labels(self) -> None:
        if self.detector is None:
            return
        thr = float(getattr(self.detector, "score_threshold", self.cfg.score_threshold or 0.0))
        msg = label_info(list(self.detector.labels), thr)
        msg.header.stamp = self.get_clock().now().to_msg()
        for cam in self.cameras:
            if cam.label_pub is not None:
                cam.label_pub.publish(msg)

    # -- thresholds: parameters (ros2 param set and the set_threshold service) ---------------------
    def _apply_thresholds(self, score: float | None, nms: float | None) -> dict[str, float]:
        for name, v in (("score_threshold", score), ("nms_threshold", nms)):
            if v is not None and not (0.0 <= float(v) <= 1.0):
                raise ValueError(f"{name} must be within 0..1 (got {v})")
        with self._lock:
            det = self.detector
            if det is None:
                raise RuntimeError("no model loaded (node not configured)")
            if score is not None:
                det.score_threshold = float(score)
            if nms is not None:
                det.nms_threshold = float(nms)
            for cam in self.cameras:
                if cam.gate is not None:
                    cam.gate.force()  # the next frame shows the new thresholds, motion or not
            result = {k: float(getattr(det, k)) for k in ("score_threshold", "nms_threshold") if hasattr(det, k)}
        self._publish_labels()
        return result

    def _on_param_change(self, new: DetectorConfig) -> None:
        old = self.cfg
        changed = {k for k in DetectorConfig.model_fields if getattr(new, k) != getattr(old, k)}
        live = {"score_threshold", "nms_threshold"}
        if changed - live:
            self.cfg = new  # the rest applies at the next configure (cleanup + configure)
            return
        if self.detector is not None:
            self._apply_thresholds(new.score_threshold, new.nms_threshold)
        self.cfg = new

    def _srv_set_threshold(self, req: SetThreshold.Request, resp: SetThreshold.Response) -> SetThreshold.Response:
        """Set the parameters (validated and applied by the same callback as `ros2 param set`)."""
        params = [
            Parameter(k, value=round(float(v), 6))
            for k, v in (("score_threshold", req.score_threshold), ("nms_threshold", req.nms_threshold))
            if v >= 0
        ]
        if not params:
            raise ValueError("give score_threshold and/or nms_threshold (0..1; negative = unchanged)")
        result = self.set_parameters_atomically(params)
        if not result.successful:
            raise ValueError(result.reason)
        det = self.detector
        for k in ("score_threshold", "nms_threshold"):
            setattr(resp, k, float(getattr(det, k, getattr(self.cfg, k)) if det is not None else getattr(self.cfg, k)))
        resp.message = "" if det is not None else "not configured: applies at configure"
        return resp

    # -- diagnostics -------------------------------------------------------------------------------
    def _collect(self) -> tuple[int, str, dict[str, object]]:
        values: dict[str, object] = {
            "state": self.state_text,
            "task": self.cfg.task,
            "frames": self.frames,
            "fps": self._fps.value,
        }
        gates = [c.gate for c in self.cameras if c.gate is not None]
        if gates:
            runs, seen = sum(g.model_runs for g in gates), sum(g.frames for g in gates)
            values.update(
                model_runs=runs,
                gated_share=round(1.0 - runs / seen, 4) if seen else 0.0,
                motion_gating=gates[0].config.enabled,
                motion_share=max((g.last_motion.share for g in gates if g.last_motion is not None), default=0.0),
            )
        if len(self.cameras) > 1:
            for cam in self.cameras:
                name = camera_name(cam.prefix)
                values[f"{name}.frames"] = cam.frames
                if cam.gate is not None:
                    values[f"{name}.model_runs"] = cam.gate.model_runs
        for k, e in self._stages.items():
            values[f"{k}_ms"] = e.value
        stages = [c.attributes for c in self.cameras if c.attributes is not None]
        if stages:
            values["attribute_classifiers"] = ",".join(f"{a.name}:{a.version}" for a in stages[0].classifiers)
            values["attribute_crops"] = sum(a.runs for a in stages)
            values["attribute_ms"] = max(a.last_ms for a in stages)
        w = self.worker
        if w is not None:
            values.update(dropped=w.dropped, errors=w.errors, last_frame_error=w.last_error)
        det = self.detector
        if det is not None:
            values["backend"] = getattr(getattr(det, "backend", None), "name", type(det).__name__)
            values["score_threshold"] = getattr(det, "score_threshold", "")
            threads = getattr(getattr(det, "backend", None), "threads", None)
            if threads is not None:
                values["threads"] = threads
        if self.last_error:
            values["error"] = self.last_error
            return diagnostics.ERROR, self.last_error[:200], values
        if det is None:
            return diagnostics.WARN, self.state_text, values
        if w is not None and w.errors and w.last_error:
            return diagnostics.WARN, f"{self.state_text}; frame errors: {w.last_error[:120]}", values
        return diagnostics.OK, f"{self.state_text}, {self._fps.value:.1f} fps", values


def main(args: list[str] | None = None) -> int:
    return run_node(DetectorNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
