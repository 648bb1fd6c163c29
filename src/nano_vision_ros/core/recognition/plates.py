"""Plate pipeline: find plates (text detector in vehicle boxes, or a user's plate detector), read
them (PP-OCRv4 or a user's LPRNet), apply Chinese plate rules and colour, vote per track, check
allow / deny lists.

``PlateReader.process(frame, vehicles)`` returns ``Detections`` (label = plate text, score =
reading confidence) with attributes colour, plate_type, valid, listed, votes, vehicle index.
"""
from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from nano_vision_ros.core.detection.types import Detections
from nano_vision_ros.core.errors import ConfigError
from nano_vision_ros.core.recognition.ocr import LprNetRecognizer, PpOcrRecognizer, TextDetector, warp_quad
from nano_vision_ros.core.recognition.plate_rules import (ALNUM, LPR_ALPHABET, PROVINCES, SPECIAL_LAST, clean_plate,
                                                          normalize, plate_colour, plate_type)
from nano_vision_ros.core.recognition.tracker import TrackVoter, make_tracker

log = logging.getLogger(__name__)

PLATE_CHARSET = PROVINCES + ALNUM + SPECIAL_LAST + "·"
VEHICLE_LABELS = ("car", "bus", "truck", "motorcycle")


class FinderConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    mode: str = Field("vehicles", description="vehicles: text detector inside vehicle boxes; frame: text detector on the "
                                              "whole frame; detector: your plate detector (pipeline)")
    text_model: str = Field("models/ch_PP-OCRv4_det_infer.onnx", description="PP-OCRv4 text detection model")
    limit_side: int = Field(640, ge=64, description="longest side fed to the text detector")
    box_threshold: float = Field(0.5, gt=0, lt=1, description="text box score threshold")
    min_aspect: float = Field(1.8, gt=0, description="text boxes narrower than this (width/height) are not plates")
    max_aspect: float = Field(7.0, gt=0, description="text boxes wider than this are not plates")
    vehicle_labels: list[str] = Field(default_factory=lambda: list(VEHICLE_LABELS),
                                      description="detections labels searched for plates (mode vehicles)")
    min_vehicle_score: float = Field(0.3, ge=0, le=1, description="vehicle detections below this score are skipped")
    task: str = Field("", description="mode detector: a detector task profile (config/tasks/<name>.yaml or a path) "
                                      "with your plate model + decoder (LPDNet, YOLO plate models; ONNX or TensorRT)")
    pipeline: str = Field("", description="mode detector, instead of task: 'module:Class' of a Detector (detect(image) -> Detections)")
    pipeline_options: str = Field("{}", description="mode detector: YAML mapping of keyword arguments for the class")
    device: str = Field("cpu", description="inference device")

    @field_validator("mode")
    @classmethod
    def _mode(cls, v: str) -> str:
        if v not in ("vehicles", "frame", "detector"):
            raise ValueError("must be vehicles, frame or detector")
        return v


class ReaderConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: str = Field("ppocr", description="ppocr (PP-OCRv4 recognition) or lprnet (your CTC model)")
    model: str = Field("models/ch_PP-OCRv4_rec_infer.onnx", description="recognition model file")
    alphabet: str = Field(LPR_ALPHABET, description="lprnet: classes in model order (blank excluded)")
    blank: int = Field(-1, description="lprnet: index of the CTC blank (-1 = last)")
    input_width: int = Field(94, ge=8, description="lprnet: input width")
    input_height: int = Field(24, ge=8, description="lprnet: input height")
    min_confidence: float = Field(0.6, ge=0, le=1, description="readings below this mean character probability are dropped")
    device: str = Field("cpu", description="inference device")

    @field_validator("kind")
    @classmethod
    def _kind(cls, v: str) -> str:
        if v not in ("ppocr", "lprnet"):
            raise ValueError("must be ppocr or lprnet")
        return v


class PlatesConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    finder: FinderConfig = Field(default_factory=FinderConfig)
    reader: ReaderConfig = Field(default_factory=ReaderConfig)
    valid_only: bool = Field(True, description="publish only readings that match the Chinese plate format")
    vote_window: int = Field(5, ge=1, description="readings per track in the majority vote")
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


class PlateReader:
    def __init__(self, config: PlatesConfig) -> None:
        self.config = config
        f, r = config.finder, config.reader
        self.text_detector: TextDetector | None = None
        self.plate_detector: Any = None
        if f.mode in ("vehicles", "frame"):
            self.text_detector = TextDetector(f.text_model, limit_side=f.limit_side, box_thresh=f.box_threshold, device=f.device)
        elif f.task:
            from nano_vision_ros.core.detection.profiles import build_detector, load_profile

            self.plate_detector = build_detector(load_profile(f.task))
        else:
            if not f.pipeline:
                raise ConfigError("finder.mode detector needs finder.task (a task profile) or finder.pipeline "
                                  "('module:Class')", "finder.pipeline")
            self.plate_detector = _load_pipeline(f.pipeline, f.pipeline_options)
        if r.kind == "ppocr":
            self.recognizer: PpOcrRecognizer | LprNetRecognizer = PpOcrRecognizer(r.model, charset=PLATE_CHARSET, device=r.device)
        else:
            self.recognizer = LprNetRecognizer(r.model, input_width=r.input_width, input_height=r.input_height,
                                               alphabet=r.alphabet, blank=r.blank, device=r.device)
        self.tracker = make_tracker(0.2, 15)
        self.voter = TrackVoter(config.vote_window)
        self._allow, self._deny = set(config.allow_list), set(config.deny_list)

    def warmup(self) -> None:
        if self.text_detector is not None:
            self.text_detector.warmup()
        self.recognizer.warmup()

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
        crops: list[np.ndarray] = []
        meta: list[tuple[np.ndarray, int]] = []
        if self.plate_detector is not None:
            dets = self.plate_detector.detect(img)
            for i in range(len(dets)):
                x1, y1, x2, y2 = dets.boxes[i].astype(int)
                c = img[max(0, y1):max(y2, y1 + 1), max(0, x1):max(x2, x1 + 1)]
                if c.size:
                    crops.append(c)
                    meta.append((dets.boxes[i].astype(np.float32), -1))
        else:
            assert self.text_detector is not None
            for region, vi in self._regions(img, vehicles):
                x1, y1, x2, y2 = region
                sub = img[y1:y2, x1:x2]
                for tb in self.text_detector.detect(sub):
                    tw, th = tb.size
                    if th < 6 or not (f.min_aspect <= tw / max(th, 1e-6) <= f.max_aspect):
                        continue
                    crops.append(warp_quad(sub, tb.quad))
                    meta.append((tb.box + np.array([x1, y1, x1, y1], np.float32), vi))
        if not crops:
            return []
        out: list[PlateReading] = []
        best_per_vehicle: dict[int, int] = {}
        for (box, vi), crop, (raw, conf) in zip(meta, crops, self.recognizer.read(crops)):
            text, valid = clean_plate(raw)
            if conf < self.config.reader.min_confidence or not text:
                continue
            if self.config.valid_only and not valid:
                continue
            reading = PlateReading(box, text, conf, valid, plate_colour(crop)[0], vi)
            if vi >= 0:  # one plate per vehicle: the valid, most confident reading
                j = best_per_vehicle.get(vi)
                if j is not None:
                    prev = out[j]
                    if (prev.valid, prev.confidence) >= (valid, conf):
                        continue
                    out[j] = reading
                    continue
                best_per_vehicle[vi] = len(out)
            out.append(reading)
        return self._dedupe(out)

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
        for i, r in enumerate(readings):
            key = int(tids[i])
            if r.vehicle >= 0 and vehicles is not None and vehicles.track_ids[r.vehicle] >= 0:
                key = 1_000_000_000 + int(vehicles.track_ids[r.vehicle])
            text, vscore, votes = self.voter.add(key, r.text, r.confidence)
            text = text or r.text
            if text not in labels:
                labels.append(text)
            cls.append(labels.index(text))
            scores.append(vscore)
            out_tids.append(int(tids[i]))
            attrs.append({"class_id": text, "plate": text, "colour": r.colour, "plate_type": plate_type(text) or "invalid",
                          "valid": r.valid, "listed": self.listed(text), "votes": votes, "frame_text": r.text,
                          "confidence": round(r.confidence, 4), "vehicle": r.vehicle})
        if not readings:
            return Detections.empty()
        return Detections(boxes, np.array(scores, np.float32), np.array(cls, np.int32), labels,
                          np.array(out_tids, np.int64), attrs)

    def close(self) -> None:
        if self.text_detector is not None:
            self.text_detector.close()
        if self.plate_detector is not None and hasattr(self.plate_detector, "close"):
            self.plate_detector.close()
        self.recognizer.close()
