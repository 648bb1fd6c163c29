"""ByteTrack-style tracker: ids stable under jitter and short misses; new objects get new ids."""

from __future__ import annotations

import numpy as np

from nano_vision_ros.core.detection.types import Detections
from nano_vision_ros.core.tracking import ByteTracker, TrackerConfig

LABELS = ["person", "car"]


def _dets(boxes, scores=None, cls=None):
    n = len(boxes)
    return Detections(
        np.array(boxes, np.float32).reshape(-1, 4),
        scores if scores is not None else [0.9] * n,
        cls if cls is not None else [0] * n,
        LABELS,
    )


def _walk(f):
    """Two people walking in opposite directions, one car parked."""
    return [[100 + 6 * f, 100, 160 + 6 * f, 260], [500 - 6 * f, 120, 560 - 6 * f, 280], [300, 300, 420, 380]]


def test_ids_stable_with_jitter_and_short_miss():
    rng = np.random.default_rng(3)
    tr = ByteTracker(TrackerConfig(track_buffer=5))
    seen: dict[int, set[int]] = {0: set(), 1: set(), 2: set()}
    for f in range(25):
        boxes = np.array(_walk(f), np.float32) + rng.normal(0, 2.0, (3, 4))
        keep = [0, 1, 2] if f not in (10, 11, 12) else [0, 2]  # person 1 hidden for 3 frames
        cls = np.array([0, 0, 1])[keep]
        out = tr.update(_dets(boxes[keep], cls=cls))
        assert (out.track_ids > 0).all()
        for k, tid in zip(keep, out.track_ids):
            seen[k].add(int(tid))
    assert all(len(v) == 1 for v in seen.values()), seen
    assert len({next(iter(v)) for v in seen.values()}) == 3


def test_new_object_gets_new_id_and_lost_track_expires():
    tr = ByteTracker(TrackerConfig(track_buffer=2))
    a = tr.update(_dets([[0, 0, 50, 100]])).track_ids[0]
    b = tr.update(_dets([[0, 0, 50, 100], [300, 300, 350, 400]])).track_ids
    assert b[0] == a and b[1] not in (a, -1)
    for _ in range(4):  # both gone longer than the buffer
        tr.update(_dets([]))
    c = tr.update(_dets([[0, 0, 50, 100]])).track_ids[0]
    assert c not in (a, b[1])


def test_low_score_keeps_track_alive_but_does_not_start_one():
    tr = ByteTracker(TrackerConfig(high_threshold=0.5, low_threshold=0.1))
    tid = tr.update(_dets([[10, 10, 60, 110]], scores=[0.9])).track_ids[0]
    out = tr.update(_dets([[12, 10, 62, 110], [400, 400, 450, 500]], scores=[0.2, 0.3]))
    assert out.track_ids[0] == tid  # occluded (low score) but same object
    assert out.track_ids[1] == -1  # weak detection of a new object: no id


def test_class_aware_matching():
    tr = ByteTracker()
    a = tr.update(_dets([[10, 10, 60, 110]], cls=[0])).track_ids[0]
    b = tr.update(_dets([[10, 10, 60, 110]], cls=[1])).track_ids[0]
    assert a != b
