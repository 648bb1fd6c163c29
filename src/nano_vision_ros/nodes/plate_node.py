"""plate_node: read Chinese licence plates in vehicle boxes (or whole frames) and publish them.

Mode ``vehicles`` (default): subscribes the camera's ``image_raw`` and the COCO detector's
``detections`` and pairs them by header stamp (a small buffer on each side; unmatched entries
age out). Modes ``frame`` and ``detector``: images only. Callbacks only pair and submit to a
``LatestWorker``; the worker runs the text detector + recogniser.

Publishes ``plates`` (vision_msgs/Detection2DArray): per plate ``results[0]`` = plate text
(voted over the track) with the reading confidence, ``results[1].class_id`` = ``colour:<blue|
yellow|green|white|black>``, ``results[2].class_id`` = ``listed:<allow|deny|none>``, ``id`` = track.

Publishes ``plate_crops`` (sensor_msgs/CompressedImage, JPEG) just before a ``plates`` message
whenever a plate's passage has a better rectified crop than the one last sent: ``header.stamp`` =
that frame's stamp, ``header.frame_id`` = the plate's detection ``id`` (its track). The events
node makes it the plate / gate event's snapshot (the plate, not the whole frame).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from typing import Any

import cv2
from pydantic import Field
from rclpy.lifecycle import LifecycleState, TransitionCallbackReturn
from sensor_msgs.msg import CompressedImage, Image
from vision_msgs.msg import Detection2DArray, ObjectHypothesisWithPose

from nano_vision_ros.core.detection.types import Detections
from nano_vision_ros.core.recognition.plates import PlateReader, PlatesConfig
from nano_vision_ros.ros import diagnostics, qos
from nano_vision_ros.ros.detections import from_msg, to_msg
from nano_vision_ros.ros.image import to_bgr
from nano_vision_ros.ros.lifecycle import ModelLifecycleNode
from nano_vision_ros.ros.params import load_config
from nano_vision_ros.ros.runtime import run_node
from nano_vision_ros.ros.worker import LatestWorker

log = logging.getLogger(__name__)


class PlateNodeConfig(PlatesConfig):
    image_topic: str = Field("image_raw", description="input frames (sensor_msgs/Image)")
    detections_topic: str = Field("detections", description="vehicle detections (Detection2DArray) in mode vehicles")
    plates_topic: str = Field("plates", description="output Detection2DArray topic")
    crops_topic: str = Field(
        "plate_crops",
        description="each passage's best rectified plate crop (CompressedImage JPEG, frame_id = the "
        "plate's detection id), sent when it improves; empty = not published",
    )
    crop_quality: int = Field(90, ge=10, le=100, description="JPEG quality of the plate crops")
    pair_buffer: int = Field(
        8, ge=1, le=100, description="unpaired images / detections kept while waiting for the other"
    )
    publish_empty: bool = Field(False, description="also publish frames without plates (empty arrays)")
    diagnostics_period: float = Field(1.0, gt=0, description="diagnostics period in s")


def _stamp(header: Any) -> tuple[int, int]:
    return int(header.stamp.sec), int(header.stamp.nanosec)


class PlateNode(ModelLifecycleNode):
    def __init__(self, **kwargs: Any) -> None:
        self.reader: PlateReader | None = None
        self._lock = threading.Lock()
        super().__init__("plate_node", **kwargs)
        self.cfg = load_config(self, PlateNodeConfig, on_change=self._on_change)
        self.pub = self.create_publisher(Detection2DArray, self.cfg.plates_topic, qos.RELIABLE)
        self.crops_pub = (
            self.create_publisher(CompressedImage, self.cfg.crops_topic, qos.RELIABLE) if self.cfg.crops_topic else None
        )
        self._sent_crops: OrderedDict[str, int] = OrderedDict()  # detection id -> id() of the crop last sent
        self.crops_sent = 0
        self._images: OrderedDict[tuple[int, int], Image] = OrderedDict()
        self._dets: OrderedDict[tuple[int, int], Detection2DArray] = OrderedDict()
        self._pair_lock = threading.Lock()
        self.frames = 0
        self.plates = 0
        self.unpaired = 0
        self.last_ms = 0.0
        self.diag = diagnostics.Diagnostics(self, self._collect, self.cfg.diagnostics_period)

    def _on_change(self, new: PlateNodeConfig) -> None:
        """Allow / deny lists change at run time; anything else needs a reconfigure."""
        changed = {k for k in PlateNodeConfig.model_fields if getattr(new, k) != getattr(self.cfg, k)}
        if changed - {"allow_list", "deny_list"}:
            raise ValueError(f"{', '.join(sorted(changed))}: only allow_list / deny_list change at run time")
        with self._lock:
            if self.reader is not None:
                self.reader.set_lists(new.allow_list, new.deny_list)
        self.cfg = new

    # --- lifecycle -----------------------------------------------------------------------------
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        reader = self._load_model("plate models", lambda: PlateReader(self.cfg))
        if reader is None:
            return TransitionCallbackReturn.FAILURE
        with self._lock:
            self.reader = reader
        self.get_logger().info(f"plates: finder {self.cfg.finder.mode}, reader {self.cfg.reader.kind}")
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.worker = LatestWorker(self._handle, name="plate-worker")
        if self.cfg.finder.mode == "vehicles":
            self.input_subs = [
                self.create_subscription(Image, self.cfg.image_topic, self._on_image, qos.sensor(2)),
                self.create_subscription(Detection2DArray, self.cfg.detections_topic, self._on_dets, qos.RELIABLE),
            ]
        else:
            self.input_subs = [
                self.create_subscription(
                    Image, self.cfg.image_topic, lambda m: self.worker.submit((m, None)), qos.SENSOR
                )
            ]
        return super().on_activate(state)

    def _free(self) -> None:
        with self._lock:
            if self.reader is not None:
                self.reader.close()
                self.reader = None

    # --- pairing (cheap bookkeeping only) ----------------------------------------------------------
    def _on_image(self, msg: Image) -> None:
        key = _stamp(msg.header)
        with self._pair_lock:
            dets = self._dets.pop(key, None)
            if dets is None:
                self._push(self._images, key, msg)
                return
        if self.worker is not None:
            self.worker.submit((msg, dets))

    def _on_dets(self, msg: Detection2DArray) -> None:
        key = _stamp(msg.header)
        with self._pair_lock:
            img = self._images.pop(key, None)
            if img is None:
                self._push(self._dets, key, msg)
                return
        if self.worker is not None:
            self.worker.submit((img, msg))

    def _push(self, buf: OrderedDict, key: tuple[int, int], msg: Any) -> None:
        buf[key] = msg
        while len(buf) > self.cfg.pair_buffer:
            buf.popitem(last=False)
            self.unpaired += 1

    # --- work ----------------------------------------------------------------------------------
    def _handle(self, item: tuple[Image, Detection2DArray | None]) -> None:
        img_msg, det_msg = item
        frame = to_bgr(img_msg)  # a bad frame raises ImageError: counted by the worker's BadFrames
        vehicles: Detections | None = from_msg(det_msg) if det_msg is not None else None
        crops: list[Any] = []
        if vehicles is not None and len(vehicles) == 0:  # no vehicles: nothing to read
            dets = Detections.empty()
        else:
            t0 = time.perf_counter()
            with self._lock:
                if self.reader is None:
                    return
                dets = self.reader.process(frame, vehicles)
                crops = list(self.reader.best_crops)
            self.last_ms = (time.perf_counter() - t0) * 1000.0
        self.frames += 1
        self.plates += len(dets)
        if len(dets) == 0 and not self.cfg.publish_empty:
            return
        out = to_msg(dets, img_msg.header)
        for d, a in zip(out.detections, dets.attributes):
            for key in ("colour", "listed"):
                h = ObjectHypothesisWithPose()
                h.hypothesis.class_id = f"{key}:{a.get(key, 'unknown')}"
                h.hypothesis.score = 1.0
                d.results.append(h)
        self._publish_crops(out, crops)
        self.pub.publish(out)

    def _publish_crops(self, out: Detection2DArray, crops: list[Any]) -> None:
        """Each plate's best crop, when it changed since last sent (sent before the plates message,
        so the events node has it when the plates arrive)."""
        if self.crops_pub is None:
            return
        for d, crop in zip(out.detections, crops):
            if crop is None or not d.id or self._sent_crops.get(d.id) == id(crop):
                continue
            ok, jpg = cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, self.cfg.crop_quality])
            if not ok:
                continue
            msg = CompressedImage(format="jpeg", data=jpg.tobytes())
            msg.header.stamp, msg.header.frame_id = out.header.stamp, d.id
            self.crops_pub.publish(msg)
            self.crops_sent += 1
            self._sent_crops[d.id] = id(crop)
            self._sent_crops.move_to_end(d.id)
            while len(self._sent_crops) > 256:
                self._sent_crops.popitem(last=False)

    def _collect(self) -> tuple[int, str, dict[str, object]]:
        w = self.worker
        values: dict[str, object] = {
            "frames": self.frames,
            "plates": self.plates,
            "last_ms": self.last_ms,
            "unpaired": self.unpaired,
            "crops_sent": self.crops_sent,
            "dropped": w.dropped if w else 0,
            "errors": w.errors if w else 0,
        }
        if self.reader is None:
            return diagnostics.ERROR if self.load_error else diagnostics.OK, self.load_error or "not configured", values
        if w and w.last_error:
            values["last_error"] = w.last_error
        return diagnostics.OK, "active" if self.input_subs else "inactive", values

    def destroy_node(self) -> None:
        self._stop_input()
        self._free()
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    return run_node(PlateNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
