"""Write one MP4 clip (H.264, ffmpeg subprocess) from timestamped JPEG frames at a constant rate.

Frames arrive with jitter and gaps; the writer resamples them to exactly ``fps``: output slot k
(at ``start + k/fps``) shows the newest frame captured at or before it. So a clip from ``start``
to ``end`` has ``round((end - start) * fps)`` frames and its duration is what was asked for.
The file is written under a temporary name and renamed only when ffmpeg finished cleanly.
"""
from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
from pathlib import Path

from nano_vision_ros.core.recording.ring import Frame

log = logging.getLogger(__name__)


class ClipError(RuntimeError):
    """The clip could not be written (ffmpeg missing or failed, disk full, folder not writable)."""


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


class ClipWriter:
    def __init__(self, path: Path, start: float, end: float, fps: float, codec: str = "libx264",
                 crf: int = 26, preset: str = "veryfast", ffmpeg: str | None = None) -> None:
        self.path = Path(path)
        self.tmp = self.path.with_name(f".{self.path.name}.part")
        self.start = start
        self.end = end
        self.fps = float(fps)
        self.frames_written = 0
        self._slot = 0
        self._cur: Frame | None = None
        exe = ffmpeg or shutil.which("ffmpeg")
        if exe is None:
            raise ClipError("ffmpeg is not installed (see requirements/streaming.apt)")
        gop = max(1, int(round(self.fps * 2)))
        enc = ["-c:v", codec]
        if codec == "libx264":
            enc += ["-preset", preset, "-crf", str(crf)]
        cmd = [exe, "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
               "-f", "image2pipe", "-c:v", "mjpeg", "-framerate", f"{self.fps:g}", "-i", "pipe:0",
               *enc, "-g", str(gop), "-pix_fmt", "yuv420p", "-vf", "scale=trunc(iw/2)*2:trunc(ih/2)*2",
               "-movflags", "+faststart", "-f", "mp4", str(self.tmp)]
        self._stderr_path = self.path.with_name(f".{self.path.name}.log")
        try:
            self._stderr = open(self._stderr_path, "wb")
            self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=self._stderr,
                                          start_new_session=True)
        except OSError as err:
            raise ClipError(f"cannot start ffmpeg for {self.path}: {err}") from err

    @property
    def slots(self) -> int:
        """Frames the finished clip will have."""
        return max(1, int(round((self.end - self.start) * self.fps)))

    def _slot_time(self, k: int) -> float:
        return self.start + k / self.fps

    def _emit(self, frame: Frame) -> None:
        assert self._proc.stdin is not None
        try:
            self._proc.stdin.write(frame.jpeg)
        except (BrokenPipeError, OSError) as err:
            raise ClipError(f"ffmpeg stopped while writing {self.path.name}: {self._error_text() or err}") from err
        self.frames_written += 1
        self._slot += 1

    def feed(self, frame: Frame) -> None:
        """Add the next frame (in time order); emits every slot that falls before it."""
        while self._slot < self.slots and self._slot_time(self._slot) < frame.t:
            self._emit(self._cur or frame)
        self._cur = frame

    def truncate(self) -> None:
        """End the clip just after the newest frame fed (shutdown, camera gone): no frozen tail."""
        if self._cur is not None:
            self.end = min(self.end, max(self._cur.t + 1.0 / self.fps, self._slot_time(self._slot)))

    @property
    def covered_until(self) -> float:
        return self._slot_time(self._slot)

    def finish(self) -> tuple[Path, int, str, int]:
        """Fill the remaining slots, close ffmpeg, rename; (path, size, sha256, frames)."""
        try:
            if self._cur is None:
                raise ClipError(f"no frame for clip {self.path.name}")
            while self._slot < self.slots:
                self._emit(self._cur)
            assert self._proc.stdin is not None
            try:
                self._proc.stdin.close()
            except (BrokenPipeError, OSError):
                pass
            try:
                code = self._proc.wait(120)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                raise ClipError(f"ffmpeg did not finish {self.path.name} within 120 s") from None
            if code != 0:
                raise ClipError(f"ffmpeg failed ({code}) writing {self.path.name}: {self._error_text()}")
            size = self.tmp.stat().st_size
            digest = sha256_file(self.tmp)
            os.replace(self.tmp, self.path)
            return self.path, size, digest, self.frames_written
        except BaseException:
            self.abort()
            raise
        finally:
            self._cleanup_log()

    def _error_text(self) -> str:
        try:
            self._stderr.flush()
            return self._stderr_path.read_text(errors="replace").strip()[-400:]
        except OSError:
            return ""

    def _cleanup_log(self) -> None:
        try:
            self._stderr.close()
            self._stderr_path.unlink(missing_ok=True)
        except OSError:
            pass

    def abort(self) -> None:
        """Stop ffmpeg and remove the partial file."""
        if self._proc.poll() is None:
            self._proc.kill()
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
        try:
            self.tmp.unlink(missing_ok=True)
        except OSError:
            pass
        self._cleanup_log()
