"""Periodic diagnostic_msgs/DiagnosticArray on /diagnostics, one status per node.

``BadFrames`` is the one place bad input frames are counted and logged (throttled); every
``Diagnostics`` reports the ``BadFrames`` its node holds (directly or as a worker's ``bad``)
without the node's ``collect`` doing anything.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.node import Node

OK, WARN, ERROR, STALE = DiagnosticStatus.OK, DiagnosticStatus.WARN, DiagnosticStatus.ERROR, DiagnosticStatus.STALE
#: a status level as collect() may give it: the message constant (a 1-byte bytes) or its int
Level = int | bytes

log = logging.getLogger(__name__)


class BadFrames:
    """Bad input frames: counted by kind, named in diagnostics, logged throttled.

    A misconfigured camera at 30 fps must not write 30 WARNING lines a second: the first bad
    frame is logged at WARNING, later ones only in one summary line per `period` seconds
    ("37 bad frames in the last 10 s (step: 37), last: frame 1234: step 10 < row of 2304 bytes").
    Thread-safe: workers record, the diagnostics timer reads and flushes.
    """

    def __init__(self, name: str = "frames", period: float = 10.0, logger: logging.Logger | None = None) -> None:
        self.name = name
        self.period = period
        self._log = logger or log
        self._lock = threading.Lock()
        self.total = 0
        self.by_kind: dict[str, int] = {}
        self.last = ""
        self._last_t: float | None = None
        self._logged_t: float | None = None
        self._window: dict[str, int] = {}

    def record(self, err: BaseException, frame: int | None = None) -> None:
        """Count one bad frame; `err` names the problem (an ImageError's ``kind`` is its cause)."""
        kind = str(getattr(err, "kind", "") or type(err).__name__)
        text = (f"frame {frame}: {err}" if frame is not None else str(err))[:300]
        now = time.monotonic()
        with self._lock:
            self.total += 1
            self.by_kind[kind] = self.by_kind.get(kind, 0) + 1
            self.last = text
            self._last_t = now
            self._window[kind] = self._window.get(kind, 0) + 1
            if self._logged_t is None:
                line: str | None = (
                    f"{self.name}: bad frame ({kind}) {text}; further bad frames are counted in "
                    f"diagnostics and summarised every {self.period:g} s"
                )
                self._window.clear()
                self._logged_t = now
            else:
                line = self._summary_locked(now)
        if line:
            self._log.warning(line)

    def flush(self) -> None:
        """Log the pending summary once `period` has passed (called by the diagnostics timer)."""
        with self._lock:
            line = self._summary_locked(time.monotonic())
        if line:
            self._log.warning(line)

    def _summary_locked(self, now: float) -> str | None:
        if not self._window or self._logged_t is None or now - self._logged_t < self.period:
            return None
        n = sum(self._window.values())
        kinds = ", ".join(f"{k}: {v}" for k, v in sorted(self._window.items()))
        line = f"{self.name}: {n} bad frame{'s' if n != 1 else ''} in the last {now - self._logged_t:.0f} s ({kinds}), last: {self.last}"
        self._window.clear()
        self._logged_t = now
        return line

    def recent(self, within: float | None = None) -> bool:
        """A bad frame arrived in the last `within` (default `period`) seconds."""
        t = self._last_t
        return t is not None and time.monotonic() - t < (self.period if within is None else within)

    def values(self) -> dict[str, object]:
        with self._lock:
            out: dict[str, object] = {"bad_frames": self.total}
            out.update({f"bad_frames_{k}": v for k, v in sorted(self.by_kind.items())})
            if self.last:
                out["last_bad_frame"] = self.last
            return out


class Diagnostics:
    """Calls `collect()` every `period` s and publishes its (level, message, values) as one status.

    `collect` returns ``(level, message, {key: value})``; values are turned into strings.
    """

    def __init__(
        self,
        node: Node,
        collect: Callable[[], tuple[Level, str, dict[str, object]]],
        period: float = 1.0,
        hardware_id: str | None = None,
    ) -> None:
        self._node = node
        self._collect = collect
        self._pub = node.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._name = f"{node.get_fully_qualified_name()}"
        self._hw = hardware_id or socket.gethostname()
        self._timer = node.create_timer(period, self.publish)

    def publish(self) -> None:
        try:
            level, message, values = self._collect()
        except Exception as err:  # noqa: BLE001 - a timer callback that raises would end the whole
            # process (every node of a composed container with it); report the fault instead
            log.warning("%s: collecting diagnostics failed: %s: %s", self._name, type(err).__name__, err)
            level, message, values = ERROR, f"diagnostics failed: {type(err).__name__}: {err}"[:200], {}
        level, message, values = self._add_bad_frames(level, message, dict(values))
        values.setdefault("pid", os.getpid())  # the metrics node reads CPU and memory of this process from /proc
        st = DiagnosticStatus(
            level=bytes([level]) if isinstance(level, int) else level,
            name=self._name,
            message=message,
            hardware_id=self._hw,
        )
        st.values = [KeyValue(key=str(k), value=_fmt(v)) for k, v in values.items()]
        arr = DiagnosticArray(status=[st])
        arr.header.stamp = self._node.get_clock().now().to_msg()
        self._pub.publish(arr)

    def _bad_frames(self) -> Iterator[BadFrames]:
        for v in list(vars(self._node).values()):
            bad = v if isinstance(v, BadFrames) else getattr(v, "bad", None)
            if isinstance(bad, BadFrames):
                yield bad

    def _add_bad_frames(
        self, level: Level, message: str, values: dict[str, object]
    ) -> tuple[Level, str, dict[str, object]]:
        """Bad-frame counts of every BadFrames the node holds; WARN while bad frames keep coming."""
        for i, bad in enumerate(self._bad_frames()):
            bad.flush()
            prefix = "" if i == 0 else f"{bad.name}_"
            values.update({prefix + k: v for k, v in bad.values().items()})
            if bad.recent():
                lv = level[0] if isinstance(level, (bytes, bytearray)) else int(level)
                if lv < WARN[0]:
                    level = WARN
                message = f"{message}; bad frames: {bad.last[:120]}"
        return level, message, values

    def destroy(self) -> None:
        self._node.destroy_timer(self._timer)
        self._node.destroy_publisher(self._pub)


def _fmt(v: object) -> str:
    if isinstance(v, float):
        return f"{v:.3f}"
    return str(v)
