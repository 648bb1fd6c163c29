"""Files, V4L2 devices and network streams through OpenCV (FFmpeg and V4L2 backends)."""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from nano_vision_ros.core.capture.base import EndOfStream, FrameSource, SourceError, redact
from nano_vision_ros.core.capture.rtsp import check_rtsp_auth
from nano_vision_ros.core.paths import resolve

if TYPE_CHECKING:
    import cv2

log = logging.getLogger(__name__)
# OpenCV reads FFmpeg demuxer options from this variable when a capture opens.
_FFMPEG_ENV = "OPENCV_FFMPEG_CAPTURE_OPTIONS"
_env_lock = threading.Lock()


_quiet_done = False


def quiet_backend_logs() -> None:
    """Silence OpenCV's warnings and FFmpeg's own stderr lines (one per failed reconnect attempt).

    The loop reports failures itself, once per state change; with NANO_VISION_LOG_LEVEL=DEBUG the
    libraries stay as talkative as they are. FFmpeg's level is set through the libavutil that
    OpenCV loaded, after OpenCV's own one-time FFmpeg set-up (which sets it too).
    """
    global _quiet_done
    if _quiet_done or os.environ.get("NANO_VISION_LOG_LEVEL", "").upper() == "DEBUG":
        return
    _quiet_done = True
    import ctypes

    import cv2

    try:
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
        cv2.VideoCapture("/nonexistent/nano-vision-ffmpeg-init", cv2.CAP_FFMPEG).release()
        with open("/proc/self/maps") as maps:
            lib = next(
                (ln.split()[-1] for ln in maps if "libavutil" in ln and ln.rstrip().endswith(tuple("0123456789"))), None
            )
        if lib:
            ctypes.CDLL(lib).av_log_set_level(8)  # AV_LOG_FATAL
    except Exception as err:  # noqa: BLE001 - cosmetic only
        log.debug("could not quiet FFmpeg/OpenCV logs: %s", err)


def ffmpeg_options(url: str, transport: str = "tcp", low_latency: bool = True) -> str:
    """``key;value|…`` options for OpenCV's FFmpeg backend: RTSP transport, small buffers."""
    opts: list[tuple[str, str]] = []
    if url.startswith(("rtsp://", "rtsps://")):
        opts.append(("rtsp_transport", transport))
    if low_latency:
        opts += [("fflags", "nobuffer"), ("flags", "low_delay"), ("probesize", "500000"), ("analyzeduration", "500000")]
    return "|".join(f"{k};{v}" for k, v in opts)


def _file_identity(path: Path) -> tuple[int, int, int, int]:
    st = os.stat(path)
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def parse_device(device: str) -> int | str:
    """'0' -> 0; '/dev/video2' stays a path."""
    text = device.strip()
    return int(text) if text.isdigit() else text


class OpenCVSource(FrameSource):
    """``kind`` is ``file``, ``url`` or ``v4l2``.

    Files: end of file loops or raises EndOfStream. At the loop point (and on a read error) the
    path is stat'ed: a file replaced on disk (another inode, or the same one rewritten or
    truncated: size or mtime changed) is reopened, so the new file plays; otherwise it seeks back
    to 0 on the open handle. Streams: a failed read is a SourceError (the loop reconnects). V4L2: asks for the pixel format, size and rate, keeps a
    one-frame driver buffer so frames are fresh.
    """

    def __init__(
        self,
        kind: str,
        target: str,
        *,
        width: int = 0,
        height: int = 0,
        fps: float = 0.0,
        pixel_format: str = "auto",
        loop: bool = True,
        transport: str = "tcp",
        low_latency: bool = True,
        open_timeout: float = 10.0,
        read_timeout: float = 5.0,
    ) -> None:
        super().__init__()
        if kind not in ("file", "url", "v4l2"):
            raise ValueError(f"OpenCVSource kind must be file, url or v4l2, not {kind!r}")
        self.kind, self.target = kind, target
        self.req_width, self.req_height, self.req_fps = width, height, fps
        self.pixel_format, self.loop = pixel_format, loop
        self.transport, self.low_latency = transport, low_latency
        self.open_timeout, self.read_timeout = open_timeout, read_timeout
        self.live = kind != "file"
        self.name = f"{kind} {redact(target)}"
        self._cap: cv2.VideoCapture | None = None
        self._file_id: tuple[int, int, int, int] | None = None  # (dev, inode, size, mtime_ns) at open

    def open(self) -> None:
        import cv2

        quiet_backend_logs()
        self.close()
        params = [
            cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
            int(self.open_timeout * 1000),
            cv2.CAP_PROP_READ_TIMEOUT_MSEC,
            int(self.read_timeout * 1000),
        ]
        if self.kind == "url" and self.low_latency:
            # one decoder thread: FFmpeg's frame threading holds back (threads - 1) frames, which
            # for a live camera is pure latency (docs/performance/capture.md)
            params += [cv2.CAP_PROP_N_THREADS, 1]
        if self.kind == "file":
            path = resolve(self.target)
            if not path.is_file():
                raise SourceError(f"file not found: {path}")
            if not os.access(path, os.R_OK):
                raise SourceError(f"file not readable: {path}")
            self._file_id = _file_identity(path)
            cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG, params)
        elif self.kind == "url":
            with _env_lock:  # the variable is read during open; keep opens from racing on it
                old = os.environ.get(_FFMPEG_ENV)
                os.environ[_FFMPEG_ENV] = ffmpeg_options(self.target, self.transport, self.low_latency)
                try:
                    cap = cv2.VideoCapture(self.target, cv2.CAP_FFMPEG, params)
                finally:
                    if old is None:
                        os.environ.pop(_FFMPEG_ENV, None)
                    else:
                        os.environ[_FFMPEG_ENV] = old
        else:
            dev = parse_device(self.target)
            if isinstance(dev, str) and not Path(dev).exists():
                raise SourceError(f"device not found: {dev}")
            cap = cv2.VideoCapture(dev, cv2.CAP_V4L2)
            if cap.isOpened():
                if self.pixel_format != "auto":
                    cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter.fourcc(*self.pixel_format))
                if self.req_width and self.req_height:
                    cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.req_width)
                    cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.req_height)
                if self.req_fps:
                    cap.set(cv2.CAP_PROP_FPS, self.req_fps)
                cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        if not cap.isOpened():
            cap.release()
            if self.kind == "url":
                check_rtsp_auth(self.target, min(3.0, self.open_timeout))  # a named error for a wrong password
            why = {
                "file": "cannot decode the file (not a video, or a codec FFmpeg lacks)",
                "url": "cannot open the stream (refused, unreachable, timed out or not a video)",
                "v4l2": "cannot open the device (missing, busy or not a capture device)",
            }[self.kind]
            raise SourceError(why)
        self.width = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))
        self.height = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        self.nominal_fps = fps if 0 < fps < 1000 else 0.0
        self._cap = cap
        if self.kind == "v4l2" and self.req_width and (self.width, self.height) != (self.req_width, self.req_height):
            log.warning(
                "%s: asked for %dx%d, device gives %dx%d",
                self.name,
                self.req_width,
                self.req_height,
                self.width,
                self.height,
            )

    def read(self, out: np.ndarray | None = None) -> np.ndarray:
        cap = self._cap
        if cap is None:
            raise SourceError("source is not open")
        ok, frame = cap.read(self._fit(out))
        if not ok or frame is None:
            if self.kind != "file":
                raise SourceError("read failed (stream ended, timed out or device lost)")
            if not self.loop:
                raise EndOfStream("end of file")
            changed = self._file_changed()
            import cv2

            if changed:
                log.info("%s: the file changed on disk (%s): reopening it", self.name, changed)
                self.open()  # raises SourceError (retried by the loop) while the new file is incomplete
            elif not cap.set(cv2.CAP_PROP_POS_FRAMES, 0):
                self.open()
            cap = self._cap
            assert cap is not None  # open() sets it or raises
            ok, frame = cap.read(self._fit(out))
            if not ok or frame is None:
                raise SourceError(
                    "no frame after reopening the changed file" if changed else "no frame after rewinding to the start"
                )
        if frame.ndim != 3 or frame.shape[2] != 3:
            import cv2

            frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR if frame.ndim == 2 else cv2.COLOR_BGRA2BGR)
        if frame.shape[:2] != (self.height, self.width):  # stream changed resolution mid-way
            self.height, self.width = frame.shape[:2]
        return frame

    def _file_changed(self) -> str:
        """Why the file at the path is no longer the one opened ('' = the same)."""
        if self.kind != "file" or self._file_id is None:
            return ""
        try:
            now = _file_identity(resolve(self.target))
        except OSError:
            return ""  # gone right now: keep the open handle; a later loop point checks again
        was = self._file_id
        if now[:2] != was[:2]:
            return "replaced by another file"
        if now[2] != was[2]:
            return f"size {was[2]} -> {now[2]} bytes"
        if now[3] != was[3]:
            return "rewritten (mtime changed)"
        return ""

    def _fit(self, out: np.ndarray | None) -> np.ndarray | None:
        return out if out is not None and out.shape == self.shape and out.dtype == np.uint8 else None

    def close(self) -> None:
        cap, self._cap = self._cap, None
        if cap is not None:
            cap.release()
