"""Two-stage mask detector for the generic detector node: face detector -> mask classifier.

Used from ``config/tasks/mask.yaml`` as ``pipeline: "nano_vision_ros.core.recognition.mask:TwoStageMaskDetector"``.
All face crops of a frame go through the MobileNetV2 classifier in one batch, so the cost per
frame is one detector pass plus one classifier call, not one call per face.
"""

from __future__ import annotations

import logging
from typing import Any

import cv2
import numpy as np

from nano_vision_ros.core import paths
from nano_vision_ros.core.detection.types import Detections
from nano_vision_ros.core.errors import ConfigError, ModelError
from nano_vision_ros.core.inference import create_backend
from nano_vision_ros.core.recognition.face_detect import create_face_detector

log = logging.getLogger(__name__)


class TwoStageMaskDetector:
    """Faces (CenterFace or MTCNN) classified as ``mask`` / ``no_mask``.

    classifier: NHWC float32 224x224 RGB, ``x / 127.5 - 1`` (MobileNetV2), softmax output whose
    index `mask_index` is "mask". `margin` widens each face box (fraction of its size) so the
    crop shows the mouth and chin like the classifier's training crops.
    """

    def __init__(
        self,
        classifier: str = "models/face_mask_mobilenetv2.onnx",
        face_detector: str = "centerface",
        face_options: dict[str, Any] | None = None,
        score_threshold: float = 0.5,
        margin: float = 0.1,
        mask_index: int = 0,
        input_size: int = 224,
        max_faces: int = 32,
        device: str = "cpu",
        labels: list[str] | None = None,
    ) -> None:
        self.labels = list(labels or ["mask", "no_mask"])
        if len(self.labels) != 2:
            raise ConfigError("labels must name two classes: [mask, no_mask]", "labels")
        self.faces = create_face_detector(face_detector, device=device, **(face_options or {}))
        self.classifier = create_backend(str(paths.resolve(classifier)), device=device)
        shape = self.classifier.inputs[0].shape
        if len(shape) != 4:
            raise ModelError(f"{classifier}: expected a 4-D image input, got {shape}")
        self.nhwc = shape[-1] == 3
        self.size = int(input_size)
        self.score_threshold = float(score_threshold)
        self.margin = float(margin)
        self.mask_index = int(mask_index)
        self.max_faces = int(max_faces)
        self._in = self.classifier.inputs[0].name
        self._batch = np.zeros((self.max_faces, self.size, self.size, 3), np.float32)  # preallocated

    def warmup(self, runs: int = 1) -> None:
        """Same signature as the single-stage detectors' (the detector node calls warmup(runs))."""
        for _ in range(max(1, int(runs))):
            self.faces.warmup()
            self.classify([np.zeros((64, 64, 3), np.uint8)])

    def classify(self, crops: list[np.ndarray]) -> np.ndarray:
        """(N, 2) probabilities [mask, no_mask] for BGR face crops, one batched call."""
        n = min(len(crops), self.max_faces)
        if n == 0:
            return np.zeros((0, 2), np.float32)
        for i in range(n):
            rgb = cv2.cvtColor(
                cv2.resize(crops[i], (self.size, self.size), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB
            )
            np.multiply(rgb, 1.0 / 127.5, out=self._batch[i], casting="unsafe")
        x = self._batch[:n] - 1.0
        if not self.nhwc:
            x = x.transpose(0, 3, 1, 2)
        out = self.classifier.infer({self._in: np.ascontiguousarray(x)})[0].reshape(n, -1)
        mask = out[:, self.mask_index]
        return np.stack([mask, 1.0 - mask], axis=1).astype(np.float32)

    def detect(self, image_bgr: np.ndarray) -> Detections:
        img = image_bgr if image_bgr.ndim == 3 else cv2.cvtColor(image_bgr, cv2.COLOR_GRAY2BGR)
        faces = self.faces.detect(img)
        if len(faces) == 0:
            return Detections.empty(self.labels)
        if len(faces) > self.max_faces:
            faces = faces.select(np.argsort(-faces.scores)[: self.max_faces])
        h, w = img.shape[:2]
        crops = []
        for x1, y1, x2, y2 in faces.boxes:
            mw, mh = (x2 - x1) * self.margin, (y2 - y1) * self.margin
            a, b = int(max(0, x1 - mw)), int(max(0, y1 - mh))
            c, d = int(min(w, x2 + mw)), int(min(h, y2 + mh))
            crops.append(img[b : max(d, b + 1), a : max(c, a + 1)])
        probs = self.classify(crops)
        cls = probs.argmax(axis=1).astype(np.int32)
        score = probs[np.arange(len(cls)), cls]
        keep = score >= self.score_threshold
        attrs = [
            {"face_score": round(float(s), 4), "mask_probability": round(float(p[0]), 4)}
            for s, p in zip(faces.scores, probs)
        ]
        dets = Detections(faces.boxes, score, cls, self.labels, attributes=attrs)
        return dets.select(keep)

    def close(self) -> None:
        self.faces.close()
        self.classifier.close()
