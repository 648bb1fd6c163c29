"""face_node: recognise enrolled faces in a camera's frames; enroll / delete over the command bus.

Lifecycle: models load and warm in ``configure``, the frame subscription exists only while
``active``, models are freed in ``cleanup``. The image callback only submits to a
``LatestWorker``; commands run on their own worker thread, so enrolling never blocks frames
for long (both share the recogniser under a lock).

Publishes ``faces`` (vision_msgs/Detection2DArray): per face ``results[0].class_id`` = identity
or ``unknown``, ``score`` = cosine similarity, ``id`` = track id.
Commands (``/nano_vision/commands``): ``enroll_face`` {name, image_b64 | image_path},
``delete_face`` {name}, ``list_faces`` {} (ROS only); replies on ``/nano_vision/command_replies``.
Each command is bounded by ``command_timeout``; ``image_path`` is read with core.safe_files (a
regular file inside ``allowed_image_dirs``, size-capped, opened without blocking).
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Any

from pydantic import Field
from rclpy.lifecycle import LifecycleState, TransitionCallbackReturn
from sensor_msgs.msg import Image
from vision_msgs.msg import Detection2DArray

from nano_vision_ros.core.recognition.faces import FaceRecognizer, FacesConfig
from nano_vision_ros.core.recognition.imageutil import decode_b64_image
from nano_vision_ros.core.safe_files import read_image
from nano_vision_ros.ros import diagnostics, qos
from nano_vision_ros.ros.lifecycle import ModelLifecycleNode
from nano_vision_ros.ros.commands import CommandBus
from nano_vision_ros.ros.detections import to_msg
from nano_vision_ros.ros.image import to_bgr
from nano_vision_ros.ros.params import load_config
from nano_vision_ros.ros.runtime import run_node
from nano_vision_ros.ros.worker import LatestWorker

log = logging.getLogger(__name__)


class FaceNodeConfig(FacesConfig):
    image_topic: str = Field("image_raw", description="input frames (sensor_msgs/Image)")
    faces_topic: str = Field("faces", description="output Detection2DArray topic")
    commands: bool = Field(True, description="answer enroll_face / delete_face / list_faces on the command bus")
    max_image_bytes: int = Field(10_000_000, ge=1000, description="largest enrollment image accepted from a command")
    allowed_image_dirs: list[str] = Field(default_factory=lambda: ["~/.local/share/nano_vision/enroll"],
                                          description="enroll_face image_path must be a regular file inside one of these "
                                                      "(symlinks resolved); [''] = image_path refused")
    command_timeout: float = Field(4.0, gt=0, description="longest a command may run before it is answered 'timeout' (s)")
    diagnostics_period: float = Field(1.0, gt=0, description="diagnostics period in s")


class FaceNode(ModelLifecycleNode):
    def __init__(self, **kwargs: Any) -> None:
        self.rec: FaceRecognizer | None = None
        self._lock = threading.Lock()
        self.bus: CommandBus | None = None
        super().__init__("face_node", **kwargs)
        self.cfg = load_config(self, FaceNodeConfig)
        self.pub = self.create_publisher(Detection2DArray, self.cfg.faces_topic, qos.RELIABLE)
        self.frames = 0
        self.faces_seen = 0
        self.last_ms = 0.0
        if self.cfg.commands:
            self.bus = CommandBus(self, {"enroll_face": self._cmd_enroll, "delete_face": self._cmd_delete,
                                         "list_faces": self._cmd_list}, camera=self.get_namespace().strip("/"),
                                  timeout=self.cfg.command_timeout)
        self.diag = diagnostics.Diagnostics(self, self._collect, self.cfg.diagnostics_period)

    # --- lifecycle -----------------------------------------------------------------------------
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        rec = self._load_model("face models", lambda: FaceRecognizer(self.cfg))
        if rec is None:
            return TransitionCallbackReturn.FAILURE
        with self._lock:
            self.rec = rec
        self.get_logger().info(
            f"faces: {self.cfg.detector.kind} + {rec.model_name}, gallery {rec.gallery.path} "
            f"({len(rec.gallery.list())} identities), match {self.cfg.match.metric} threshold {self.cfg.match.threshold}")
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.worker = LatestWorker(self._handle, name="face-worker")
        self.input_subs = [self.create_subscription(Image, self.cfg.image_topic, self.worker.submit, qos.SENSOR)]
        return super().on_activate(state)

    def _free(self) -> None:
        with self._lock:
            if self.rec is not None:
                self.rec.close()
                self.rec = None

    # --- frames --------------------------------------------------------------------------------
    def _handle(self, msg: Image) -> None:
        frame = to_bgr(msg)  # a bad frame raises ImageError: counted by the worker's BadFrames
        t0 = time.perf_counter()
        with self._lock:
            if self.rec is None:
                return
            dets = self.rec.process(frame)
        self.last_ms = (time.perf_counter() - t0) * 1000.0
        self.frames += 1
        self.faces_seen += len(dets)
        self.pub.publish(to_msg(dets, msg.header))

    # --- commands (ros.commands.CommandBus: its own worker thread, replies with request_id) -------
    def _registry(self) -> FaceRecognizer:
        if self.rec is None:
            raise ValueError(f"face_node is not configured ({self.load_error or 'models not loaded'})")
        return self.rec

    def _cmd_list(self, args: dict[str, Any]) -> Any:
        with self._lock:
            return {"identities": [i.as_dict() for i in self._registry().gallery.list()]}

    def _cmd_delete(self, args: dict[str, Any]) -> Any:
        name = args.get("name")
        with self._lock:
            rec = self._registry()
            if not rec.gallery.delete(str(name)):
                raise ValueError(f"no identity named {name!r}")
            rec.reset_tracks()
        self.get_logger().info(f"deleted identity {name}")
        return {"deleted": name}

    def _cmd_enroll(self, args: dict[str, Any]) -> Any:
        name = args.get("name")
        if "image_b64" in args:  # decoded outside the lock; embedded under it
            img = decode_b64_image(args["image_b64"], self.cfg.max_image_bytes)
            source = "image_b64"
        elif "image_path" in args:
            path = args["image_path"]  # a FIFO, device or file outside allowed_image_dirs is refused, never waited on
            img = read_image(path, self.cfg.allowed_image_dirs, self.cfg.max_image_bytes)
            source = path
        else:
            raise ValueError("enroll_face needs args.image_b64 or args.image_path")
        with self._lock:
            rec = self._registry()
            res = rec.enroll(name, [(source, img)])
            rec.reset_tracks()
        self.get_logger().info(f"enrolled {res.name} ({res.total} vectors)")
        return {"name": res.name, "added": res.added, "total": res.total, "faces": res.faces}

    # --- diagnostics ---------------------------------------------------------------------------
    def _collect(self) -> tuple[int, str, dict[str, object]]:
        w = self.worker
        values: dict[str, object] = {"frames": self.frames, "faces": self.faces_seen, "last_ms": self.last_ms,
                                     "dropped": w.dropped if w else 0, "errors": w.errors if w else 0}
        if self.bus is not None:
            values["commands_handled"], values["commands_failed"] = self.bus.handled, self.bus.failed
        if self.rec is None:
            return diagnostics.ERROR if self.load_error else diagnostics.OK, self.load_error or "not configured", values
        if w and w.last_error:
            values["last_error"] = w.last_error
        return diagnostics.OK, "active" if self.input_subs else "inactive", values

    def destroy_node(self) -> None:
        self._stop_input()
        if self.bus is not None:
            self.bus.destroy()
            self.bus = None
        self._free()
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    return run_node(FaceNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
