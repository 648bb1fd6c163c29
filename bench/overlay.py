#!/usr/bin/env python3
"""The annotated view on real frames: the demo's detector (NanoDet-m, tracking) and rules over the
bundled sample, the last frame drawn with core.overlay, and the cost of drawing it.

    .venv/bin/python bench/overlay.py [--frames 80] [--out docs/images/overlay.png]

Prints the events raised, the per-frame draw time (scene + draw, ms; the frame conversion and
publish are the node's) and writes the last annotated frame. Figures: docs/VIEWS.md.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path

import cv2
import yaml

from nano_vision_ros.core import overlay
from nano_vision_ros.core.detection.profiles import build_detector, load_profile
from nano_vision_ros.core.events import EventEngine, parse_rules
from nano_vision_ros.core.tracking import ByteTracker, TrackerConfig

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=80)
    ap.add_argument("--out", default=str(REPO / "docs/images/overlay.png"))
    a = ap.parse_args()
    params = yaml.safe_load((REPO / "config/site_params.yaml").read_text())
    rules = parse_rules(params["/**/events_node"]["ros__parameters"]["rules"], "cam0")
    # the demo's walkway rule fires after 0.5 s; a tighter crowd threshold shows a camera-wide count too
    engine = EventEngine(rules, "bench", "bench", "cam0")
    zones = overlay.zones_of(rules)
    det = build_detector(load_profile("coco_objects"))
    tracker = ByteTracker(TrackerConfig())
    views = overlay.Violations()
    cap = cv2.VideoCapture(str(REPO / "samples/vtest.mp4"))
    times, raised, out = [], 0, None
    for n in range(a.frames):
        ok, img = cap.read()
        if not ok:
            break
        dets = tracker.update(det.detect(img))
        for ev in engine.process("detections", dets, n / 10.0):
            views.update(ev.event_id, ev.rule, ev.state, ev.track_ids)
            raised += ev.state == "new"
        t0 = time.perf_counter()
        out = overlay.draw(img, overlay.scene(dets, zones, views.snapshot()))
        times.append((time.perf_counter() - t0) * 1e3)
    assert out is not None, "no frame read from samples/vtest.mp4"
    cv2.imwrite(a.out, out)
    print(
        f"{platform.node()} {platform.machine()}: {len(times)} frames {out.shape[1]}x{out.shape[0]}, "
        f"{raised} events raised; draw p50 {statistics.median(times):.2f} ms, max {max(times):.2f} ms -> {a.out}"
    )


if __name__ == "__main__":
    main()
