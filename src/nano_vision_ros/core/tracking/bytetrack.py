"""A compact ByteTrack: Kalman-predicted boxes matched to detections in two rounds.

Why not a library: ``supervision`` pulls matplotlib/scipy/… for one class and its ByteTrack API
changes between releases; this is ~150 lines on numpy + scipy's Hungarian solver, following
Zhang et al., "ByteTrack" (ECCV 2022): high-score detections are matched first (IoU, Hungarian),
then the remaining tracks are matched to low-score detections, so occluded objects keep their id;
unmatched tracks are kept "lost" for ``track_buffer`` frames before their id is dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from nano_vision_ros.core.detection.nms import iou_matrix
from nano_vision_ros.core.detection.types import Detections


@dataclass
class TrackerConfig:
    high_threshold: float = 0.5  # detections at or above: first-round matches, may start tracks
    low_threshold: float = 0.1  # between low and high: second round only (occlusion recovery)
    new_track_threshold: float = 0.5  # a new id needs at least this score
    match_iou: float = 0.2  # first round: minimum IoU between predicted track and detection
    low_match_iou: float = 0.5  # second round
    track_buffer: int = 30  # frames a lost track keeps its id
    class_aware: bool = True  # never match across classes


class _Kalman:
    """Constant-velocity Kalman filter on (cx, cy, aspect, h), as in SORT/ByteTrack."""

    _F = np.eye(8, dtype=np.float64)
    _F[:4, 4:] = np.eye(4)
    _H = np.eye(4, 8, dtype=np.float64)
    _wp, _wv = 1.0 / 20, 1.0 / 160

    def __init__(self, z: np.ndarray) -> None:
        h = z[3]
        self.x = np.r_[z, np.zeros(4)]
        std = np.array(
            [
                2 * self._wp * h,
                2 * self._wp * h,
                1e-2,
                2 * self._wp * h,
                10 * self._wv * h,
                10 * self._wv * h,
                1e-5,
                10 * self._wv * h,
            ]
        )
        self.P = np.diag(std**2)

    def predict(self) -> None:
        h = self.x[3]
        q = np.array([self._wp * h, self._wp * h, 1e-2, self._wp * h, self._wv * h, self._wv * h, 1e-5, self._wv * h])
        self.x = self._F @ self.x
        self.P = self._F @ self.P @ self._F.T + np.diag(q**2)

    def update(self, z: np.ndarray) -> None:
        h = self.x[3]
        r = np.array([self._wp * h, self._wp * h, 1e-1, self._wp * h]) ** 2
        S = self._H @ self.P @ self._H.T + np.diag(r)
        K = np.linalg.solve(S, self._H @ self.P).T
        self.x = self.x + K @ (z - self._H @ self.x)
        self.P = (np.eye(8) - K @ self._H) @ self.P


def _xyxy_to_z(b: np.ndarray) -> np.ndarray:
    w, h = max(b[2] - b[0], 1e-3), max(b[3] - b[1], 1e-3)
    return np.array([(b[0] + b[2]) / 2, (b[1] + b[3]) / 2, w / h, h], np.float64)


def _z_to_xyxy(x: np.ndarray) -> np.ndarray:
    h = max(x[3], 1e-3)
    w = x[2] * h
    return np.array([x[0] - w / 2, x[1] - h / 2, x[0] + w / 2, x[1] + h / 2], np.float32)


class _Track:
    def __init__(self, tid: int, box: np.ndarray, cls: int, frame: int) -> None:
        self.id = tid
        self.kf = _Kalman(_xyxy_to_z(box))
        self.cls = cls
        self.last_frame = frame

    @property
    def box(self) -> np.ndarray:
        return _z_to_xyxy(self.kf.x)


def _match(
    tracks: list[_Track], boxes: np.ndarray, cls: np.ndarray, min_iou: float, class_aware: bool
) -> list[tuple[int, int]]:
    if not tracks or len(boxes) == 0:
        return []
    tb = np.stack([t.box for t in tracks])
    iou = iou_matrix(tb, boxes)
    if class_aware:
        tc = np.array([t.cls for t in tracks])
        iou = np.where(tc[:, None] == cls[None, :], iou, 0.0)
    rows, cols = linear_sum_assignment(-iou)
    return [(r, c) for r, c in zip(rows, cols) if iou[r, c] >= min_iou]


class ByteTracker:
    """``update(dets)`` returns the same detections with ``track_ids`` set (-1: not tracked)."""

    def __init__(self, config: TrackerConfig | None = None) -> None:
        self.config = config or TrackerConfig()
        self.tracks: list[_Track] = []  # tracked and lost
        self.frame = 0
        self._next_id = 1

    def reset(self) -> None:
        self.tracks.clear()
        self.frame = 0
        self._next_id = 1

    def update(self, dets: Detections) -> Detections:
        cfg = self.config
        self.frame += 1
        n = len(dets)
        ids = np.full(n, -1, np.int64)
        for t in self.tracks:
            t.kf.predict()
        scores, boxes, cls = dets.scores, dets.boxes, dets.class_ids
        high = np.flatnonzero(scores >= cfg.high_threshold)
        low = np.flatnonzero((scores >= cfg.low_threshold) & (scores < cfg.high_threshold))
        # round 1: every track (tracked or recently lost) against high-score detections
        matched_tracks: set[int] = set()
        for ti, di in _match(self.tracks, boxes[high], cls[high], cfg.match_iou, cfg.class_aware):
            self._assign(self.tracks[ti], boxes[high[di]], ids, high[di])
            matched_tracks.add(ti)
        # round 2: tracks seen last frame but unmatched, against low-score detections
        rest = [i for i, t in enumerate(self.tracks) if i not in matched_tracks and t.last_frame == self.frame - 1]
        for ri, di in _match([self.tracks[i] for i in rest], boxes[low], cls[low], cfg.low_match_iou, cfg.class_aware):
            self._assign(self.tracks[rest[ri]], boxes[low[di]], ids, low[di])
            matched_tracks.add(rest[ri])
        # new tracks from unmatched confident detections
        for hi in high:
            if ids[hi] < 0 and scores[hi] >= cfg.new_track_threshold:
                t = _Track(self._next_id, boxes[hi], int(cls[hi]), self.frame)
                self._next_id += 1
                self.tracks.append(t)
                ids[hi] = t.id
        # forget tracks lost for longer than the buffer
        self.tracks = [t for t in self.tracks if self.frame - t.last_frame <= cfg.track_buffer]
        return Detections(dets.boxes, dets.scores, dets.class_ids, dets.labels, ids, dets.attributes)

    def _assign(self, track: _Track, box: np.ndarray, ids: np.ndarray, di: int) -> None:
        track.kf.update(_xyxy_to_z(box))
        track.last_frame = self.frame
        ids[di] = track.id
