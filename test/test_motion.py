"""Motion gate on real frames (samples/vtest.avi: people walking in a hall)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from nano_vision_ros.core.detection.motion import MotionConfig, MotionDetector, MotionGate, parse_masks


@pytest.fixture(scope="module")
def frames(samples):
    cap = cv2.VideoCapture(str(samples / "vtest.avi"))
    out = []
    while len(out) < 60:
        ok, f = cap.read()
        assert ok, "vtest.avi ended early"
        out.append(f)
    cap.release()
    return out


def test_people_walking_trigger_motion(frames):
    md = MotionDetector(MotionConfig())
    results = [md.detect(f) for f in frames]
    assert not results[0]  # the first frame only sets the background
    moving = [r for r in results[5:] if r]
    assert len(moving) >= 50, f"motion on {len(moving)} of 55 frames"
    h, w = frames[0].shape[:2]
    for r in moving:
        assert 0.0 < r.share < 0.6
        assert (r.boxes[:, 0] >= 0).all() and (r.boxes[:, 2] <= w + 1).all() and (r.boxes[:, 3] <= h + 1).all()


def test_still_frame_repeated_is_no_motion(frames):
    gate = MotionGate(MotionConfig(keepalive_period=1.0, hold=0.5))
    runs = [gate.should_run(frames[10], t / 10.0) for t in range(100)]  # 10 s at 10 fps
    assert not any(gate.detector.detect(frames[10]) for _ in range(3))
    # first frame, then the keep-alive once a second: 10 runs in 10 s
    assert sum(runs) == 10 and runs[0] and runs[10] and not any(runs[1:10])
    assert gate.model_runs == 10 and gate.gated_share == pytest.approx(0.9)
    gate.force()
    assert gate.should_run(frames[10], 10.05)


def test_motion_runs_the_model_then_holds(frames):
    gate = MotionGate(MotionConfig(keepalive_period=5.0, hold=0.3))
    for i in range(5):
        gate.should_run(frames[0], i * 0.1)
    assert gate.model_runs == 1
    # the video plays: people move -> the model runs on (nearly) every frame
    runs = [gate.should_run(f, 0.5 + i * 0.1) for i, f in enumerate(frames[1:41])]
    assert sum(runs) >= 38


def test_max_rate_caps_the_model_motion_or_not(frames):
    """The per-camera detection target: 2.5 Hz on a moving scene at 10 fps runs the model on every
    4th frame; with gating off too; force() (new thresholds) still runs at once."""
    gate = MotionGate(MotionConfig(keepalive_period=5.0, hold=0.3, max_rate=2.5))
    runs = [gate.should_run(f, i * 0.1) for i, f in enumerate(frames[:40])]  # 4 s of people walking
    assert sum(runs) == 10 and all(runs[i] == (i % 4 == 0) for i in range(40)), runs
    gate.force()
    assert gate.should_run(frames[40], 4.01)
    # camera stamps jitter (+-20 ms at 10 fps): the rate stays at the cap, not one frame slower
    jitter = np.random.default_rng(5).uniform(-0.02, 0.02, 40)
    jittered = MotionGate(MotionConfig(keepalive_period=5.0, hold=0.3, max_rate=2.5))
    assert sum(jittered.should_run(f, i * 0.1 + jitter[i]) for i, f in enumerate(frames[:40])) == 10
    ungated = MotionGate(MotionConfig(enabled=False, max_rate=5.0))
    assert sum(ungated.should_run(frames[0], i * 0.1) for i in range(20)) == 10
    with pytest.raises(ValueError, match="max_rate"):
        MotionConfig(max_rate=-1)


def test_motion_seen_while_capped_runs_the_next_allowed_frame(frames):
    gate = MotionGate(MotionConfig(keepalive_period=10.0, hold=0.0, max_rate=1.0))
    assert gate.should_run(frames[10], 0.0)  # the first frame
    for i in range(1, 10):  # still scene for 0.9 s
        assert not gate.should_run(frames[10], i * 0.1)
    assert not gate.should_run(frames[30], 0.95)  # someone moved, inside the cap's interval
    # 1 s after the last run: the still frame again, but motion was seen after that run -> runs?
    # hold is 0, so only fresh motion counts: a moving frame at 1.05 s runs the model
    assert gate.should_run(frames[31], 1.05)


def test_mask_hides_motion_inside_it(frames):
    h, w = frames[0].shape[:2]
    whole = [[(0, 0), (w, 0), (w, h), (0, h)]]
    md = MotionDetector(MotionConfig(masks=whole))
    assert not any(md.detect(f) for f in frames[:40])
    free = MotionDetector(MotionConfig())
    ref = [free.detect(f) for f in frames[:40]]
    # mask the left half: no motion box lies wholly in it, motion on the right is still seen
    left = [[(0, 0), (w // 2, 0), (w // 2, h), (0, h)]]
    half = MotionDetector(MotionConfig(masks=left))
    got = [half.detect(f) for f in frames[:40]]
    right_motion = sum(bool(r) and (r.boxes[:, 2] > w // 2 + 8).any() for r in ref)
    assert right_motion > 10 and sum(bool(g) for g in got) >= right_motion // 2
    for g in got:
        if g:
            assert (g.boxes[:, 2] > w // 2 - 8).all()


def test_global_change_resets_background(frames):
    md = MotionDetector(MotionConfig())
    md.detect(frames[0])
    dark = (frames[0] // 4).astype(np.uint8)
    r = md.detect(dark)
    assert r and r.share > 0.6 and len(r.boxes) == 1  # counted as motion over the whole frame
    assert not md.detect(dark)  # the new background


def test_bad_motion_config_is_named():
    with pytest.raises(ValueError, match="sensitivity"):
        MotionConfig(sensitivity=0)
    with pytest.raises(ValueError, match="min_area"):
        MotionConfig(min_area=2)
    with pytest.raises(ValueError, match=r"masks\[0\]"):
        parse_masks("[[[0, 0], [10, 0]]]")
    with pytest.raises(ValueError, match="list of polygons"):
        parse_masks("{a: 1}")
    assert parse_masks("[[[0, 0], [10, 0], [10, 10]]]") == [[(0.0, 0.0), (10.0, 0.0), (10.0, 10.0)]]
    assert parse_masks("") == [] and parse_masks("[]") == []
