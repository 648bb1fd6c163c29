"""Text detection and reading for plates: PP-OCRv4 (det + rec) and CTC plate models.

- ``TextDetector``: PP-OCRv4 DB text detector. The probability map is binarised, each region
  becomes a rotated rectangle, scored by its mean probability and grown by the DB "unclip"
  distance (area * ratio / perimeter), as PaddleOCR / RapidOCR do for rectangles.
- ``PpOcrRecognizer``: PP-OCRv4 recogniser (6,623-character dictionary, stored in the model's
  metadata; covers the province characters), batched, greedy CTC.
- ``LprNetRecognizer``: a CTC plate model: one trained by scripts/train_plate_reader.py (alphabet
  and input contract in its metadata) or a user's LPRNet with a configurable alphabet.
All run through ``core.inference.create_backend``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from nano_vision_ros.core import paths
from nano_vision_ros.core.errors import ConfigError, ModelError
from nano_vision_ros.core.inference import create_backend
from nano_vision_ros.core.recognition.plate_rules import LPR_ALPHABET

log = logging.getLogger(__name__)


@dataclass
class TextBox:
    quad: np.ndarray  # (4, 2) float32 corners: top-left, top-right, bottom-right, bottom-left
    score: float

    @property
    def box(self) -> np.ndarray:
        return np.array([*self.quad.min(0), *self.quad.max(0)], np.float32)

    @property
    def size(self) -> tuple[float, float]:
        w = float(np.linalg.norm(self.quad[1] - self.quad[0]))
        h = float(np.linalg.norm(self.quad[3] - self.quad[0]))
        return w, h


def order_quad(pts: np.ndarray) -> np.ndarray:
    """Corners as top-left, top-right, bottom-right, bottom-left."""
    pts = np.asarray(pts, np.float32).reshape(4, 2)
    idx = np.argsort(pts[:, 0])
    left, right = pts[idx[:2]], pts[idx[2:]]
    tl, bl = left[np.argsort(left[:, 1])]
    tr, br = right[np.argsort(right[:, 1])]
    return np.array([tl, tr, br, bl], np.float32)


def warp_quad(image: np.ndarray, quad: np.ndarray, height: int | None = None) -> np.ndarray:
    """Rectify a quadrilateral region to an upright rectangle."""
    q = order_quad(quad)
    w = round(max(np.linalg.norm(q[1] - q[0]), np.linalg.norm(q[2] - q[3])))
    h = round(max(np.linalg.norm(q[3] - q[0]), np.linalg.norm(q[2] - q[1])))
    w, h = max(w, 2), max(h, 2)
    if height:
        w, h = max(2, round(w * height / h)), height
    dst = np.array([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]], np.float32)
    m = cv2.getPerspectiveTransform(q, dst)
    return cv2.warpPerspective(image, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def _model(path: str) -> str:
    return str(paths.resolve(path))


class TextDetector:
    """PP-OCRv4 DB detector. `limit_side` caps the longer side fed to the net (multiple of 32)."""

    def __init__(
        self,
        model: str = "models/ch_PP-OCRv4_det_infer.onnx",
        limit_side: int = 640,
        thresh: float = 0.3,
        box_thresh: float = 0.5,
        unclip_ratio: float = 1.6,
        min_size: float = 3.0,
        device: str = "cpu",
        threads: int = 0,
        **_: Any,
    ) -> None:
        self.backend = create_backend(_model(model), device=device, threads=threads)
        self.limit_side = int(limit_side)
        self.thresh, self.box_thresh, self.unclip_ratio = float(thresh), float(box_thresh), float(unclip_ratio)
        self.min_size = float(min_size)
        self._in = self.backend.inputs[0].name

    def warmup(self) -> None:
        self.detect(np.zeros((96, 160, 3), np.uint8))

    def detect(self, image_bgr: np.ndarray) -> list[TextBox]:
        img = image_bgr if image_bgr.ndim == 3 else cv2.cvtColor(image_bgr, cv2.COLOR_GRAY2BGR)
        h, w = img.shape[:2]
        r = min(1.0, self.limit_side / max(h, w))
        rh, rw = max(32, round(h * r / 32) * 32), max(32, round(w * r / 32) * 32)
        x = cv2.resize(img, (rw, rh)).astype(np.float32)
        x = (x / 255.0 - 0.5) / 0.5
        prob = self.backend.infer({self._in: np.ascontiguousarray(x.transpose(2, 0, 1)[None])})[0][0, 0]
        mask = (prob > self.thresh).astype(np.uint8)
        mask = cv2.dilate(mask, np.ones((2, 2), np.uint8))
        contours, _ = cv2.findContours(mask, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
        sx, sy = w / rw, h / rh
        out: list[TextBox] = []
        for c in contours[:1000]:
            if len(c) < 4:
                continue
            (cx, cy), (bw, bh), ang = cv2.minAreaRect(c)
            if min(bw, bh) < self.min_size:
                continue
            score = self._score(prob, c)
            if score < self.box_thresh:
                continue
            # unclip: a rectangle grows by d on each side, d = area * ratio / perimeter
            d = bw * bh * self.unclip_ratio / max(2 * (bw + bh), 1e-6)
            quad = cv2.boxPoints(((cx, cy), (bw + 2 * d, bh + 2 * d), ang))
            quad[:, 0] = np.clip(quad[:, 0] * sx, 0, w - 1)
            quad[:, 1] = np.clip(quad[:, 1] * sy, 0, h - 1)
            out.append(TextBox(order_quad(quad), score))
        return out

    @staticmethod
    def _score(prob: np.ndarray, contour: np.ndarray) -> float:
        x, y, bw, bh = cv2.boundingRect(contour)
        m = np.zeros((bh, bw), np.uint8)
        cv2.fillPoly(m, [contour.reshape(-1, 2) - [x, y]], 1)
        return float(cv2.mean(prob[y : y + bh, x : x + bw], m)[0])

    def close(self) -> None:
        self.backend.close()


def ctc_greedy(probs: np.ndarray, alphabet: list[str], blank: int = 0) -> list[tuple[str, float]]:
    """(N, T, C) class scores -> [(text, mean max-probability of the kept characters)]."""
    idx = probs.argmax(axis=2)
    conf = probs.max(axis=2)
    out = []
    for row, cf in zip(idx, conf):
        keep = np.ones(len(row), bool)
        keep[1:] = row[1:] != row[:-1]
        keep &= row != blank
        chars = [alphabet[i] if 0 <= i < len(alphabet) else "" for i in row[keep]]
        out.append(("".join(chars), float(cf[keep].mean()) if keep.any() else 0.0))
    return out


class PpOcrRecognizer:
    """PP-OCRv4 text recogniser: height 48, width by aspect (max `max_width`), batched.

    With `charset`, decoding only considers those characters (plus blank): for plates, the
    provinces, letters, digits and the separator, so a look-alike Chinese character can never
    win over the province it resembles.
    """

    def __init__(
        self,
        model: str = "models/ch_PP-OCRv4_rec_infer.onnx",
        max_width: int = 320,
        charset: str = "",
        device: str = "cpu",
        threads: int = 0,
        **_: Any,
    ) -> None:
        self.backend = create_backend(_model(model), device=device, threads=threads)
        chars = self.backend.metadata.get("character")
        if not chars:
            raise ModelError(
                f"{model}: no 'character' dictionary in the model metadata (not a RapidOCR PP-OCR rec model?)"
            )
        self.alphabet = ["<blank>"] + chars.splitlines() + [" "]
        self.max_width = int(max_width)
        self._in = self.backend.inputs[0].name
        self._model = model
        self._keeps: dict[str, np.ndarray] = {}
        self._keep: np.ndarray | None = self._keep_for(charset) if charset else None

    def _keep_for(self, charset: str) -> np.ndarray:
        """Class indexes (blank first) that decoding considers for `charset`."""
        keep = self._keeps.get(charset)
        if keep is None:
            index = {c: i for i, c in enumerate(self.alphabet)}
            missing = [c for c in charset if c not in index]
            if missing:
                raise ModelError(f"{self._model}: dictionary lacks {''.join(missing)!r}")
            keep = self._keeps[charset] = np.array([0] + sorted({index[c] for c in charset}), np.int64)
        return keep

    def warmup(self) -> None:
        self.read([np.zeros((48, 160, 3), np.uint8)])

    def read(self, crops: list[np.ndarray], charset: str = "") -> list[tuple[str, float]]:
        """Greedy CTC text of each crop; `charset` restricts decoding for this call (a second
        look at one character slot, e.g. provinces only)."""
        if not crops:
            return []
        ratios = [c.shape[1] / max(c.shape[0], 1) for c in crops]
        width = int(min(self.max_width, max(48 * max(ratios), 48)))
        width = int(np.ceil(width / 8) * 8)
        batch = np.zeros((len(crops), 3, 48, width), np.float32)
        for i, c in enumerate(crops):
            c = c if c.ndim == 3 else cv2.cvtColor(c, cv2.COLOR_GRAY2BGR)
            rw = int(min(width, max(8, np.ceil(48 * ratios[i]))))
            x = cv2.resize(c, (rw, 48)).astype(np.float32)
            batch[i, :, :, :rw] = ((x / 255.0 - 0.5) / 0.5).transpose(2, 0, 1)
        probs = self.backend.infer({self._in: batch})[0]
        keep = self._keep_for(charset) if charset else self._keep
        if keep is not None:
            return ctc_greedy(probs[:, :, keep], [self.alphabet[i] for i in keep], blank=0)
        return ctc_greedy(probs, self.alphabet, blank=0)

    def close(self) -> None:
        self.backend.close()


class LprNetRecognizer:
    """A plate CTC model: one trained by scripts/train_plate_reader.py or a user's LPRNet.

    `alphabet` lists the classes in the model's order (default: 31 provinces, digits, letters
    without I/O) and `blank` is the blank's index (-1 = last, LPRNet's usual). The model's
    output may be (N, C, T) (LPRNet) or (N, T, C); `logits` applies a softmax first. A model that
    carries its contract in its ONNX metadata (alphabet, blank, input_width, input_height, mean,
    std, rgb, output = probs | logits) is read by it: the model knows how it was trained, a
    configuration can only get it wrong.
    """

    def __init__(
        self,
        model: str,
        input_width: int = 94,
        input_height: int = 24,
        alphabet: str = LPR_ALPHABET,
        blank: int = -1,
        mean: float = 127.5,
        std: float = 128.0,
        rgb: bool = False,
        logits: bool = True,
        backend: str = "auto",
        device: str = "auto",
        threads: int = 0,
        **_: Any,
    ) -> None:
        if not model:
            raise ConfigError("recognizer 'lprnet' needs a model file (parameter recognizer.model)", "recognizer.model")
        self.backend = create_backend(_model(model), backend, device=device, threads=threads)
        meta = getattr(self.backend, "metadata", None) or {}
        if meta.get("character") and not meta.get("alphabet"):
            raise ModelError(f"{model} is a PP-OCR recognition model: set reader.kind: ppocr for it")
        if meta.get("alphabet"):
            try:
                alphabet = meta["alphabet"]
                blank = int(meta.get("blank", blank))
                input_width = int(meta.get("input_width", input_width))
                input_height = int(meta.get("input_height", input_height))
                mean, std = float(meta.get("mean", mean)), float(meta.get("std", std))
                rgb = meta.get("rgb", "1" if rgb else "0") not in ("0", "false", "")
                logits = meta.get("output", "logits" if logits else "probs") != "probs"
            except ValueError as err:
                raise ModelError(f"{model}: bad reader metadata ({err})") from err
            log.info("%s: alphabet and input contract from the model's metadata", model)
        self.size = (int(input_width), int(input_height))
        self.alphabet = list(alphabet)
        ncls = len(self.alphabet) + 1
        self.blank = ncls - 1 if blank < 0 else int(blank)
        if self.blank == 0:
            self.alphabet = ["<blank>"] + self.alphabet
        else:
            self.alphabet = self.alphabet[: self.blank] + ["<blank>"] + self.alphabet[self.blank :]
        self.mean, self.std, self.rgb, self.logits = float(mean), float(std), bool(rgb), bool(logits)
        self._in = self.backend.inputs[0].name
        self._model = model
        self._fixed_batch = isinstance(self.backend.inputs[0].shape[0], int) and self.backend.inputs[0].shape[0] > 0
        self._keeps: dict[str, np.ndarray] = {}

    def _keep_for(self, charset: str) -> np.ndarray:
        """Class indexes (blank included, model order) that decoding considers for `charset`."""
        keep = self._keeps.get(charset)
        if keep is None:
            index = {c: i for i, c in enumerate(self.alphabet)}
            missing = [c for c in charset if c not in index]
            if missing:
                raise ModelError(f"{self._model}: alphabet lacks {''.join(missing)!r}")
            keep = self._keeps[charset] = np.array(sorted({self.blank, *(index[c] for c in charset)}), np.int64)
        return keep

    def warmup(self) -> None:
        self.read([np.zeros((self.size[1], self.size[0], 3), np.uint8)])

    def read(self, crops: list[np.ndarray], charset: str = "") -> list[tuple[str, float]]:
        """Greedy CTC text of each crop; `charset` restricts decoding for this call (the second
        look at the province slot)."""
        if not crops:
            return []
        xs = []
        for c in crops:
            c = c if c.ndim == 3 else cv2.cvtColor(c, cv2.COLOR_GRAY2BGR)
            x = cv2.resize(c, self.size).astype(np.float32)
            if self.rgb:
                x = x[..., ::-1]
            xs.append(((x - self.mean) / self.std).transpose(2, 0, 1))
        batch = np.ascontiguousarray(np.stack(xs))
        if self._fixed_batch:
            out = np.concatenate([self.backend.infer({self._in: batch[i : i + 1]})[0] for i in range(len(batch))])
        else:
            out = self.backend.infer({self._in: batch})[0]
        ncls = len(self.alphabet)
        if out.ndim != 3:
            raise ModelError(f"LPRNet output must be 3-D (N, C, T) or (N, T, C); got shape {out.shape}")
        if out.shape[1] == ncls and out.shape[2] != ncls:
            out = out.transpose(0, 2, 1)
        if out.shape[2] != ncls:
            raise ModelError(f"LPRNet output has {out.shape[2]} classes; the alphabet + blank has {ncls}")
        if self.logits:
            e = np.exp(out - out.max(axis=2, keepdims=True))
            out = e / e.sum(axis=2, keepdims=True)
        if charset:
            keep = self._keep_for(charset)
            sub = [self.alphabet[i] for i in keep]
            return ctc_greedy(out[:, :, keep], sub, blank=int(np.searchsorted(keep, self.blank)))
        return ctc_greedy(out, self.alphabet, blank=self.blank)

    def close(self) -> None:
        self.backend.close()
