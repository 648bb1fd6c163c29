"""Track ids and per-track voting, so one bad frame does not flip an identity or a plate.

``make_tracker`` gives the project's ByteTrack tracker (``core.tracking``, Kalman-predicted boxes)
with every detection tracked, as ``update(boxes, scores) -> ids`` and ``ended`` (ids dropped by the
last update, for vote clean-up). One tracker for detections, faces and plates.
"""

from __future__ import annotations

from collections import Counter, deque

import numpy as np

from nano_vision_ros.core.detection.nms import iou_matrix  # noqa: F401 - re-exported for recognition.plates


class ByteTrackAdapter:
    """``core.tracking.ByteTracker`` as update(boxes) -> ids (every detection is tracked)."""

    def __init__(self, match_iou: float = 0.2, track_buffer: int = 15) -> None:
        from nano_vision_ros.core.tracking import ByteTracker, TrackerConfig

        self._bt = ByteTracker(
            TrackerConfig(
                high_threshold=0.0,
                low_threshold=0.0,
                new_track_threshold=0.0,
                match_iou=match_iou,
                track_buffer=track_buffer,
                class_aware=False,
            )
        )
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


def make_tracker(match_iou: float = 0.2, max_missed: int = 15) -> ByteTrackAdapter:
    """The recognisers' tracker: ByteTrack, a track kept `max_missed` updates without a match."""
    return ByteTrackAdapter(match_iou, max_missed)


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

    def settled(self, track_id: int, n: int = 3) -> bool:
        """Whether the track's last `n` or more readings all agree (its identity is known)."""
        dq = self._votes.get(int(track_id))
        return dq is not None and len(dq) >= max(n, 1) and len({lbl for lbl, _ in dq}) == 1

    def forget(self, track_ids: list[int]) -> None:
        for t in track_ids:
            self._votes.pop(int(t), None)

    def clear(self) -> None:
        self._votes.clear()
