"""Push frames to an RTMP server through an encoder subprocess that is restarted when it fails.

``push(frame)`` never blocks: it stores the newest frame and counts the one it replaces if the
writer had not taken it yet (the encoder lags, or the server is away). A writer thread sends frames
at most at ``fps`` to the encoder's stdin; a monitor thread kills an encoder whose stdin write has
stalled (a TCP connection to a dead server) or that exited, and the writer starts a new one after an
exponential backoff, so the stream resumes by itself when the server comes back.
"""

from __future__ import annotations

import logging
import os
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from nano_vision_ros.core.streaming.encoder import EncoderSettings, build_command

log = logging.getLogger(__name__)

IDLE, STARTING, STREAMING, RECONNECTING, STOPPED = "idle", "starting", "streaming", "reconnecting", "stopped"


@dataclass
class StreamerOptions:
    url: str
    width: int = 0  # 0: the first frame's size
    height: int = 0
    fps: float = 15.0
    bitrate_kbps: int = 2000
    gop: int = 30
    preset: str = "ultrafast"
    encoder: str = "auto"  # auto | ffmpeg | gstreamer
    ffmpeg_codec: str = "auto"  # auto | libx264 | h264_nvmpi | h264_v4l2m2m | h264_nvenc | …
    backoff_min: float = 0.5
    backoff_max: float = 10.0
    stall_timeout: float = 5.0  # an encoder whose stdin accepts nothing for this long is restarted
    stable_after: float = 3.0  # an encoder alive this long resets the backoff
    max_repeat: float = 1.0  # no new frame: repeat the last one at the full rate this long…
    keepalive: float = 0.5  # …then every keepalive s (diagnostics say input_age_s)


class RtmpStreamer:
    """Frames in, RTMP out; self-healing. Thread-safe ``push``; ``stats()`` for diagnostics."""

    def __init__(
        self,
        options: StreamerOptions,
        command_factory: Callable[[EncoderSettings], tuple[str, list[str]]] | None = None,
    ) -> None:
        self.opt = options
        self._factory = command_factory or (
            lambda s: build_command(options.url, s, options.encoder, options.ffmpeg_codec)
        )
        self._cond = threading.Condition()
        self._frame: np.ndarray | None = None
        self._frame_new = False
        self._stop = threading.Event()
        self._proc: subprocess.Popen[bytes] | None = None
        self._proc_started = 0.0
        self._write_since = 0.0  # monotonic start of the current blocking write (0 = not writing)
        self._settings: EncoderSettings | None = None
        self._yuv: np.ndarray | None = None  # the last frame sent, as the encoder takes it (I420)
        self._yuv_of: np.ndarray | None = None  # the frame _yuv was made from (a repeat of it is not converted again)
        self.state = IDLE
        self.encoder_name = ""
        self.frames_in = 0
        self.frames_sent = 0
        self.dropped = 0  # frames replaced before the writer took them, or discarded while offline
        self.skipped = 0  # frames above the configured rate (not an error)
        self.errors = 0  # frames that could not be sent (bad frame)
        self._last_log = 0.0
        self._last_input = 0.0
        self._progress: tuple[float, int] | None = None  # (time, total_size) of the last ffmpeg report
        self.restarts = 0  # encoder starts after the first
        self._starts = 0
        self.last_error = ""
        self.bitrate_kbps = 0.0  # as the encoder reports it (ffmpeg -progress)
        self.bytes_out = 0
        self._sent_times: deque[float] = deque(maxlen=120)
        self._stderr_tail: deque[str] = deque(maxlen=20)
        self._backoff = options.backoff_min
        self._next_start = 0.0
        self._writer = threading.Thread(target=self._write_loop, name="rtmp-writer", daemon=True)
        self._monitor = threading.Thread(target=self._monitor_loop, name="rtmp-monitor", daemon=True)
        self._writer.start()
        self._monitor.start()

    # -- producer side ---------------------------------------------------------------------------
    def push(self, frame: np.ndarray) -> None:
        """Hand over a BGR (H, W, 3) uint8 frame; returns at once."""
        with self._cond:
            self.frames_in += 1
            if self._frame_new:
                self.dropped += 1
            self._frame = frame
            self._frame_new = True
            self._cond.notify()

    def stats(self) -> dict[str, object]:
        now = time.monotonic()
        recent = [t for t in tuple(self._sent_times) if now - t <= 2.0]  # tuple(): the sender thread appends meanwhile
        fps = (len(recent) - 1) / (recent[-1] - recent[0]) if len(recent) > 2 and recent[-1] > recent[0] else 0.0
        return {
            "state": self.state,
            "encoder": self.encoder_name,
            "url": self.opt.url,
            "frames_in": self.frames_in,
            "frames_sent": self.frames_sent,
            "fps_sent": round(fps, 2),
            "dropped": self.dropped,
            "skipped": self.skipped,
            "restarts": self.restarts,
            "frame_errors": self.errors,
            "bitrate_kbps": round(self.bitrate_kbps, 1),
            "bytes_out": self.bytes_out,
            "last_error": self.last_error,
            "input_age_s": round(now - self._last_input, 2) if self._last_input else -1.0,
        }

    # -- encoder process -------------------------------------------------------------------------
    def _settings_for(self, frame: np.ndarray) -> EncoderSettings:
        w = self.opt.width or frame.shape[1]
        h = self.opt.height or frame.shape[0]
        w, h = w - w % 2, h - h % 2  # yuv420p needs even sizes
        return EncoderSettings(
            width=w,
            height=h,
            fps=self.opt.fps,
            bitrate_kbps=self.opt.bitrate_kbps,
            gop=self.opt.gop,
            preset=self.opt.preset,
        )

    def _start_encoder(self, settings: EncoderSettings) -> bool:
        try:
            name, cmd = self._factory(settings)
        except (FileNotFoundError, ValueError) as err:
            self._fail(f"encoder unavailable: {err}")
            return False
        if name.startswith("ffmpeg"):
            cmd = cmd[:-1] + ["-progress", "pipe:2", "-stats_period", "1", cmd[-1]]
        try:
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                bufsize=0,
                start_new_session=True,
            )
        except OSError as err:
            self._fail(f"cannot start encoder: {err}")
            return False
        _grow_pipe(proc)
        self.encoder_name = name
        self._progress = None
        self.restarts += 1 if self._starts else 0
        self._starts += 1
        self._proc = proc
        self._proc_started = time.monotonic()
        self.state = STARTING
        threading.Thread(target=self._read_stderr, args=(proc,), name="rtmp-stderr", daemon=True).start()
        log.info("encoder %s started (pid %d) -> %s", name, proc.pid, self.opt.url)
        return True

    def _read_stderr(self, proc: subprocess.Popen[bytes]) -> None:
        """Progress and error lines of the encoder; ends quietly when the pipe is closed at a stop."""
        try:
            self._read_stderr_lines(proc)
        except (ValueError, OSError):  # _kill_encoder closed the pipe under a blocked readline
            pass

    def _read_stderr_lines(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stderr is not None
        for raw in iter(proc.stderr.readline, b""):
            line = raw.decode(errors="replace").strip()
            if "=" in line and " " not in line:
                key, _, value = line.partition("=")
                if key == "total_size" and value.isdigit():
                    # Bitrate from the output growth between two reports (ffmpeg's own figure is
                    # relative to the stream's timestamps, meaningless in the first seconds).
                    now, size = time.monotonic(), int(value)
                    if self._progress is not None and now > self._progress[0] and size >= self._progress[1]:
                        self.bitrate_kbps = (size - self._progress[1]) * 8 / 1000 / (now - self._progress[0])
                    self._progress = (now, size)
                    self.bytes_out = size
                continue
            if line:
                self._stderr_tail.append(line)

    def _kill_encoder(self, reason: str) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, 9)
            except ProcessLookupError:
                pass
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            pass
        for f in (proc.stdin, proc.stderr):
            try:
                if f is not None:
                    f.close()
            except OSError:
                pass
        if reason:
            self._fail(reason)

    def _fail(self, reason: str) -> None:
        tail = " | ".join(list(self._stderr_tail)[-3:])
        self.last_error = f"{reason}{': ' + tail if tail else ''}"[:500]
        self._stderr_tail.clear()
        if self._stop.is_set():
            return
        self.state = RECONNECTING
        self._next_start = time.monotonic() + self._backoff
        log.warning("stream %s: %s; retrying in %.1fs", self.opt.url, self.last_error, self._backoff)
        self._backoff = min(self._backoff * 2, self.opt.backoff_max)

    # -- threads ---------------------------------------------------------------------------------
    def _write_loop(self) -> None:
        period = 1.0 / self.opt.fps
        due = 0.0
        last_new = 0.0
        last_sent = 0.0
        last: np.ndarray | None = None
        while not self._stop.is_set():
            with self._cond:
                if not self._frame_new:
                    self._cond.wait(timeout=period)
                if self._stop.is_set():
                    break
                now = time.monotonic()
                if self._frame_new:
                    frame, self._frame_new, repeat = self._frame, False, False
                    assert frame is not None  # push() sets _frame_new only with a frame
                    last, last_new = frame, now  # a repeat shows the newest picture, sent or not
                    self._last_input = now
                    if now < due - 0.5 * period:
                        self.skipped += 1
                        continue
                elif (
                    last is not None
                    and now >= due + 0.5 * period
                    and (now - last_new < self.opt.max_repeat or now - last_sent >= self.opt.keepalive)
                ):
                    # Late frames: repeat the picture at the full rate for max_repeat s, then every
                    # keepalive s, so the encoder's wall-clock timestamps never jump (a jump would make
                    # it encode the whole gap in one burst) and viewers stay connected.
                    frame, repeat = last, True
                else:
                    continue
            due = max(due + period, now - period) if due else now + period
            last_sent = now
            try:
                self._send(frame, now, repeat)
            except Exception as err:  # noqa: BLE001 - a bad frame (or a bug) must not end the writer thread
                last = None  # and is not repeated
                self.errors += 1
                text = f"{type(err).__name__}: {err}"[:500]
                if text != self.last_error or time.monotonic() - self._last_log > 10.0:
                    self._last_log = time.monotonic()
                    log.warning("stream %s: frame not sent: %s", self.opt.url, text)
                self.last_error = text

    def _send(self, frame: np.ndarray, now: float, repeat: bool = False) -> None:
        proc = self._proc
        if proc is None or proc.poll() is not None:
            if proc is not None:
                self._kill_encoder(f"encoder exited with code {proc.returncode}")
            if now < self._next_start:
                self.dropped += 1
                return
            if self._settings is None:
                self._settings = self._settings_for(frame)
            if not self._start_encoder(self._settings):
                self.dropped += 1
                return
            proc = self._proc
        assert proc is not None and proc.stdin is not None
        s = self._settings
        assert s is not None
        if not (repeat and frame is self._yuv_of):  # a repeated picture is written as converted last time
            self._yuv_of = None
            self._to_i420(frame, s)
            self._yuv_of = frame
        assert self._yuv is not None
        view = self._yuv.data.cast("B")
        fd = proc.stdin.fileno()
        self._write_since = time.monotonic()
        try:
            while view:
                n = os.write(fd, view)
                view = view[n:]
        except (BrokenPipeError, OSError, ValueError) as err:
            self._write_since = 0.0
            self._wait_exit(proc)
            self._kill_encoder(f"encoder stopped ({type(err).__name__}; exit code {proc.returncode})")
            self.dropped += 1
            return
        self._write_since = 0.0
        self.frames_sent += 1
        self._sent_times.append(time.monotonic())

    def _to_i420(self, frame: np.ndarray, s: EncoderSettings) -> None:
        """`frame` (BGR) into ``self._yuv`` as the encoder takes it: its size, I420 (encoder.INPUT_PIX_FMT)."""
        import cv2

        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise ValueError(f"expected a BGR uint8 frame, got shape {frame.shape} dtype {frame.dtype}")
        if frame.shape[1] != s.width or frame.shape[0] != s.height:
            frame = cv2.resize(frame, (s.width, s.height), interpolation=cv2.INTER_AREA)
        if self._yuv is None or self._yuv.shape != (s.height * 3 // 2, s.width):
            self._yuv = np.empty((s.height * 3 // 2, s.width), np.uint8)
        cv2.cvtColor(frame, cv2.COLOR_BGR2YUV_I420, dst=self._yuv)

    @staticmethod
    def _wait_exit(proc: subprocess.Popen[bytes]) -> None:
        try:
            proc.wait(1.0)  # let it print why before the error tail is taken
        except subprocess.TimeoutExpired:
            pass

    def _monitor_loop(self) -> None:
        while not self._stop.wait(0.2):
            proc = self._proc
            if proc is None:
                continue
            now = time.monotonic()
            since = self._write_since
            if since and now - since > self.opt.stall_timeout:
                log.warning("encoder stdin stalled for %.1fs; restarting it", now - since)
                try:
                    os.killpg(proc.pid, 9)  # the writer's os.write then fails and it restarts the encoder
                except ProcessLookupError:
                    pass
                continue
            if proc.poll() is None and self.state == STARTING and now - self._proc_started >= 1.0 and self.frames_sent:
                self.state = STREAMING
            if (
                proc.poll() is None
                and now - self._proc_started >= self.opt.stable_after
                and self._backoff != self.opt.backoff_min
            ):
                self._backoff = self.opt.backoff_min
                log.info("stream %s resumed", self.opt.url)

    def close(self) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        proc = self._proc
        if proc is not None and proc.stdin is not None:
            try:
                proc.stdin.close()  # ffmpeg flushes and ends the RTMP stream cleanly
                proc.wait(2)
            except (OSError, subprocess.TimeoutExpired):
                pass
        self._kill_encoder("")
        self._writer.join(3)
        self._monitor.join(3)
        self.state = STOPPED

    def __enter__(self) -> RtmpStreamer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _grow_pipe(proc: subprocess.Popen[bytes]) -> None:
    """A 1 MiB stdin pipe (Linux): a 720p frame is written in 3 system calls instead of 40."""
    try:
        import fcntl

        assert proc.stdin is not None
        fcntl.fcntl(proc.stdin.fileno(), getattr(fcntl, "F_SETPIPE_SZ", 1031), 1 << 20)
    except (OSError, ImportError, AssertionError):
        pass


__all__ = ["EncoderSettings", "RtmpStreamer", "StreamerOptions"]
