"""face_node: recognise enrolled faces in a camera's frames; enroll / delete / list as services.

Lifecycle: models load and warm in ``configure``, the frame subscription exists only while
``active``, models are freed in ``cleanup``. The image callback only submits to a
``LatestWorker``; service handlers run on their own threads (ros.services.BoundedServices), so
enrolling never blocks frames for long (both share the recogniser under a lock).

Publishes ``faces`` (vision_msgs/Detection2DArray): per face ``results[0].class_id`` = identity
or ``unknown``, ``score`` = cosine similarity, ``id`` = track id.
Services (nano_vision_msgs/srv): ``~/enroll_face`` (EnrollFace: name, image_path | image bytes),
``~/delete_face`` (DeleteFace), ``~/list_faces`` (ListFaces). Each is bounded by
``command_timeout``; ``image_path`` is read with core.safe_files (a regular file inside
``allowed_image_dirs``, size-capped, opened without blocking).
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

from nano_vision_msgs.msg import FaceIdentity
from nano_vision_msgs.srv import DeleteFace, EnrollFace, ListFaces
from nano_vision_ros.core.recognition.faces import FaceRecognizer, FacesConfig
from nano_vision_ros.core.recognition.gallery import validate_name
from nano_vision_ros.core.recognition.imageutil import decode_image_bytes
from nano_vision_ros.core.safe_files import read_image
from nano_vision_ros.ros import diagnostics, qos
from nano_vision_ros.ros.detections import to_msg
from nano_vision_ros.ros.image import to_bgr
from nano_vision_ros.ros.lifecycle import ModelLifecycleNode
from nano_vision_ros.ros.params import load_config
from nano_vision_ros.ros.runtime import run_node
from nano_vision_ros.ros.services import BoundedServices, to_time
from nano_vision_ros.ros.worker import LatestWorker

log = logging.getLogger(__name__)


class FaceNodeConfig(FacesConfig):
    image_topic: str = Field("image_raw", description="input frames (sensor_msgs/Image)")
    faces_topic: str = Field("faces", description="output Detection2DArray topic")
    commands: bool = Field(True, description="offer the enroll_face / delete_face / list_faces services")
    max_image_bytes: int = Field(10_000_000, ge=1000, description="largest enrollment image accepted by enroll_face")
    allowed_image_dirs: list[str] = Field(
        default_factory=lambda: ["~/.local/share/nano_vision/enroll"],
        description="enroll_face image_path must be a regular file inside one of these "
        "(symlinks resolved); [''] = image_path refused",
    )
    command_timeout: float = Field(
        4.0, gt=0, description="longest a service call may run before it is answered 'timeout' (s)"
    )
    diagnostics_period: float = Field(1.0, gt=0, description="diagnostics period in s")


class FaceNode(ModelLifecycleNode):
    def __init__(self, **kwargs: Any) -> None:
        self.rec: FaceRecognizer | None = None
        self._lock = threading.Lock()
        self.services_host: BoundedServices | None = None
        super().__init__("face_node", **kwargs)
        self.cfg = load_config(self, FaceNodeConfig)
        self.pub = self.create_publisher(Detection2DArray, self.cfg.faces_topic, qos.RELIABLE)
        self.frames = 0
        self.faces_seen = 0
        self.last_ms = 0.0
        if self.cfg.commands:
            self.services_host = h = BoundedServices(self, self.cfg.command_timeout)
            h.add(EnrollFace, "enroll_face", self._srv_enroll)
            h.add(DeleteFace, "delete_face", self._srv_delete)
            h.add(ListFaces, "list_faces", self._srv_list)
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
            f"({len(rec.gallery.list())} identities), match {self.cfg.match.metric} threshold {self.cfg.match.threshold}"
        )
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

    # --- services (ros.services.BoundedServices: each on its own thread, time-bounded) ------------
    def _registry(self) -> FaceRecognizer:
        if self.rec is None:
            raise ValueError(f"face_node is not configured ({self.load_error or 'models not loaded'})")
        return self.rec

    def _srv_list(self, req: ListFaces.Request, resp: ListFaces.Response) -> ListFaces.Response:
        with self._lock:
            found = self._registry().gallery.list()
        resp.identities = [
            FaceIdentity(
                name=i.name,
                embeddings=int(i.embeddings),
                created=to_time(i.created),
                updated=to_time(i.updated),
                thumbnail=bool(i.has_thumbnail),
            )
            for i in found
        ]
        return resp

    def _srv_delete(self, req: DeleteFace.Request, resp: DeleteFace.Response) -> DeleteFace.Response:
        with self._lock:
            rec = self._registry()
            if not rec.gallery.delete(req.name):
                raise ValueError(f"no identity named {req.name!r}")
            rec.reset_tracks()
        self.get_logger().info(f"deleted identity {req.name}")
        return resp

    def _srv_enroll(self, req: EnrollFace.Request, resp: EnrollFace.Response) -> EnrollFace.Response:
        name = validate_name(req.name)  # ValueError names the problem
        if req.image_path and len(req.image):
            raise ValueError("give image_path or image, not both")
        if len(req.image):  # decoded outside the lock; embedded under it
            img = decode_image_bytes(bytes(req.image), self.cfg.max_image_bytes)
            source = "image"
        elif req.image_path:
            # a FIFO, device or file outside allowed_image_dirs is refused, never waited on
            img = read_image(req.image_path, self.cfg.allowed_image_dirs, self.cfg.max_image_bytes)
            source = req.image_path
        else:
            raise ValueError("enroll_face needs image_path or image (encoded JPEG/PNG bytes)")
        with self._lock:
            rec = self._registry()
            res = rec.enroll(name, [(source, img)])
            rec.reset_tracks()
        self.get_logger().info(f"enrolled {res.name} ({res.total} vectors)")
        resp.name, resp.added, resp.total, resp.faces = res.name, int(res.added), int(res.total), len(res.faces)
        return resp

    # --- diagnostics ---------------------------------------------------------------------------
    def _collect(self) -> tuple[int, str, dict[str, object]]:
        w = self.worker
        values: dict[str, object] = {
            "frames": self.frames,
            "faces": self.faces_seen,
            "last_ms": self.last_ms,
            "dropped": w.dropped if w else 0,
            "errors": w.errors if w else 0,
        }
        if self.services_host is not None:
            values["commands_handled"], values["commands_failed"] = (
                self.services_host.handled,
                self.services_host.failed,
            )
        if self.rec is None:
            return diagnostics.ERROR if self.load_error else diagnostics.OK, self.load_error or "not configured", values
        if w and w.last_error:
            values["last_error"] = w.last_error
        return diagnostics.OK, "active" if self.input_subs else "inactive", values

    def destroy_node(self) -> None:
        self._stop_input()
        if self.services_host is not None:
            self.services_host.destroy()
            self.services_host = None
        self._free()
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    return run_node(FaceNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
