"""The capture thread: open, read, pace, throttle, resize, deliver; reconnect with backoff.

The loop owns its source and runs on its own thread, so a slow or stuck source never blocks a ROS
executor. Each frame is handed to ``sink(frame, stamp_ns, seq)`` on this thread; ``frame`` is a
preallocated buffer that is reused for the next frame, so the sink uses it before returning
(publishing a ROS message copies it). State changes are logged once each, never per frame.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable

import numpy as np

from nano_vision_ros.core.capture.base import EndOfStream, FrameSource, SourceError

log = logging.getLogger(__name__)

CONNECTING, STREAMING, RECONNECTING, FINISHED, STOPPED = (
    "connecting",
    "streaming",
    "reconnecting",
    "finished",
    "stopped",
)
Sink = Callable[[np.ndarray, int, int], None]


def output_size(width: int, height: int, resize_width: int = 0, resize_height: int = 0) -> tuple[int, int]:
    """(w, h) after resizing; one side 0 keeps the aspect ratio, both 0 keeps the size."""
    if resize_width and resize_height:
        return resize_width, resize_height
    if resize_width:
        return resize_width, max(1, round(height * resize_width / width))
    if resize_height:
        return max(1, round(width * resize_height / height)), resize_height
    return width, height


class CaptureLoop:
    """Reads `source` on a thread and calls `sink` for each delivered frame.

    - ``pace``: sources that are not live (files, the test pattern) are delivered at ``fps``
      (or their own rate); off = as fast as they are read.
    - ``max_rate``: frames beyond this rate are skipped (counted in ``throttled``).
    - failures (SourceError or anything the source raises) close the source and reopen it after
      ``reconnect_delay`` doubling up to ``reconnect_max_delay``; a success resets the delay.
    - ``allocate(shape)`` gives the output buffer (the node passes memory it can publish from
      without another copy); default ``np.empty``.
    """

    def __init__(
        self,
        source: FrameSource,
        sink: Sink,
        *,
        pace: bool = True,
        fps: float = 0.0,
        max_rate: float = 0.0,
        resize: tuple[int, int] = (0, 0),
        rgb: bool = False,
        reconnect_delay: float = 0.5,
        reconnect_max_delay: float = 10.0,
        clock: Callable[[], int] = time.time_ns,
        allocate: Callable[[tuple[int, ...]], np.ndarray] | None = None,
        on_state: Callable[[str, str], None] | None = None,
        name: str = "capture",
    ) -> None:
        self.source = source
        self._sink = sink
        self.pace, self.fps, self.max_rate = pace, fps, max_rate
        self.resize = resize
        self.rgb = rgb
        self.reconnect_delay, self.reconnect_max_delay = reconnect_delay, reconnect_max_delay
        self._clock = clock
        self._allocate = allocate or (lambda shape: np.empty(shape, np.uint8))
        self._on_state = on_state
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        # statistics (read by diagnostics from another thread; plain ints/strs are safe to read)
        self.state = CONNECTING
        self.frames = 0  # delivered to the sink
        self.read_frames = 0  # read from the source
        self.drops = 0  # read but lost (sink error, corrupt frame)
        self.throttled = 0  # skipped on purpose by max_rate
        self.reconnects = 0  # recoveries after a failure
        self.attempts = 0  # failed opens/reads in a row (0 while streaming)
        self.last_error = ""
        self.width = self.height = 0
        self._times: deque[float] = deque(maxlen=31)
        self._read_buf: np.ndarray | None = None
        self._out_buf: np.ndarray | None = None

    # -- control ----------------------------------------------------------------------------------
    def start(self) -> CaptureLoop:
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self.source.interrupt()
        if threading.current_thread() is not self._thread and self._thread.is_alive():
            self._thread.join(timeout)
        if not self._thread.is_alive():
            self.source.close()
        self._set_state(STOPPED, "")

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def fps_measured(self) -> float:
        times = list(self._times)
        if len(times) < 2 or time.monotonic() - times[-1] > 2.0:
            return 0.0
        return (len(times) - 1) / max(1e-9, times[-1] - times[0])

    def stats(self) -> dict[str, object]:
        return {
            "state": self.state,
            "source": self.source.name,
            "fps": round(self.fps_measured(), 2),
            "frames": self.frames,
            "drops": self.drops,
            "throttled": self.throttled,
            "reconnects": self.reconnects,
            "attempts": self.attempts,
            "width": self.width,
            "height": self.height,
            "last_error": self.last_error,
        }

    # -- thread -----------------------------------------------------------------------------------
    def _set_state(self, state: str, detail: str) -> None:
        with self._lock:
            if state == self.state:
                return
            old, self.state = self.state, state
        if state == STREAMING:
            log.info(
                "%s: streaming %dx%d%s",
                self.source.name,
                self.source.width,
                self.source.height,
                f" ({detail})" if detail else "",
            )
        elif state == RECONNECTING:
            log.warning(
                "%s: %s; retrying with backoff (%.1f s, up to %.0f s)",
                self.source.name,
                detail,
                self.reconnect_delay,
                self.reconnect_max_delay,
            )
        elif state == FINISHED:
            log.info("%s: %s", self.source.name, detail or "end of stream")
        elif state == STOPPED and old != STOPPED:
            log.debug("%s: stopped", self.source.name)
        if self._on_state is not None:
            try:
                self._on_state(state, detail)
            except Exception as err:  # noqa: BLE001 - a listener must not kill capture
                log.debug("state listener: %s", err)

    def _fail(self, err: BaseException) -> float:
        """Record a failure, close the source, return the delay before the next try."""
        self.last_error = f"{err}" if isinstance(err, SourceError) else f"{type(err).__name__}: {err}"
        self.attempts += 1
        try:
            self.source.close()
        except Exception as close_err:  # noqa: BLE001
            log.debug("close after failure: %s", close_err)
        self._set_state(RECONNECTING, self.last_error)
        if self.attempts > 1:
            log.debug("%s: attempt %d failed: %s", self.source.name, self.attempts, self.last_error)
        return min(self.reconnect_max_delay, self.reconnect_delay * 2 ** (self.attempts - 1))

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.source.open()
            except Exception as err:  # noqa: BLE001 - every open failure is retried
                self._stop.wait(self._fail(err))
                continue
            if self.attempts:
                self.reconnects += 1
                detail = f"recovered after {self.attempts} failed attempt(s)"
            else:
                detail = f"{self.source.nominal_fps:g} fps" if self.source.nominal_fps else ""
            self.attempts = 0
            self._set_state(STREAMING, detail)
            try:
                self._stream()
            except EndOfStream as err:
                self._set_state(FINISHED, str(err))
                self.source.close()
                self._stop.wait()
                return
            except Exception as err:  # noqa: BLE001 - SourceError, cv2.error, OSError…
                if self._stop.is_set():
                    break
                self._stop.wait(self._fail(err))
        self.source.close()

    def _stream(self) -> None:
        import cv2

        src = self.source
        paced = self.pace and not src.live
        period = 1.0 / (self.fps or src.nominal_fps or 30.0) if paced else 0.0
        min_gap = 1.0 / self.max_rate if self.max_rate else 0.0
        native = self.rgb and src.native_rgb
        convert = self.rgb and not native
        next_due = time.monotonic()
        next_allowed = 0.0
        while not self._stop.is_set():
            if paced:
                now = time.monotonic()
                if next_due > now:
                    if self._stop.wait(next_due - now):
                        return
                elif now - next_due > 2 * period:
                    next_due = now  # fell behind (slow consumer): resume the schedule, no burst
                next_due += period
            out_w, out_h = output_size(src.width, src.height, *self.resize)
            direct = (out_w, out_h) == (src.width, src.height) and not convert
            out = self._buffer("_out_buf", (out_h, out_w, 3), self._allocate)
            frame = src.read(out if direct else self._buffer("_read_buf", src.shape))
            stamp = self._clock()
            self.read_frames += 1
            if output_size(frame.shape[1], frame.shape[0], *self.resize) != (out_w, out_h):
                # the source changed size in this read (stream resolution change, file replaced):
                # this frame already gets an output buffer of the new size, not a rescaled one
                out_w, out_h = output_size(frame.shape[1], frame.shape[0], *self.resize)
                out = self._buffer("_out_buf", (out_h, out_w, 3), self._allocate)
            if min_gap:
                now = time.monotonic()
                if now < next_allowed - 0.25 * min_gap:
                    self.throttled += 1
                    continue
                # keep the grid (no drift) unless more than one interval behind, then restart it
                next_allowed = (next_allowed if now - next_allowed < min_gap else now) + min_gap
            if frame.shape[:2] != (out_h, out_w) or convert or frame is not out:
                if frame.shape[:2] != (out_h, out_w):
                    shrink = out_w < frame.shape[1]
                    cv2.resize(
                        frame, (out_w, out_h), dst=out, interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
                    )
                    if convert:
                        cv2.cvtColor(out, cv2.COLOR_BGR2RGB, dst=out)
                elif convert:
                    cv2.cvtColor(frame, cv2.COLOR_BGR2RGB, dst=out)
                else:
                    np.copyto(out, frame)
            self.width, self.height = out_w, out_h
            try:
                self._sink(out, stamp, self.frames)
            except Exception as err:  # noqa: BLE001 - a failed publish loses one frame, not the node
                self.drops += 1
                if self.last_error != f"sink: {err}":
                    self.last_error = f"sink: {err}"
                    log.warning("%s: frame not delivered: %s", src.name, err)
                continue
            self.frames += 1
            self._times.append(time.monotonic())

    def _buffer(
        self, attr: str, shape: tuple[int, ...], alloc: Callable[[tuple[int, ...]], np.ndarray] | None = None
    ) -> np.ndarray:
        buf = getattr(self, attr)
        if buf is None or buf.shape != shape:
            buf = (alloc or (lambda s: np.empty(s, np.uint8)))(shape)
            setattr(self, attr, buf)
        return buf
