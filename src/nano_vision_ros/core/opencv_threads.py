"""One OpenCV thread per process for the per-frame work, instead of OpenCV's pool of one per core.

Why: the frame nodes call OpenCV on small jobs at the camera's rate (motion gate, resizes, the
encoders' I420 conversion, the overlay). OpenCV splits each over its pool and the pool's workers
busy-wait (sched_yield) after every job, which on a 2-core board costs more CPU than the split
saves: in a camera's container watching a still scene, 0.25 -> 0.23 cores with one thread, two
runs each (docs/performance/site_cost.md). Process-wide (cv2.setNumThreads), once.
``NANO_VISION_CV_THREADS`` overrides: a number of threads, 0 = OpenCV's own default.
"""

from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)

ENV = "NANO_VISION_CV_THREADS"
DEFAULT = 1
_done: int | None = None


def limit_opencv_threads() -> int:
    """Set OpenCV's thread count from NANO_VISION_CV_THREADS (default 1); the count set, 0 = untouched."""
    global _done
    if _done is not None:
        return _done
    raw = os.environ.get(ENV, "").strip()
    n = DEFAULT
    if raw:
        try:
            n = int(raw)
            if n < 0:
                raise ValueError
        except ValueError:
            log.warning("%s=%r is not a thread count (0 or more): using %d", ENV, raw, DEFAULT)
            n = DEFAULT
    if n:
        import cv2

        cv2.setNumThreads(n)
    _done = n
    return n
