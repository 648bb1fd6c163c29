"""Event clips: pre-event frames from the ring, post-event frames as they come, one MP4 per event burst.

An event (``new`` or ``update``) at time t asks for footage from ``t - pre`` to ``t + post``. While a
clip is open, any event whose window starts before the clip's end extends that clip instead of
opening another (overlapping events merge; the clip lists every event_id). ``end`` only extends an
open clip. A clip never exceeds ``max_clip_seconds``; a longer event continues in the next clip,
which starts where the last one ended (no footage twice). Updates with reason ``clip`` or
``clip_status`` (the events node reporting on clips) are ignored. Finished clips are encoded on a separate
thread and reported through ``on_clip``; failures (ffmpeg, full disk, unwritable folder) through
``on_error`` and the counters, never as exceptions into the caller.
"""
from __future__ import annotations

import datetime as dt
import logging
import re
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from nano_vision_ros.core.recording.clip import ClipError, ClipWriter
from nano_vision_ros.core.recording.retention import Retention
from nano_vision_ros.core.recording.ring import Frame, FrameRing

log = logging.getLogger(__name__)

_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")
#: Event updates that report on clips (from the events node) rather than on what the camera sees.
IGNORED_REASONS = ("clip", "clip_status")


@dataclass
class RecorderOptions:
    output_dir: str
    camera: str = "camera"
    pre_seconds: float = 20.0
    post_seconds: float = 40.0
    max_clip_seconds: float = 180.0
    fps: float = 15.0
    buffer_max_bytes: int = 64 * 1024 * 1024
    codec: str = "libx264"
    crf: int = 26
    preset: str = "veryfast"
    max_total_bytes: int = 5 * 1024**3
    max_age_seconds: float = 7 * 86400.0
    min_free_bytes: int = 200 * 1024 * 1024
    frame_timeout: float = 5.0  # no frame for this long past a clip's end: finish it with what there is


@dataclass
class _OpenClip:
    writer: ClipWriter
    start: float
    end: float
    event_ids: list[str] = field(default_factory=list)


def parse_time(value: Any) -> float | None:
    """Epoch seconds from a number (s or ms) or an ISO-8601 string; None if it is neither."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        v = float(value)
        return v / 1000.0 if v > 1e11 else v
    if isinstance(value, str):
        try:
            d = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        if d.tzinfo is None:
            d = d.replace(tzinfo=dt.timezone.utc)
        return d.timestamp()
    return None


def event_time(event: dict[str, Any], now: float, window: float) -> float:
    """The event's own time (its update/end/start stamp) when plausible, else `now`."""
    state = event.get("state")
    keys = {"end": ("end", "ended", "timestamp", "time", "stamp"), "update": ("updated", "timestamp", "time", "stamp")}.get(
        state, ("start", "started", "timestamp", "time", "stamp"))
    for key in keys:
        t = parse_time(event.get(key))
        if t is not None and now - window <= t <= now + 5.0:
            return t
    return now


class Recorder:
    def __init__(self, opt: RecorderOptions, on_clip: Callable[[dict[str, Any]], None] | None = None,
                 on_error: Callable[[str], None] | None = None, clock: Callable[[], float] = time.time) -> None:
        self.opt = opt
        self.on_clip = on_clip or (lambda info: None)
        self.on_error = on_error or (lambda text: None)
        self.clock = clock
        self.ring = FrameRing(opt.pre_seconds + 2.0, opt.buffer_max_bytes)
        self.retention = Retention(Path(opt.output_dir), opt.max_total_bytes, opt.max_age_seconds)
        self._lock = threading.RLock()
        self._open: _OpenClip | None = None
        self._last_end = 0.0
        self._finishers: list[threading.Thread] = []
        self.clips_written = 0
        self.clips_failed = 0
        self.events_seen = 0
        self.events_merged = 0
        self.events_ignored = 0
        self.last_error = ""
        self.last_clip = ""
        self.writable = self.check_output_dir()

    # -- checks ------------------------------------------------------------------------------------
    def check_output_dir(self) -> bool:
        """Create the folder and write a probe file; reports and returns False when it cannot."""
        d = Path(self.opt.output_dir)
        try:
            d.mkdir(parents=True, exist_ok=True)
            probe = d / ".write_probe"
            probe.write_bytes(b"ok")
            probe.unlink()
            return True
        except OSError as err:
            self._error(f"output_dir {d} is not writable: {err.strerror or err}")
            return False

    def _error(self, text: str) -> None:
        self.last_error = text
        log.error("%s", text)
        try:
            self.on_error(text)
        except Exception:  # noqa: BLE001 - reporting must not break recording
            log.exception("on_error callback")

    # -- input -------------------------------------------------------------------------------------
    def add_frame(self, t: float, jpeg: bytes) -> None:
        frame = Frame(t, jpeg)
        self.ring.add(frame)
        with self._lock:
            clip = self._open
            if clip is None:
                return
            if frame.t < clip.start:
                return
            try:
                clip.writer.feed(frame)
            except ClipError as err:
                self._fail_open(str(err))
                return
            if frame.t >= clip.end:
                self._close_open()

    def on_event(self, event: dict[str, Any], now: float | None = None) -> None:
        now = self.clock() if now is None else now
        if event.get("reason") in IGNORED_REASONS:
            self.events_ignored += 1
            return  # the events node telling about our own clip: no footage asked (and no feedback loop)
        self.events_seen += 1
        state = event.get("state", "new")
        eid = str(event.get("event_id", ""))
        t = event_time(event, now, self.opt.pre_seconds + self.opt.post_seconds)
        with self._lock:
            clip = self._open
            if clip is not None and t - self.opt.pre_seconds <= clip.end:
                new_end = min(max(clip.end, t + self.opt.post_seconds), clip.start + self.opt.max_clip_seconds)
                clip.end = clip.writer.end = new_end
                if eid and eid not in clip.event_ids:
                    clip.event_ids.append(eid)
                    self.events_merged += 1
                return
            if state == "end":
                return  # its clip is closed already; an end alone asks for no new footage
            self._open_clip(eid, t)

    def tick(self, now: float | None = None) -> None:
        """Finish an open clip whose frames stopped coming (camera gone) after its end."""
        now = self.clock() if now is None else now
        with self._lock:
            clip = self._open
            if clip is not None and now > clip.end + self.opt.frame_timeout:
                self._close_open(truncate=True)

    # -- clips -------------------------------------------------------------------------------------
    def _open_clip(self, eid: str, t: float) -> None:
        if not self.writable and not self.check_output_dir():
            self.clips_failed += 1
            return
        self.writable = True
        try:
            free = shutil.disk_usage(self.opt.output_dir).free
        except OSError as err:
            free = 0
            self._error(f"cannot read free space of {self.opt.output_dir}: {err}")
        if free < self.opt.min_free_bytes:
            self.retention.enforce(extra_needed=self.opt.min_free_bytes - free)
            free = shutil.disk_usage(self.opt.output_dir).free
            if free < self.opt.min_free_bytes:
                self.clips_failed += 1
                self._error(f"disk full: {free} bytes free in {self.opt.output_dir} (< min_free_bytes {self.opt.min_free_bytes}); clip for event {eid} skipped")
                return
        start = max(t - self.opt.pre_seconds, self._last_end)
        oldest = self.ring.oldest
        if oldest is not None:
            start = max(start, oldest)
        end = min(t + self.opt.post_seconds, start + self.opt.max_clip_seconds)
        stamp = dt.datetime.fromtimestamp(start, dt.timezone.utc).strftime("%Y%m%dT%H%M%S")
        name = f"{_SAFE.sub('_', self.opt.camera)}_{stamp}_{_SAFE.sub('_', eid)[:40] or 'event'}.mp4"
        path = Path(self.opt.output_dir) / name
        try:
            writer = ClipWriter(path, start, end, self.opt.fps, self.opt.codec, self.opt.crf, self.opt.preset)
        except ClipError as err:
            self.clips_failed += 1
            self._error(str(err))
            return
        self._open = _OpenClip(writer, start, end, [eid] if eid else [])
        try:
            for frame in self.ring.since(start):
                writer.feed(frame)
        except ClipError as err:
            self._fail_open(str(err))

    def _fail_open(self, text: str) -> None:
        clip, self._open = self._open, None
        if clip is not None:
            clip.writer.abort()
            self._last_end = clip.end
        self.clips_failed += 1
        self._error(text)

    def _close_open(self, truncate: bool = False) -> None:
        clip, self._open = self._open, None
        if clip is None:
            return
        if truncate:
            clip.writer.truncate()
            clip.end = clip.writer.end
        self._last_end = clip.end
        th = threading.Thread(target=self._finish, args=(clip,), name="clip-finish", daemon=True)
        self._finishers = [f for f in self._finishers if f.is_alive()] + [th]
        th.start()

    def _finish(self, clip: _OpenClip) -> None:
        try:
            path, size, digest, frames = clip.writer.finish()
        except (ClipError, OSError) as err:
            self.clips_failed += 1
            self._error(f"clip {clip.writer.path.name} failed: {err}")
            return
        self.clips_written += 1
        self.last_clip = str(path)
        info = {
            "event_ids": clip.event_ids, "camera": self.opt.camera, "path": str(path), "name": path.name,
            "start": round(clip.start, 3), "end": round(clip.end, 3), "duration": round(frames / self.opt.fps, 3),
            "start_iso": _iso(clip.start), "end_iso": _iso(clip.end),
            "frames": frames, "fps": self.opt.fps, "size": size, "sha256": digest,
        }
        try:
            self.retention.enforce(keep={path})
        except OSError as err:
            self._error(f"retention: {err}")
        try:
            self.on_clip(info)
        except Exception:  # noqa: BLE001
            log.exception("on_clip callback")

    def flush(self, timeout: float = 60.0) -> None:
        """Close an open clip now (ending at its newest frame) and wait for every clip being encoded."""
        with self._lock:
            if self._open is not None:
                self._close_open(truncate=True)
        for th in list(self._finishers):
            th.join(timeout)

    @property
    def recording(self) -> bool:
        return self._open is not None

    def stats(self) -> dict[str, object]:
        clip = self._open
        return {
            "recording": clip is not None, "open_clip_events": ",".join(clip.event_ids) if clip else "",
            "buffer_frames": len(self.ring), "buffer_bytes": self.ring.nbytes,
            "buffer_evicted_for_memory": self.ring.evicted_for_memory,
            "clips_written": self.clips_written, "clips_failed": self.clips_failed,
            "events_seen": self.events_seen, "events_merged": self.events_merged, "events_ignored": self.events_ignored,
            "disk_used_bytes": self.retention.used_bytes, "deleted_by_retention": self.retention.deleted,
            "output_dir_writable": self.writable, "last_clip": self.last_clip, "last_error": self.last_error,
        }


def _iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


__all__ = ["Recorder", "RecorderOptions", "parse_time", "event_time"]
