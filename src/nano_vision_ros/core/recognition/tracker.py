"""Track ids and per-track voting, so one bad frame does not flip an identity or a plate.

``make_tracker`` uses the project's ByteTrack tracker (``core.tracking``, Kalman-predicted boxes)
and falls back to the small greedy IoU tracker here when that module is absent. Both expose
``update(boxes, scores) -> ids`` and ``ended`` (ids dropped by the last update, for vote clean-up).
"""
from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass

import numpy as np


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) IoU of x1,y1,x2,y2 boxes."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)), np.float32)
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return (inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)).astype(np.float32)


@dataclass
class _Track:
    tid: int
    box: np.ndarray
    missed: int = 0
    hits: int = 1


class IouTracker:
    """Greedy highest-IoU-first association; a track lives `max_missed` updates without a match."""

    def __init__(self, iou_threshold: float = 0.3, max_missed: int = 10) -> None:
        self.iou_threshold = float(iou_threshold)
        self.max_missed = int(max_missed)
        self._tracks: list[_Track] = []
        self._next = 1
        self.ended: list[int] = []  # ids dropped by the last update (for vote clean-up)

    def update(self, boxes: np.ndarray, scores: np.ndarray | None = None) -> np.ndarray:
        boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
        ids = np.full(len(boxes), -1, np.int64)
        prev = np.array([t.box for t in self._tracks], np.float32).reshape(-1, 4)
        iou = iou_matrix(prev, boxes)
        used_t: set[int] = set()
        if iou.size:
            order = np.dstack(np.unravel_index(np.argsort(-iou, axis=None), iou.shape))[0]
            for ti, di in order:
                if iou[ti, di] < self.iou_threshold:
                    break
                if ti in used_t or ids[di] >= 0:
                    continue
                used_t.add(int(ti))
                tr = self._tracks[ti]
                tr.box, tr.missed, tr.hits = boxes[di], 0, tr.hits + 1
                ids[di] = tr.tid
        for ti, tr in enumerate(self._tracks):
            if ti not in used_t:
                tr.missed += 1
        self.ended = [t.tid for t in self._tracks if t.missed > self.max_missed]
        self._tracks = [t for t in self._tracks if t.missed <= self.max_missed]
        for di in np.flatnonzero(ids < 0):
            self._tracks.append(_Track(self._next, boxes[di]))
            ids[di] = self._next
            self._next += 1
        return ids

    def reset(self) -> None:
        self._tracks.clear()


class ByteTrackAdapter:
    """``core.tracking.ByteTracker`` behind the IouTracker interface (every detection is tracked)."""

    def __init__(self, match_iou: float = 0.2, track_buffer: int = 15) -> None:
        from nano_vision_ros.core.tracking import ByteTracker, TrackerConfig

        self._bt = ByteTracker(TrackerConfig(high_threshold=0.0, low_threshold=0.0, new_track_threshold=0.0,
                                             match_iou=match_iou, track_buffer=track_buffer, class_aware=False))
        self.ended: list[int] = []

    def update(self, boxes: np.ndarray, scores: np.ndarray | None = None) -> np.ndarray:
        from nano_vision_ros.core.detection.types import Detections

        boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
        scores = np.ones(len(boxes), np.float32) if scores is None else np.asarray(scores, np.float32)
        before = {t.id for t in self._bt.tracks}
        out = self._bt.update(Detections(boxes, scores, np.zeros(len(boxes), np.int32), ["object"]))
        self.ended = sorted(before - {t.id for t in self._bt.tracks})
        return np.asarray(out.track_ids, np.int64)

    def reset(self) -> None:
        self._bt.reset()


def make_tracker(match_iou: float = 0.2, max_missed: int = 15) -> "ByteTrackAdapter | IouTracker":
    """ByteTrack from core.tracking when available, else the IoU tracker."""
    try:
        return ByteTrackAdapter(match_iou, max_missed)
    except ImportError:
        return IouTracker(match_iou, max_missed)


class TrackVoter:
    """Majority vote of the last `window` readings of each track (label, score).

    The winner is the label with the most votes (ties: higher summed score); its score is the
    mean score of its votes. Unknown readings (None) vote too, so a stranger stays unknown.
    """

    def __init__(self, window: int = 7) -> None:
        self.window = max(1, int(window))
        self._votes: dict[int, deque] = {}

    def add(self, track_id: int, label: str | None, score: float) -> tuple[str | None, float, int]:
        """Record a reading; returns (winning label, its mean score, its vote count)."""
        dq = self._votes.setdefault(int(track_id), deque(maxlen=self.window))
        dq.append((label, float(score)))
        return self.result(track_id)

    def result(self, track_id: int) -> tuple[str | None, float, int]:
        dq = self._votes.get(int(track_id))
        if not dq:
            return None, 0.0, 0
        counts = Counter(lbl for lbl, _ in dq)
        sums: dict[str | None, float] = {}
        for lbl, s in dq:
            sums[lbl] = sums.get(lbl, 0.0) + s
        best = max(counts, key=lambda k: (counts[k], sums[k]))
        return best, sums[best] / counts[best], counts[best]

    def forget(self, track_ids: list[int]) -> None:
        for t in track_ids:
            self._votes.pop(int(t), None)

    def clear(self) -> None:
        self._votes.clear()
