"""The one result type every detector, tracker and recogniser exchanges."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from numpy.typing import ArrayLike


@dataclass(init=False)
class Detections:
    """N detections in source-image pixels.

    boxes: (N, 4) float32 x1, y1, x2, y2; scores: (N,) float32; class_ids: (N,) int32 indexes
    into `labels`; track_ids: (N,) int64, -1 where untracked; attributes: per-detection extras
    (identity, plate text, colour…), or empty dicts.

    The constructor takes anything array-like (and no track_ids / attributes) and stores the
    normalised arrays, so the fields are never None after construction.
    """

    boxes: np.ndarray
    scores: np.ndarray
    class_ids: np.ndarray
    labels: list[str]
    track_ids: np.ndarray
    attributes: list[dict[str, Any]]

    def __init__(
        self,
        boxes: ArrayLike,
        scores: ArrayLike,
        class_ids: ArrayLike,
        labels: list[str],
        track_ids: ArrayLike | None = None,
        attributes: list[dict[str, Any]] | None = None,
    ) -> None:
        self.boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
        self.scores = np.asarray(scores, dtype=np.float32).reshape(-1)
        self.class_ids = np.asarray(class_ids, dtype=np.int32).reshape(-1)
        self.labels = labels
        n = len(self.boxes)
        if track_ids is None:
            self.track_ids = np.full(n, -1, dtype=np.int64)
        else:
            self.track_ids = np.asarray(track_ids, dtype=np.int64).reshape(-1)
        self.attributes = attributes if attributes else [{} for _ in range(n)]
        if not (len(self.scores) == len(self.class_ids) == len(self.track_ids) == len(self.attributes) == n):
            raise ValueError("Detections fields have different lengths")

    @classmethod
    def empty(cls, labels: list[str] | None = None) -> Detections:
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int32), labels or [])

    def __len__(self) -> int:
        return len(self.boxes)

    def label_of(self, i: int) -> str:
        c = int(self.class_ids[i])
        return self.labels[c] if 0 <= c < len(self.labels) else str(c)

    def select(self, mask: np.ndarray) -> Detections:
        idx = np.flatnonzero(mask) if np.asarray(mask).dtype == bool else np.asarray(mask, dtype=np.int64)
        return Detections(
            self.boxes[idx],
            self.scores[idx],
            self.class_ids[idx],
            self.labels,
            self.track_ids[idx],
            [self.attributes[i] for i in idx],
        )


class Detector(Protocol):
    """A frame in, detections out. Single-stage (backend + decoder) and multi-stage pipelines
    (e.g. face detector + mask classifier) implement this, so one detector node runs any task."""

    labels: list[str]

    def detect(self, image_bgr: np.ndarray) -> Detections: ...

    def close(self) -> None: ...
