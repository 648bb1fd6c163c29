"""A time- and memory-bounded ring of JPEG-compressed frames (the recorder's pre-event buffer).

JPEG keeps memory small and bounded (a 1280x720 frame is ~116 KB at quality 80 against 2.7 MB raw;
22 s at 15 fps is ~38 MB) and the clip writer feeds the bytes to ffmpeg's MJPEG decoder as they
are, so nothing is decoded in Python.
"""
from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True)
class Frame:
    t: float  # capture time, seconds since the epoch
    jpeg: bytes


class FrameRing:
    """Keeps frames newer than ``seconds`` before the newest one, and at most ``max_bytes`` in all."""

    def __init__(self, seconds: float, max_bytes: int) -> None:
        self.seconds = float(seconds)
        self.max_bytes = int(max_bytes)
        self._frames: deque[Frame] = deque()
        self._bytes = 0
        self._lock = threading.Lock()
        self.evicted_for_memory = 0  # frames dropped early because of max_bytes (buffer too small)

    def add(self, frame: Frame) -> None:
        with self._lock:
            if self._frames and frame.t < self._frames[-1].t:
                return  # out of order (clock step back): keep the ring sorted
            self._frames.append(frame)
            self._bytes += len(frame.jpeg)
            horizon = frame.t - self.seconds
            while self._frames and self._frames[0].t < horizon:
                self._bytes -= len(self._frames.popleft().jpeg)
            while self._bytes > self.max_bytes and len(self._frames) > 1:
                self._bytes -= len(self._frames.popleft().jpeg)
                self.evicted_for_memory += 1

    def since(self, t0: float) -> list[Frame]:
        """Frames with t >= t0, oldest first."""
        with self._lock:
            return [f for f in self._frames if f.t >= t0]

    @property
    def nbytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._frames)

    @property
    def oldest(self) -> float | None:
        with self._lock:
            return self._frames[0].t if self._frames else None

    @property
    def newest(self) -> float | None:
        with self._lock:
            return self._frames[-1].t if self._frames else None
