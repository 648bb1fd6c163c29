#!/usr/bin/env python3
"""Motion gate: what it saves and what it loses, on the sample video, and a static camera's CPU.

    .venv/bin/python bench/motion_gate.py                  # vtest.avi, all frames, then 20 s static scene
    .venv/bin/python bench/motion_gate.py --frames 300 --static-seconds 10

Detections: the model runs once on every frame (the ungated run: detect + ByteTrack); the gated
run replays the same per-frame model outputs only on frames the gate lets through (the model is
deterministic, so this is what the node would have computed), re-sending the last run's tracked
detections on gated frames, as detector_node does. Per frame, people of the ungated run are matched
to the gated run's (IoU >= 0.5): recall. For each ungated track (a person walking in), the delay
in frames until the gated run has a matching box, and tracks never matched. Static scene: a still
frame of the video at 10 fps, the detector's per-frame work (motion + model at keep-alive +
message), process CPU cores, gated vs ungated side by side. Figures: docs/performance/motion.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))

from nano_vision_ros.core.detection.motion import MotionConfig, MotionGate
from nano_vision_ros.core.detection.nms import iou_matrix
from nano_vision_ros.core.detection.profiles import build_detector, load_profile
from nano_vision_ros.core.detection.types import Detections
from nano_vision_ros.core.tracking import ByteTracker

VIDEO = REPO.parent / "shared" / "samples" / "vtest.avi"


def _cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def _people(d: Detections) -> Detections:
    return d.select(np.array([d.label_of(i) == "person" for i in range(len(d))], bool))


def _matched(a: Detections, b: Detections, thr: float = 0.5) -> np.ndarray:
    """Per box of `a`: True where a box of `b` overlaps it by IoU >= thr (one-to-one, greedy by IoU)."""
    hit = np.zeros(len(a), bool)
    if not len(a) or not len(b):
        return hit
    iou = iou_matrix(a.boxes, b.boxes)
    used: set[int] = set()
    for i, j in sorted(
        ((i, j) for i in range(len(a)) for j in range(len(b)) if iou[i, j] >= thr), key=lambda ij: -iou[ij]
    ):
        if not hit[i] and j not in used:
            hit[i] = True
            used.add(j)
    return hit


def detections_study(
    video: list[np.ndarray], raw_all: list[Detections], order: list[int], fps: float, cfg: MotionConfig
) -> dict:
    """`order`: video frame indexes as the camera delivers them (a held index = a still scene)."""
    frames = [video[k] for k in order]
    raw = [raw_all[k] for k in order]
    ungated_tracker, gated_tracker = ByteTracker(), ByteTracker()
    gate = MotionGate(cfg)
    ungated, gated = [], []
    held: Detections | None = None
    motion_ms = []
    for i, (f, r) in enumerate(zip(frames, raw)):
        ungated.append(ungated_tracker.update(r))
        t0 = time.perf_counter()
        run = gate.should_run(f, i / fps)
        motion_ms.append((time.perf_counter() - t0) * 1e3)
        if run:
            held = gated_tracker.update(r)
        gated.append(held if held is not None else Detections.empty(r.labels))
    total = hits = 0
    first_seen: dict[int, int] = {}
    last_seen: dict[int, int] = {}
    found_at: dict[int, int] = {}
    for i, (u, g) in enumerate(zip(ungated, gated)):
        pu, pg = _people(u), _people(g)
        m = _matched(pu, pg)
        total += len(pu)
        hits += int(m.sum())
        for k, tid in enumerate(pu.track_ids):
            tid = int(tid)
            if tid < 0:
                continue
            first_seen.setdefault(tid, i)
            last_seen[tid] = i
            if m[k] and tid not in found_at:
                found_at[tid] = i
    delays = [found_at[t] - first_seen[t] for t in first_seen if t in found_at]
    lost = [t for t in first_seen if t not in found_at]
    return {
        "frames": len(frames),
        "model_runs": gate.model_runs,
        "gated_share": gate.gated_share,
        "people": total,
        "matched": hits,
        "recall": hits / total if total else 1.0,
        "tracks": len(first_seen),
        "tracks_found": len(delays),
        "lost": lost,
        "lost_lengths": [last_seen[t] - first_seen[t] + 1 for t in lost],
        "delay_med": statistics.median(delays) if delays else 0.0,
        "delay_max": max(delays) if delays else 0,
        "delay_zero": sum(d == 0 for d in delays),
        "motion_ms": statistics.median(motion_ms),
    }


def static_cpu(
    det, frame: np.ndarray, fps: float, seconds: float, rounds: int, cfg: MotionConfig
) -> list[tuple[str, float]]:
    """Cores of the detector's per-frame work on a still frame at `fps`, gated and ungated alternating."""
    try:
        from std_msgs.msg import Header

        from nano_vision_ros.ros.detections import to_msg

        header = Header(frame_id="cam0")
        pub = lambda d: to_msg(d, header)
    except Exception:  # noqa: BLE001 - no ROS here: the message step is left out
        pub = None
    out = []
    for _ in range(rounds):
        for gated in (True, False):
            gate = MotionGate(MotionConfig(**{**cfg.__dict__, "enabled": gated}))
            tracker, held = ByteTracker(), None
            n, period = int(seconds * fps), 1.0 / fps
            c0, t0 = _cpu_s(), time.monotonic()
            for i in range(n):
                f = frame.copy()  # a new frame arrives each time, as from the camera
                if gate.should_run(f, time.monotonic()):
                    held = tracker.update(det.detect(f))
                if pub is not None and held is not None:
                    pub(held)
                delay = t0 + (i + 1) * period - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            out.append(("gated" if gated else "ungated", (_cpu_s() - c0) / (time.monotonic() - t0), gate.model_runs, n))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=0, help="frames of the video (0 = all)")
    ap.add_argument("--static-seconds", type=float, default=10.0, help="seconds per static-scene window")
    ap.add_argument("--rounds", type=int, default=2, help="static-scene windows per setting")
    ap.add_argument("--fps", type=float, default=10.0, help="frame rate (vtest.avi is 10 fps)")
    args = ap.parse_args()
    cap = cv2.VideoCapture(str(VIDEO))
    frames = []
    while not args.frames or len(frames) < args.frames:
        ok, f = cap.read()
        if not ok:
            break
        frames.append(f)
    cap.release()
    if not frames:
        print(f"cannot read {VIDEO}")
        return 1
    import onnxruntime as ort

    det = build_detector(load_profile("coco_objects"), backend="onnxruntime", device="cpu")
    det.warmup(3)
    cfg = MotionConfig()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs; onnxruntime {ort.__version__}, "
        f"{det.backend.threads} threads; {VIDEO.name} {frames[0].shape[1]}x{frames[0].shape[0]}, {len(frames)} frames "
        f"at {args.fps:g} fps; NanoDet-m 416, score {det.score_threshold}; gate {cfg}"
    )
    raw = [det.detect(f) for f in frames]
    n = len(frames)
    # the hall video never stands still; "with pauses" holds a frame for 3 s after every 5 s of
    # video (a scene that goes quiet, then people move or walk in again)
    paused = []
    for k in range(n):
        paused.append(k)
        if k % 50 == 49:
            paused += [k] * 30
    print(
        "\n| sequence | frames | model runs | gated share | people (ungated) | matched IoU>=0.5 | recall | tracks | "
        "first box delay median / max (frames) | found on their first frame | tracks never matched (their length) | motion ms |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name, order in (("as recorded", list(range(n))), ("with 3 s pauses", paused)):
        r = detections_study(frames, raw, order, args.fps, cfg)
        print(
            f"| {name} | {r['frames']} | {r['model_runs']} | {r['gated_share']:.1%} | {r['people']} | {r['matched']} | "
            f"{r['recall']:.1%} | {r['tracks']} | {r['delay_med']:g} / {r['delay_max']} | {r['delay_zero']} of "
            f"{r['tracks_found']} | {len(r['lost'])} {r['lost_lengths']} | {r['motion_ms']:.2f} |"
        )
    still = frames[min(len(frames) - 1, 100)]
    rows = static_cpu(det, still, args.fps, args.static_seconds, args.rounds, cfg)
    print(
        f"\nStatic scene (frame 100 of the video at {args.fps:g} fps, {args.static_seconds:g} s windows, alternating):"
    )
    print("| setting | detector cores | model runs / frames |")
    print("|---|---|---|")
    for name, cores, runs, n in rows:
        print(f"| {name} | {cores:.3f} | {runs} / {n} |")
    det.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
