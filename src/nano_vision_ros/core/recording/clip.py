"""Write one clip by stream copy: H.264 access units in (from the ring, then live), fragmented MP4 out.

Nothing is decoded or encoded here: ffmpeg only wraps the frames the recorder's encoder made.
The MP4 is fragmented (an empty ``moov``, then a ``moof``+``mdat`` per keyframe), so a file cut
anywhere (still being written, half uploaded) plays up to its last whole fragment. The file is
written under a temporary name and renamed only when ffmpeg finished cleanly.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from pathlib import Path

from nano_vision_ros.core.hashing import sha256_file

log = logging.getLogger(__name__)

#: Fragmented MP4: playable while written or partly transferred (one fragment per keyframe).
FRAGMENTED = "+frag_keyframe+empty_moov+default_base_moof"


class ClipError(RuntimeError):
    """The clip could not be written (ffmpeg missing or failed, disk full, folder not writable)."""


class ClipWriter:
    def __init__(self, path: Path, fps: float, ffmpeg: str | None = None) -> None:
        self.path = Path(path)
        self.tmp = self.path.with_name(f".{self.path.name}.part")
        self.fps = float(fps)
        self.frames_written = 0
        exe = ffmpeg or shutil.which("ffmpeg")
        if exe is None:
            raise ClipError("ffmpeg is not installed (see requirements/streaming.apt)")
        cmd = [
            exe,
            "-hide_banner",
            "-nostdin",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "h264",
            "-framerate",
            f"{self.fps:g}",
            "-i",
            "pipe:0",
            "-c",
            "copy",
            "-movflags",
            FRAGMENTED,
            "-f",
            "mp4",
            str(self.tmp),
        ]
        self._stderr_path = self.path.with_name(f".{self.path.name}.log")
        try:
            self._stderr = open(self._stderr_path, "wb")  # noqa: SIM115 - lives as long as the ffmpeg process
            self._proc = subprocess.Popen(
                cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=self._stderr, start_new_session=True
            )
        except OSError as err:
            raise ClipError(f"cannot start ffmpeg for {self.path}: {err}") from err

    def feed(self, data: bytes) -> None:
        """Add the next access unit (the first one a keyframe)."""
        assert self._proc.stdin is not None
        try:
            self._proc.stdin.write(data)
        except (BrokenPipeError, OSError) as err:
            raise ClipError(f"ffmpeg stopped while writing {self.path.name}: {self._error_text() or err}") from err
        self.frames_written += 1

    def finish(self) -> tuple[Path, int, str, int]:
        """Close ffmpeg, rename; (path, size, sha256, frames)."""
        try:
            if self.frames_written == 0:
                raise ClipError(f"no frame for clip {self.path.name}")
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
