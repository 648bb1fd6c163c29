"""Single-stage detector: pre-process -> backend -> decoder -> NMS -> source pixels.

Implements the ``Detector`` protocol. Per-stage times of the last frame are kept in
``timings`` (milliseconds) for the node's diagnostics and the benchmark.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np

from nano_vision_ros.core.detection.decoders import Decoder
from nano_vision_ros.core.detection.nms import nms
from nano_vision_ros.core.detection.preprocess import Preprocessor
from nano_vision_ros.core.detection.types import Detections
from nano_vision_ros.core.errors import ModelError
from nano_vision_ros.core.inference.base import InferenceBackend, TensorInfo

log = logging.getLogger(__name__)


def input_geometry(
    info: TensorInfo, layout: str = "auto", fallback: tuple[int, int] | None = None
) -> tuple[str, int, int]:
    """(layout, width, height) of an image input ``[1,3,H,W]`` or ``[1,H,W,3]``, read from the model."""
    shape = tuple(info.shape)
    if len(shape) != 4:
        raise ModelError(f"model input {info.name} has shape {list(shape)}; expected a 4-D image tensor")
    if layout == "auto":
        if shape[1] == 3:
            layout = "nchw"
        elif shape[3] == 3:
            layout = "nhwc"
        else:
            raise ModelError(
                f"model input {info.name} {list(shape)}: cannot tell NCHW from NHWC (no axis of 3 channels)"
            )
    h, w = (shape[2], shape[3]) if layout == "nchw" else (shape[1], shape[2])
    if not (isinstance(h, int) and h > 0 and isinstance(w, int) and w > 0):
        if fallback is None:
            raise ModelError(
                f"model input {info.name} {list(shape)} has a dynamic size; set input.width/height in the profile"
            )
        w, h = fallback
    return layout, int(w), int(h)


class SingleStageDetector:
    """Backend + decoder + NMS; thresholds can be changed between frames."""

    def __init__(
        self,
        backend: InferenceBackend,
        decoder: Decoder,
        labels: list[str],
        preprocess: dict[str, Any] | None = None,
        score_threshold: float = 0.35,
        nms_threshold: float = 0.45,
        max_detections: int = 100,
        classes: list[str] | None = None,
        input_size: tuple[int, int] | None = None,
        device_preprocess: bool = False,
    ) -> None:
        self.backend = backend
        self.decoder = decoder
        self.score_threshold = float(score_threshold)
        self.nms_threshold = float(nms_threshold)
        self.max_detections = int(max_detections)
        pre = {**decoder.preset, **{k: v for k, v in (preprocess or {}).items() if v is not None}}
        layout, w, h = input_geometry(backend.inputs[0], pre.pop("layout", "auto"), input_size)
        self.input_size = (w, h)
        self.preprocessor = Preprocessor(w, h, layout=layout, dtype=backend.inputs[0].dtype, **pre)
        decoder.bind(backend.inputs, backend.outputs, w, h)
        n = decoder.num_classes
        if n is not None and labels and len(labels) != n:
            raise ModelError(f"the labels name {len(labels)} classes but the model outputs {n}")
        self.labels = list(labels) if labels else [str(i) for i in range(n or 0)]
        self._keep_class: np.ndarray | None = None
        if classes:
            unknown = [c for c in classes if c not in self.labels]
            if unknown:
                raise ModelError(f"classes {unknown} are not in the model's labels {self.labels[:10]}…")
            self._keep_class = np.array([lbl in classes for lbl in self.labels], bool)
        self._extra = decoder.extra_feeds(backend.inputs)
        #: pre-processing runs on the GPU inside the backend (TensorRT + pycuda), not in ``preprocessor``
        self.device_preprocess = False
        if device_preprocess:
            if not backend.supports_device_preprocess:
                log.warning("device pre-processing asked for, but the %s backend has none; using the CPU", backend.name)
            elif layout != "nchw" or backend.inputs[0].dtype != np.float32:
                log.warning("device pre-processing needs a float32 NCHW input; using the CPU")
            else:
                backend.enable_device_preprocess(width=w, height=h, **pre)
                self.device_preprocess = True
        self._input_name = backend.inputs[0].name
        self.timings = {"pre": 0.0, "infer": 0.0, "post": 0.0}

    def warmup(self, runs: int = 2) -> None:
        frame = np.zeros((self.input_size[1], self.input_size[0], 3), np.uint8)
        for _ in range(max(1, runs)):
            self.detect(frame)

    def detect(self, image_bgr: np.ndarray) -> Detections:
        if self.device_preprocess:
            t1 = time.perf_counter()
            outputs, transform = self.backend.infer_image(image_bgr, self._extra)
            t2 = time.perf_counter()
            dets = self.postprocess(outputs, transform)
            self.timings = {"pre": 0.0, "infer": (t2 - t1) * 1e3, "post": (time.perf_counter() - t2) * 1e3}
            return dets
        t0 = time.perf_counter()
        tensor, transform = self.preprocessor(image_bgr)
        feeds = {self._input_name: tensor, **self._extra}
        t1 = time.perf_counter()
        outputs = self.backend.infer(feeds)
        t2 = time.perf_counter()
        dets = self.postprocess(outputs, transform)
        t3 = time.perf_counter()
        self.timings = {"pre": (t1 - t0) * 1e3, "infer": (t2 - t1) * 1e3, "post": (t3 - t2) * 1e3}
        return dets

    def postprocess(self, outputs: list[np.ndarray], transform) -> Detections:
        boxes, scores, cls = self.decoder(outputs, self.score_threshold)
        if self._keep_class is not None and len(cls):
            ok = self._keep_class[np.clip(cls, 0, len(self._keep_class) - 1)]
            boxes, scores, cls = boxes[ok], scores[ok], cls[ok]
        if self.decoder.needs_nms and len(boxes):
            idx = nms(boxes, scores, cls, self.nms_threshold, self.max_detections)
            boxes, scores, cls = boxes[idx], scores[idx], cls[idx]
        elif len(boxes) > self.max_detections:
            idx = np.argsort(-scores, kind="stable")[: self.max_detections]
            boxes, scores, cls = boxes[idx], scores[idx], cls[idx]
        return Detections(transform.to_source(boxes), scores, cls, self.labels)

    def close(self) -> None:
        self.backend.close()
