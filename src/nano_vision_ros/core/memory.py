"""Keep glibc from handing multi-megabyte frame buffers back to the kernel after every frame.

Every 1080p message a Python subscriber takes allocates a few 6 MB buffers (the C message, a
bytes object, the array.array). With glibc's defaults, buffers that size are mmap'd and unmapped
(or trimmed from a thread arena's heap) each time, so every frame pays ~1,500 page faults per
buffer: measured here, ~10 ms of CPU per received 1080p frame. With the mmap threshold above the
frame size and a high trim threshold the same memory is reused: ~3 ms per frame
(docs/performance/image_transport.md). This is process-wide and costs only the memory of the
few largest frames in flight.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
#: glibc caps the mmap threshold at 32 MiB on 64-bit (HEAP_MAX_SIZE / 2): a 4K bgr8 frame is 24 MiB
MMAP_THRESHOLD = 32 * 1024 * 1024
TRIM_THRESHOLD = 512 * 1024 * 1024
_done = False


def tune_malloc_for_frames() -> bool:
    """Set glibc's mmap/trim thresholds for large frame buffers; False where not glibc or disabled.

    Skipped when ``NANO_VISION_MALLOC_TUNING=0`` or when the process was started with the
    ``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_`` variables (the user chose already).
    """
    global _done
    if _done:
        return True
    if os.environ.get("NANO_VISION_MALLOC_TUNING", "1") == "0":
        return False
    if "MALLOC_MMAP_THRESHOLD_" in os.environ or "MALLOC_TRIM_THRESHOLD_" in os.environ:
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl or another libc: nothing to tune
        return False
    ok = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    _done = ok
    log.debug("malloc tuning for frames: %s", "on" if ok else "refused by libc")
    return ok
