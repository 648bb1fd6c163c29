"""Face recognition pipeline: detect -> align + embed -> match the gallery -> vote per track.

``FaceRecognizer.process(frame)`` returns ``Detections`` with label = identity or ``unknown``,
score = cosine similarity, track ids from the IoU tracker, and attributes (identity, similarity,
distance, votes, landmarks). ``enroll`` adds faces to the gallery after quality gates (exactly
one face, minimum size, sharpness by variance of the Laplacian) and refuses with a reason.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Literal

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from nano_vision_ros.core.detection.types import Detections
from nano_vision_ros.core.errors import ConfigError
from nano_vision_ros.core.recognition.embedding import Embedder, create_embedder
from nano_vision_ros.core.recognition.face_detect import FaceBoxes, create_face_detector
from nano_vision_ros.core.recognition.gallery import Gallery, validate_name
from nano_vision_ros.core.recognition.tracker import TrackVoter, make_tracker

log = logging.getLogger(__name__)

UNKNOWN = "unknown"


class DetectorConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["mtcnn", "centerface"] = Field(
        "mtcnn", description="face detector: mtcnn (seed, 5 landmarks) or centerface (faster)"
    )
    min_face_size: int = Field(40, ge=12, description="MTCNN: smallest face (pixels) searched for")
    score_threshold: float = Field(0.5, gt=0, lt=1, description="CenterFace: heatmap score threshold")
    input_width: int = Field(640, ge=0, description="CenterFace: frame width fed to the net (0 = frame size)")
    device: str = Field("cpu", description="onnxruntime device for the detector: cpu, cuda, tensorrt, auto")

    def options(self) -> dict[str, Any]:
        if self.kind == "mtcnn":
            return {"min_face_size": self.min_face_size, "device": self.device}
        return {"score_threshold": self.score_threshold, "input_width": self.input_width, "device": self.device}


class EmbeddingConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["dlib", "onnx"] = Field(
        "dlib", description="dlib (ResNet 128-d, ships working) or onnx (your FaceNet/ArcFace model)"
    )
    net: Literal["onnx", "dlib"] = Field(
        "onnx",
        description="dlib: run its ResNet converted to ONNX (same vectors, ~5x faster on CPU) or dlib's own",
    )
    model: str = Field("", description="onnx: model file (.onnx or TensorRT .engine)")
    input_size: int = Field(112, ge=16, description="onnx: square input size of the model")
    mean: float = Field(127.5, description="onnx: subtracted from each pixel")
    std: float = Field(128.0, gt=0, description="onnx: pixels divided by this after the mean")
    rgb: bool = Field(True, description="onnx: feed RGB (false: BGR)")
    layout: Literal["nchw", "nhwc"] = Field("nchw", description="onnx: nchw or nhwc")
    device: str = Field("auto", description="onnx: inference device")

    def options(self) -> dict[str, Any]:
        if self.kind == "dlib":
            return {"net": self.net, "device": self.device}
        return {
            "model": self.model,
            "input_size": self.input_size,
            "mean": self.mean,
            "std": self.std,
            "rgb": self.rgb,
            "layout": self.layout,
            "device": self.device,
        }


class MatchConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    metric: Literal["l2", "cosine"] = Field(
        "l2", description="l2 (distance <= threshold) or cosine (similarity >= threshold)"
    )
    threshold: float = Field(
        0.6, gt=0, description="match threshold (dlib: L2 0.6, its documented value; ArcFace: cosine ~0.4)"
    )
    vote_window: int = Field(7, ge=1, description="readings per track taken into the majority vote")
    reembed_interval: int = Field(
        5, ge=1, description="a track is embedded again every N frames (1 = every frame); in between its vote stands"
    )
    stable_interval: int = Field(
        30,
        ge=1,
        description="a settled track (its last 3+ readings agree) is embedded again only every "
        "N frames (at least reembed_interval): who it is is known",
    )
    max_embeds_per_frame: int = Field(
        2,
        ge=0,
        description="embeddings in one frame at most, new tracks first, then the longest "
        "waiting (0 = no limit): faces arriving together are spread over frames",
    )


class EnrollConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    min_face_size: int = Field(60, ge=12, description="smallest face side (pixels) accepted for enrollment")
    min_sharpness: float = Field(30.0, ge=0, description="variance of the Laplacian of the face crop; below = blurred")


class FacesConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    gallery: str = Field("~/.local/share/nano_vision/faces.db", description="SQLite gallery file (created 0600)")
    detector: DetectorConfig = Field(default_factory=DetectorConfig)
    embedding: EmbeddingConfig = Field(default_factory=EmbeddingConfig)
    match: MatchConfig = Field(default_factory=MatchConfig)
    enroll: EnrollConfig = Field(default_factory=EnrollConfig)


class EnrollmentRefused(ConfigError):
    """An enrollment image failed a quality gate; the message says which and why."""


@dataclass
class EnrollResult:
    name: str
    added: int
    total: int
    faces: list[dict[str, Any]] = field(default_factory=list)


def sharpness(gray_crop: np.ndarray) -> float:
    """Variance of the Laplacian (low = blurred), on the crop resized to 112 px for comparability."""
    g = cv2.resize(gray_crop, (112, 112), interpolation=cv2.INTER_AREA)
    return float(cv2.Laplacian(g, cv2.CV_64F).var())


def crop(image: np.ndarray, box: np.ndarray, margin: float = 0.0) -> np.ndarray:
    x1, y1, x2, y2 = box
    mw, mh = (x2 - x1) * margin, (y2 - y1) * margin
    h, w = image.shape[:2]
    a, b = int(max(0, x1 - mw)), int(max(0, y1 - mh))
    c, d = int(min(w, x2 + mw)), int(min(h, y2 + mh))
    return image[b : max(d, b + 1), a : max(c, a + 1)]


class FaceRecognizer:
    """Owns the detector, the embedder and the gallery; one instance per node / CLI run."""

    def __init__(self, config: FacesConfig, gallery: Gallery | None = None, with_embedder: bool = True) -> None:
        self.config = config
        self.detector = create_face_detector(config.detector.kind, **config.detector.options())
        self.embedder: Embedder | None = (
            create_embedder(config.embedding.kind, **config.embedding.options()) if with_embedder else None
        )
        from nano_vision_ros.core import paths

        self.gallery = gallery or Gallery(paths.resolve(config.gallery) if config.gallery != ":memory:" else ":memory:")
        self.tracker = make_tracker(0.2, 10)
        self.voter = TrackVoter(config.match.vote_window)
        self.labels = [UNKNOWN]
        self._frame = 0
        self._last_embed: dict[int, int] = {}

    @property
    def model_name(self) -> str:
        return self.embedder.name if self.embedder else ""

    def _due(self, tids: np.ndarray) -> np.ndarray:
        """Which faces to embed this frame. Why: the embedding is the cost (dlib 70-120 ms a face
        on this CPU), so only what needs it is embedded: new tracks first, unsettled tracks every
        `reembed_interval` frames, settled ones every `stable_interval`, at most
        `max_embeds_per_frame` in one frame (the longest waiting first)."""
        m = self.config.match
        due: list[tuple[int, int, int]] = []  # (priority, -frames since the last embedding, index)
        for i, t in enumerate(tids):
            last = self._last_embed.get(int(t))
            if last is None:
                due.append((0, 0, i))
                continue
            every = max(m.reembed_interval, m.stable_interval) if self.voter.settled(int(t)) else m.reembed_interval
            if self._frame - last >= every:
                due.append((1, last - self._frame, i))
        due.sort()
        if m.max_embeds_per_frame:
            due = due[: m.max_embeds_per_frame]
        need = np.zeros(len(tids), bool)
        need[[d[2] for d in due]] = True
        return need

    def reset_tracks(self) -> None:
        """Forget tracks and votes (after a gallery change, so new names apply at once)."""
        self.tracker.reset()
        self.voter.clear()
        self._last_embed.clear()

    def warmup(self) -> None:
        self.detector.warmup()
        if self.embedder is not None:
            img = np.zeros((160, 160, 3), np.uint8)
            box = np.array([[40, 40, 120, 120]], np.float32)
            lm = np.array([[[60, 70], [100, 70], [80, 90], [65, 105], [95, 105]]], np.float32)
            self.embedder.embed(img, box, lm)

    def detect(self, image_bgr: np.ndarray) -> FaceBoxes:
        return self.detector.detect(image_bgr)

    def identify(self, image_bgr: np.ndarray, faces: FaceBoxes) -> list[tuple[str | None, float, float]]:
        """(identity or None, similarity, distance) of each face, no tracking."""
        assert self.embedder is not None
        vecs = self.embedder.embed(image_bgr, faces.boxes, faces.landmarks)
        m = self.config.match
        return [
            (r.name, r.similarity, r.distance)
            for r in self.gallery.match(vecs, self.embedder.name, m.metric, m.threshold)
        ]

    def process(self, image_bgr: np.ndarray) -> Detections:
        """One frame -> tracked, voted identities."""
        faces = self.detect(image_bgr)
        tids = self.tracker.update(faces.boxes, faces.scores)
        self.voter.forget(self.tracker.ended)
        if len(faces) == 0:
            return Detections.empty(self.labels)
        self._frame += 1
        for t in self.tracker.ended:
            self._last_embed.pop(t, None)
        need = self._due(tids)
        raw: list[tuple[str | None, float, float] | None] = [None] * len(faces)
        if need.any():
            idx = np.flatnonzero(need)
            for k, found in zip(idx, self.identify(image_bgr, faces.select(idx))):
                raw[k] = found
                self._last_embed[int(tids[k])] = self._frame
        labels: list[str] = []
        scores, attrs = [], []
        for i, r in enumerate(raw):
            if r is None:  # embedded recently: the track's vote stands
                voted, vscore, votes = self.voter.result(int(tids[i]))
                name, sim, dist = voted, vscore, float("nan")
            else:
                name, sim, dist = r
                voted, vscore, votes = self.voter.add(int(tids[i]), name, sim)
            label = voted or UNKNOWN
            if label not in labels:
                labels.append(label)
            scores.append(sim if voted == name else vscore)
            attrs.append(
                {
                    "class_id": label,
                    "identity": label,
                    "similarity": round(sim, 4),
                    "distance": None if np.isnan(dist) else round(dist, 4),
                    "votes": votes,
                    "frame_identity": name or UNKNOWN,
                    "embedded": r is not None,
                    "detector_score": round(float(faces.scores[i]), 4),
                    "landmarks": np.round(faces.landmarks[i], 1).tolist(),
                }
            )
        cls = [labels.index(a["class_id"]) for a in attrs]
        return Detections(faces.boxes, np.array(scores, np.float32), np.array(cls, np.int32), labels, tids, attrs)

    # --- enrollment --------------------------------------------------------------------------
    def check_quality(self, image_bgr: np.ndarray, faces: FaceBoxes, source: str = "image") -> int:
        """Index of the one acceptable face, or EnrollmentRefused naming the gate that failed."""
        if len(faces) == 0:
            raise EnrollmentRefused(f"{source}: no face found")
        if len(faces) > 1:
            raise EnrollmentRefused(f"{source}: {len(faces)} faces found; enrollment needs exactly one")
        x1, y1, x2, y2 = faces.boxes[0]
        side = min(x2 - x1, y2 - y1)
        cfg = self.config.enroll
        if side < cfg.min_face_size:
            raise EnrollmentRefused(f"{source}: face too small ({side:.0f} px < {cfg.min_face_size} px)")
        gray = (
            cv2.cvtColor(crop(image_bgr, faces.boxes[0]), cv2.COLOR_BGR2GRAY)
            if image_bgr.ndim == 3
            else crop(image_bgr, faces.boxes[0])
        )
        sharp = sharpness(gray)
        if sharp < cfg.min_sharpness:
            raise EnrollmentRefused(f"{source}: face too blurred (sharpness {sharp:.1f} < {cfg.min_sharpness})")
        return 0

    def enroll(self, name: str, images: list[tuple[str, np.ndarray]]) -> EnrollResult:
        """Enroll `name` from (source label, BGR image) pairs; all images must pass the gates
        (nothing is stored if one fails, so a refused request leaves the gallery unchanged)."""
        assert self.embedder is not None
        name = validate_name(name)
        if not images:
            raise EnrollmentRefused("no image given")
        vecs, info, thumb = [], [], None
        for source, img in images:
            if img is None or not isinstance(img, np.ndarray) or img.size == 0:
                raise EnrollmentRefused(f"{source}: not a readable image")
            if img.ndim == 2:
                img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
            faces = self.detect(img)
            i = self.check_quality(img, faces, source)
            one = faces.select(np.array([i]))
            vecs.append(self.embedder.embed(img, one.boxes, one.landmarks)[0])
            info.append({"source": source, "box": np.round(one.boxes[0], 1).tolist()})
            if thumb is None:
                t = cv2.resize(crop(img, one.boxes[0], 0.2), (96, 96), interpolation=cv2.INTER_AREA)
                ok, enc = cv2.imencode(".jpg", t, [cv2.IMWRITE_JPEG_QUALITY, 85])
                thumb = enc.tobytes() if ok else None
        total = self.gallery.add(name, np.stack(vecs), self.embedder.name, thumb)
        return EnrollResult(name, len(vecs), total, info)

    def close(self) -> None:
        self.detector.close()
        if self.embedder is not None:
            self.embedder.close()
        self.gallery.close()
