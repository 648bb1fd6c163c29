"""A time- and memory-bounded ring of encoded H.264 frames (the recorder's pre-event buffer).

The recorder's one encoder turns every frame into an access unit once; the ring keeps them, and a
clip is cut from them by stream copy (no decode, no second encode). The ring always begins with a
keyframe, because a clip can only begin at one: whole groups of pictures leave it together.
A 768x576 stream at 10 fps is ~1 Mbit/s, so 22 s is ~3 MB (a JPEG ring held ~16 MB).
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True)
class Frame:
    t: float  # slot time of the frame, seconds since the epoch
    data: bytes  # one H.264 access unit (Annex-B)
    key: bool = True  # an IDR frame with its SPS/PPS: a clip may begin here


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
            if not self._frames and not frame.key:
                return  # nothing decodable before the first keyframe
            self._frames.append(frame)
            self._bytes += len(frame.data)
            horizon = frame.t - self.seconds
            while self._frames and self._frames[0].t < horizon:
                self._pop()
            while self._bytes > self.max_bytes and len(self._frames) > 1:
                self._pop()
                self.evicted_for_memory += 1
            while self._frames and not self._frames[0].key:  # the rest of a group whose keyframe left
                self._pop()

    def _pop(self) -> None:
        self._bytes -= len(self._frames.popleft().data)

    def since(self, t0: float) -> list[Frame]:
        """Frames with t >= t0, oldest first."""
        with self._lock:
            return [f for f in self._frames if f.t >= t0]

    def from_keyframe(self, t0: float, floor: float = float("-inf")) -> list[Frame]:
        """Frames from the newest keyframe in [floor, t0], else from the first keyframe after floor; [] if none yet."""
        with self._lock:
            frames = list(self._frames)
        start = None
        for i, f in enumerate(frames):
            if not f.key or f.t < floor:
                continue
            if f.t <= t0 or start is None:
                start = i
            if f.t > t0:
                break
        return frames[start:] if start is not None else []

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
