"""Plate reading speed on one core: the readers alone on rectified plate crops, one plate a call.

    .venv/bin/python bench/plate_reading_speed.py [--plates 60] [--rounds 2]

The crops are the rectified plates that PlateReader finds on the tests' SYNTHETIC vehicle scenes
(test/plates_synth.py); each reader (PP-OCRv4, the trained second reader) reads every crop on its
own, pinned to one core with one thread. Finding (corner detector, text boxes) is not counted here:
bench/plates.py reports find + read per frame.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "test"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--plates", type=int, default=60)
    ap.add_argument("--rounds", type=int, default=2, help="timed rounds over all crops (the best is reported)")
    args = ap.parse_args()
    try:
        os.sched_setaffinity(0, {max(os.sched_getaffinity(0))})
    except (AttributeError, OSError):
        pass
    from plates_synth import dataset

    from nano_vision_ros.core.recognition.plates import PlateReader, PlatesConfig

    reader = PlateReader(PlatesConfig(finder={"mode": "frame"}))
    reader.warmup()
    crops = [r.crop for _t, _c, img, _b in dataset(args.plates, seed=5) for r in reader.find_and_read(img)]
    crops = [c for c in crops if c is not None]
    print(f"{len(crops)} rectified plates (e.g. {crops[0].shape[1]}x{crops[0].shape[0]} px), one core, one thread")
    total = 0.0
    for name, rec in (("PP-OCRv4", reader.recognizer), ("trained second reader", reader.second_recognizer)):
        if rec is None:
            continue
        best = min(_time(rec, crops) for _ in range(args.rounds))
        total += best
        print(f"{name}: {best * 1000:.2f} ms per plate, {1 / best:.0f} plates/s")
    print(f"both (the default fused reading): {total * 1000:.2f} ms per plate, {1 / total:.0f} plates/s")
    reader.close()
    return 0


def _time(rec, crops) -> float:
    t0 = time.perf_counter()
    for c in crops:
        rec.read([c])
    return (time.perf_counter() - t0) / len(crops)


if __name__ == "__main__":
    sys.exit(main())
