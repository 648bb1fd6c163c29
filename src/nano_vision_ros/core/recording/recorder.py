"""Event clips cut from one continuous H.264 stream: pre-event footage from the ring, the rest as it comes.

Frames are resampled to exactly ``fps`` (slot k at ``origin + k/fps`` shows the newest frame
captured at or before it; gaps up to ``max_gap`` seconds are filled by repeating) and encoded once
by the recorder's encoder (``core.recording.h264``) with a keyframe every ``keyframe_seconds``.
An event (``new`` or ``update``) at time t asks for footage from ``t - pre`` to ``t + post``; the
clip begins at the newest keyframe at or before ``t - pre`` (so up to one keyframe interval more
pre-roll than asked, never less) and ends at the first keyframe at or after its end, so the next
clip starts exactly where it ended. While a clip is open, any event whose window starts before
the clip's end extends that clip instead of opening another (overlapping events merge; the clip
lists every event_id). ``end`` only extends an open clip. A clip never asks for more than
``max_clip_seconds`` (it may run up to one keyframe interval longer); a longer event continues in
the next clip (no footage twice). An event that asks no footage (`core.events.model.asks_footage`:
an update after its end, or the events node's report on a clip or its upload) is ignored and
counted (``events_ignored``). Clips are written by stream copy on separate processes and
reported through ``on_clip``; failures (ffmpeg, full disk, unwritable folder) through ``on_error``
and the counters, never as exceptions into the caller.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import shutil
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nano_vision_ros.core.events.model import asks_footage
from nano_vision_ros.core.recording.clip import ClipError, ClipWriter
from nano_vision_ros.core.recording.h264 import EncoderError, H264Encoder
from nano_vision_ros.core.recording.retention import Retention
from nano_vision_ros.core.recording.ring import Frame, FrameRing

log = logging.getLogger(__name__)

_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")

MB = 1024 * 1024


@dataclass
class RecorderOptions:
    """The recorder's settings, in the recorder node's names and units (MiB, hours): the node fills
    it from its parameter model by name (`core.options.options_from`; test_options checks the two
    cannot drift)."""

    output_dir: str
    camera: str = "camera"
    pre_seconds: float = 20.0
    post_seconds: float = 40.0
    max_clip_seconds: float = 180.0
    fps: float = 15.0
    buffer_max_mb: float = 96.0  # memory bound of the ring buffer
    codec: str = "libx264"
    crf: int = 26
    preset: str = "ultrafast"
    keyframe_seconds: float = 1.0  # a clip starts up to this much before the asked pre-roll
    max_gap: float = 10.0  # frames missing longer than this are not filled (the stream restarts)
    max_total_mb: float = 5000.0  # disk quota of output_dir; 0 = none
    max_age_hours: float = 168.0  # clips older than this are deleted; 0 = keep
    min_free_mb: float = 200.0  # skip (and report) a clip when less disk is free
    frame_timeout: float = 5.0  # no frame for this long past a clip's end: finish it with what there is

    @property
    def min_free_bytes(self) -> int:
        return int(self.min_free_mb * MB)


@dataclass
class _OpenClip:
    writer: ClipWriter
    start: float  # asked for until the first frame is in, then the first frame's time
    end: float
    event_ids: list[str] = field(default_factory=list)
    floor: float = float("-inf")  # the previous clip's end: no footage twice
    started: bool = False
    last_t: float = 0.0  # the newest frame in the clip


def parse_time(value: Any) -> float | None:
    """Epoch seconds from a number (s or ms) or an ISO-8601 string; None if it is neither."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        v = float(value)
        return v / 1000.0 if v > 1e11 else v
    if isinstance(value, str):
        try:
            d = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))  # Python 3.10 (oldest) needs it
        except ValueError:
            return None
        if d.tzinfo is None:
            d = d.replace(tzinfo=dt.timezone.utc)
        return d.timestamp()
    return None


def event_time(event: dict[str, Any], now: float, window: float) -> float:
    """The event's own time (its update/end/start stamp) when plausible, else `now`."""
    state = str(event.get("state"))
    keys = {
        "end": ("end", "ended", "timestamp", "time", "stamp"),
        "update": ("updated", "timestamp", "time", "stamp"),
    }.get(state, ("start", "started", "timestamp", "time", "stamp"))
    for key in keys:
        t = parse_time(event.get(key))
        if t is not None and now - window <= t <= now + 5.0:
            return t
    return now


class Recorder:
    def __init__(
        self,
        opt: RecorderOptions,
        on_clip: Callable[[dict[str, Any]], None] | None = None,
        on_error: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.opt = opt
        self.on_clip = on_clip or (lambda info: None)
        self.on_error = on_error or (lambda text: None)
        self.clock = clock
        self.gop = max(1, round(opt.keyframe_seconds * opt.fps))
        self.ring = FrameRing(opt.pre_seconds + opt.keyframe_seconds + 2.0, int(opt.buffer_max_mb * MB))
        self.retention = Retention(Path(opt.output_dir), int(opt.max_total_mb * MB), opt.max_age_hours * 3600.0)
        self._lock = threading.RLock()  # clips and the ring (event thread, encoder reader thread)
        self._feed_lock = threading.Lock()  # the resampler and the encoder's stdin (frame thread, tick)
        self._clips: list[_OpenClip] = []  # open clips, oldest first; events merge into the newest
        self._last_end = 0.0
        self._finishers: list[threading.Thread] = []
        # resampler -> encoder
        self._encoder: H264Encoder | None = None
        self._encoder_retry = 0.0
        self._last_frame = 0.0  # monotonic time of the newest frame in
        self._origin = 0.0
        self._slot = 0
        self._cur: np.ndarray | None = None
        self._cur_t = 0.0
        self._slot_times: deque[float] = deque()  # slots written to the encoder, not yet out of it
        self.frames_in = 0
        self.frames_encoded = 0
        self.encoder_starts = 0
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
        except Exception:
            log.exception("on_error callback")

    # -- frames -> one encoder ---------------------------------------------------------------------
    def _slot_time(self, k: int) -> float:
        return self._origin + k / self.opt.fps

    def add_frame(self, t: float, image: np.ndarray) -> None:
        """The next camera frame (BGR uint8, in time order); encoded once, into as many slots as it covers."""
        self.frames_in += 1
        self._last_frame = time.monotonic()
        with self._feed_lock:
            if self._cur is not None and t < self._cur_t:
                return  # out of order (clock step back)
            restart = self._encoder is not None and (
                image.shape[:2] != (self._encoder.height, self._encoder.width)
                or t - self._slot_time(self._slot) > self.opt.max_gap
            )
            if restart:
                self._emit_pending()
                self._stop_encoder()
            if self._encoder is None:
                if not self._start_encoder(image, t):
                    return
            else:
                while self._slot_time(self._slot) < t:
                    self._emit(self._cur if self._cur is not None else image)
            self._cur, self._cur_t = image, t

    def _start_encoder(self, image: np.ndarray, t: float) -> bool:
        now = time.monotonic()
        if now < self._encoder_retry:
            return False
        h, w = image.shape[:2]
        try:
            if w % 2 or h % 2:
                raise EncoderError(f"frame size {w}x{h} is odd; H.264 4:2:0 needs even sizes")
            self._encoder = H264Encoder(
                w, h, self.opt.fps, self.gop, self._on_packet, self.opt.codec, self.opt.preset, self.opt.crf
            )
        except EncoderError as err:
            self._encoder_retry = now + 5.0
            self._error(f"recorder encoder: {err}")
            return False
        self.encoder_starts += 1
        self._origin, self._slot, self._cur = t, 0, None
        self._slot_times.clear()
        return True

    def _emit(self, image: np.ndarray) -> None:
        enc = self._encoder
        assert enc is not None
        self._slot_times.append(self._slot_time(self._slot))
        self._slot += 1
        try:
            enc.write(image)
        except EncoderError as err:
            self._error(f"recorder encoder: {err}")
            self._stop_encoder()
            return
        self.frames_encoded += 1

    def _emit_pending(self) -> None:
        """The newest frame into its slot now (it would wait for the next frame)."""
        if self._encoder is not None and self._cur is not None and self._slot_time(self._slot) <= self._cur_t:
            self._emit(self._cur)

    def _stop_encoder(self) -> None:
        enc, self._encoder = self._encoder, None
        self._cur = None
        if enc is not None:
            enc.close()  # every frame written is in the ring (and an open clip) after this

    def _on_packet(self, data: bytes, key: bool) -> None:
        with self._lock:  # with the ring: a clip starting from the ring on another thread gets each frame once
            # the slot time leaves the queue under the lock too: a frame is in the ring once it is counted out
            t = self._slot_times.popleft() if self._slot_times else self.clock()
            frame = Frame(t, data, key)
            self.ring.add(frame)
            for clip in list(self._clips):
                self._clip_frame(clip, frame)

    def _clip_frame(self, clip: _OpenClip, frame: Frame) -> None:
        """One new frame for a clip: begin it from the ring, add to it, or end it at a keyframe."""
        if not clip.started:
            if frame.t >= clip.start:
                self._start_clip(clip)
            return
        if frame.key and frame.t >= clip.end:
            self._close(clip, end=frame.t)
            return
        self._feed(clip, frame)

    def _start_clip(self, clip: _OpenClip) -> None:
        frames = self.ring.from_keyframe(clip.start, clip.floor)
        if not frames:
            return  # wait for a keyframe
        clip.started = True
        clip.start = frames[0].t
        clip.end = min(clip.end, clip.start + self.opt.max_clip_seconds)
        for f in frames:
            if f.key and f.t >= clip.end:
                self._close(clip, end=f.t)
                return
            if not self._feed(clip, f):
                return

    def _feed(self, clip: _OpenClip, frame: Frame) -> bool:
        try:
            clip.writer.feed(frame.data)
        except ClipError as err:
            self._fail(clip, str(err))
            return False
        clip.last_t = frame.t
        return True

    # -- events ------------------------------------------------------------------------------------
    def on_event(self, event: dict[str, Any], now: float | None = None) -> None:
        """An event's JSON (`Event.to_json`; tests give the few fields used) asks for footage around it."""
        now = self.clock() if now is None else now
        if not asks_footage(event.get("state", "new"), event.get("end"), event.get("reason")):
            self.events_ignored += 1
            return  # after its end, or a report on our own clip: no footage asked (and no feedback loop)
        self.events_seen += 1
        state = event.get("state", "new")
        eid = str(event.get("event_id", ""))
        t = event_time(event, now, self.opt.pre_seconds + self.opt.post_seconds)
        with self._lock:
            clip = self._clips[-1] if self._clips else None
            if clip is not None and t - self.opt.pre_seconds <= clip.end:
                limit = clip.start + self.opt.max_clip_seconds
                clip.end = min(max(clip.end, t + self.opt.post_seconds), limit)
                if eid and eid not in clip.event_ids:
                    clip.event_ids.append(eid)
                    self.events_merged += 1
                return
            if state == "end":
                return  # its clip is closed already; an end alone asks for no new footage
            self._open_clip(eid, t)

    def tick(self, now: float | None = None) -> None:
        """Camera gone: finish clips whose frames stopped coming after their end, stop an idle encoder.

        The encoder is stopped (it starts again, with a keyframe, at the next frame) so the last
        frame it holds comes out into the clip, and a camera that is away costs nothing.
        """
        now = self.clock() if now is None else now
        overdue = [c for c in self._clips if now > c.end + self.opt.frame_timeout]
        idle = self._encoder is not None and time.monotonic() - self._last_frame > self.opt.frame_timeout
        if not overdue and not idle:
            return
        with self._feed_lock:
            self._emit_pending()  # the last frame seen belongs in the clip
            self._stop_encoder()
        with self._lock:
            for clip in overdue:
                self._close(clip, truncate=True)

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
                self._error(
                    f"disk full: {free} bytes free in {self.opt.output_dir} (< min_free_mb {self.opt.min_free_mb:g} MiB); clip for event {eid} skipped"
                )
                return
        floor = self._clips[-1].end if self._clips else self._last_end
        start = max(t - self.opt.pre_seconds, floor)
        end = t + self.opt.post_seconds
        stamp = dt.datetime.fromtimestamp(start, dt.timezone.utc).strftime("%Y%m%dT%H%M%S")
        name = f"{_SAFE.sub('_', self.opt.camera)}_{stamp}_{_SAFE.sub('_', eid)[:40] or 'event'}.mp4"
        path = Path(self.opt.output_dir) / name
        try:
            writer = ClipWriter(path, self.opt.fps)
        except ClipError as err:
            self.clips_failed += 1
            self._error(str(err))
            return
        clip = _OpenClip(writer, start, min(end, start + self.opt.max_clip_seconds), [eid] if eid else [], floor=floor)
        self._clips.append(clip)
        newest = self.ring.newest
        if newest is not None and newest >= start:
            self._start_clip(clip)  # the asked start is in the ring already

    def _fail(self, clip: _OpenClip, text: str) -> None:
        if clip in self._clips:
            self._clips.remove(clip)
        clip.writer.abort()
        self._last_end = max(self._last_end, clip.end)
        self.clips_failed += 1
        self._error(text)

    def _close(self, clip: _OpenClip, end: float | None = None, truncate: bool = False) -> None:
        if clip not in self._clips:
            return
        self._clips.remove(clip)
        if end is not None:
            clip.end = end
        elif truncate:
            clip.end = min(clip.end, clip.last_t + 1.0 / self.opt.fps) if clip.started else clip.start
        self._last_end = max(self._last_end, clip.end)
        if not clip.started:
            clip.writer.abort()
            self.clips_failed += 1
            self._error(f"no frame for clip {clip.writer.path.name}")
            return
        before = self._finishers[-1] if self._finishers else None
        th = threading.Thread(target=self._finish, args=(clip, before), name="clip-finish", daemon=True)
        self._finishers = [f for f in self._finishers if f.is_alive()] + [th]
        th.start()

    def _finish(self, clip: _OpenClip, before: threading.Thread | None) -> None:
        try:
            path, size, digest, frames = clip.writer.finish()
        except (ClipError, OSError) as err:
            if before is not None:
                before.join()
            self.clips_failed += 1
            self._error(f"clip {clip.writer.path.name} failed: {err}")
            return
        if before is not None:
            before.join()  # clips are announced in the order they were recorded
        self.clips_written += 1
        self.last_clip = str(path)
        info = {
            "event_ids": clip.event_ids,
            "camera": self.opt.camera,
            "path": str(path),
            "name": path.name,
            "start": round(clip.start, 3),
            "end": round(clip.end, 3),
            "duration": round(frames / self.opt.fps, 3),
            "start_iso": _iso(clip.start),
            "end_iso": _iso(clip.end),
            "frames": frames,
            "fps": self.opt.fps,
            "size": size,
            "sha256": digest,
        }
        try:
            self.retention.enforce(keep={path})
        except OSError as err:
            self._error(f"retention: {err}")
        try:
            self.on_clip(info)
        except Exception:
            log.exception("on_clip callback")

    def flush(self, timeout: float = 60.0) -> None:
        """Stop the encoder (every frame in), close an open clip at its newest frame, wait for every clip."""
        with self._feed_lock:
            self._emit_pending()
            self._stop_encoder()
        with self._lock:
            for clip in list(self._clips):
                self._close(clip, truncate=True)
        for th in list(self._finishers):
            th.join(timeout)

    @property
    def recording(self) -> bool:
        return bool(self._clips)

    def stats(self) -> dict[str, object]:
        clip = self._clips[-1] if self._clips else None
        enc = self._encoder
        return {
            "recording": clip is not None,
            "open_clip_events": ",".join(clip.event_ids) if clip else "",
            "buffer_frames": len(self.ring),
            "buffer_bytes": self.ring.nbytes,
            "buffer_evicted_for_memory": self.ring.evicted_for_memory,
            "frames_in": self.frames_in,
            "frames_encoded": self.frames_encoded,
            "encoder_starts": self.encoder_starts,
            "encoder_bytes": enc.bytes_out if enc else 0,
            "keyframe_interval_frames": self.gop,
            "clips_written": self.clips_written,
            "clips_failed": self.clips_failed,
            "events_seen": self.events_seen,
            "events_merged": self.events_merged,
            "events_ignored": self.events_ignored,
            "disk_used_bytes": self.retention.used_bytes,
            "deleted_by_retention": self.retention.deleted,
            "output_dir_writable": self.writable,
            "last_clip": self.last_clip,
            "last_error": self.last_error,
        }


def _iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


__all__ = ["Recorder", "RecorderOptions", "event_time", "parse_time"]
