"""GStreamer sources as a ``gst-launch-1.0`` subprocess writing raw BGR frames to a pipe.

pip's OpenCV has no GStreamer, and JetPack's has it only sometimes, so the project never relies on
``cv2.CAP_GSTREAMER``: the pipeline runs in ``gst-launch-1.0 -v``, ends in
``videoconvert ! capsfilter name=nvout caps=video/x-raw,format=BGR[,width,height] ! fdsink`` on a
pipe of our own, and the negotiated caps printed by ``-v`` tell the frame size. On Jetson the
builders use the hardware decoder (``nvv4l2decoder`` + ``nvvidconv``) when ``gst-inspect-1.0``
finds it, and ``decodebin`` / ``avdec_h264`` elsewhere.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import select
import shlex
import shutil
import subprocess
import threading
import time
from collections import deque
from functools import lru_cache

import numpy as np

from nano_vision_ros.core.capture.base import EndOfStream, FrameSource, SourceError, redact
from nano_vision_ros.core.capture.rtsp import AuthenticationError
from nano_vision_ros.core.errors import RuntimeMissingError

log = logging.getLogger(__name__)

GST_LAUNCH = "gst-launch-1.0"
GST_INSPECT = "gst-inspect-1.0"
_CAPS_MARK = "nvout.GstPad:src: caps = video/x-raw"
_FIELD_RE = {k: re.compile(rf"\b{k}=\((?:int|fraction|string)\)([\w/]+)") for k in ("width", "height", "framerate")}
_F_SETPIPE_SZ = 1031


def gst_available() -> bool:
    return shutil.which(GST_LAUNCH) is not None


@lru_cache(maxsize=32)
def has_element(name: str) -> bool:
    """Whether the GStreamer element `name` is installed (``gst-inspect-1.0 --exists``)."""
    if shutil.which(GST_INSPECT) is None:
        return False
    try:
        return (
            subprocess.run([GST_INSPECT, "--exists", name], capture_output=True, timeout=30, check=False).returncode
            == 0
        )
    except (OSError, subprocess.TimeoutExpired):
        return False


def hardware_decoder() -> bool:
    """Jetson's V4L2 hardware decoder and its converter are installed."""
    return has_element("nvv4l2decoder") and has_element("nvvidconv")


def _caps(width: int, height: int, fmt: str = "BGR") -> str:
    caps = f"video/x-raw,format={fmt}"
    if width and height:
        caps += f",width={width},height={height}"
    return caps


def sink_tail(width: int = 0, height: int = 0) -> str:
    """What every pipeline ends with (before ``fdsink``): convert and, if asked, scale to BGR WxH."""
    scale = "videoscale ! " if width and height else ""
    return f"videoconvert ! {scale}capsfilter name=nvout caps={_caps(width, height)}"


def _decode(hw: bool) -> str:
    """Decoder part after a demuxed/parsed source: Jetson hardware or software."""
    if hw:
        return "parsebin ! nvv4l2decoder ! nvvidconv ! video/x-raw,format=BGRx"
    return "decodebin"


def file_pipeline(path: str, hw: bool | None = None) -> str:
    hw = hardware_decoder() if hw is None else hw
    return f"filesrc location={shlex.quote(path)} ! {_decode(hw)}"


def url_pipeline(url: str, transport: str = "tcp", latency_ms: int = 0, hw: bool | None = None) -> str:
    """RTSP with a small jitter buffer and the chosen transport; other URLs via urisourcebin."""
    hw = hardware_decoder() if hw is None else hw
    if url.startswith(("rtsp://", "rtsps://")):
        src = (
            f"rtspsrc location={shlex.quote(url)} latency={int(latency_ms)} protocols={transport} drop-on-latency=true"
        )
        return f"{src} ! {_decode(hw)}"
    if hw:
        return f"urisourcebin uri={shlex.quote(url)} ! {_decode(True)}"
    return f"uridecodebin uri={shlex.quote(url)}"


def csi_pipeline(
    sensor_id: int = 0,
    width: int = 1920,
    height: int = 1080,
    fps: float = 30.0,
    flip_method: int = 0,
    out_width: int = 0,
    out_height: int = 0,
) -> str:
    """Jetson CSI camera (``nvarguscamerasrc``): NV12 in NVMM at the sensor mode, converted (and
    flipped, scaled) by ``nvvidconv`` to BGRx, then to BGR."""
    fr = _fraction(fps or 30.0)
    ow, oh = (out_width, out_height) if out_width and out_height else (width, height)
    return (
        f"nvarguscamerasrc sensor-id={int(sensor_id)} ! "
        f"video/x-raw(memory:NVMM),width={int(width)},height={int(height)},framerate={fr},format=NV12 ! "
        f"nvvidconv flip-method={int(flip_method)} ! video/x-raw,width={int(ow)},height={int(oh)},format=BGRx"
    )


def parse_caps(line: str) -> tuple[int, int, float] | None:
    """(width, height, fps) from gst-launch -v's line for the output capsfilter, else None."""
    if _CAPS_MARK not in line:
        return None
    found = {k: r.search(line) for k, r in _FIELD_RE.items()}
    if not found["width"] or not found["height"]:
        return None
    fps = 0.0
    if found["framerate"]:
        num, _, den = found["framerate"].group(1).partition("/")
        fps = int(num) / int(den) if den.isdigit() and int(den) else 0.0
    return int(found["width"].group(1)), int(found["height"].group(1)), fps


def _fraction(fps: float) -> str:
    from fractions import Fraction

    ntsc = round(fps * 1.001)
    if abs(fps - round(fps)) > 1e-6 and abs(fps * 1.001 - ntsc) < 0.005:
        return f"{ntsc * 1000}/1001"  # 29.97 -> 30000/1001
    f = Fraction(fps).limit_denominator(1001)
    return f"{f.numerator}/{f.denominator}"


def full_command(pipeline: str, fd: int, width: int = 0, height: int = 0) -> list[str]:
    """The gst-launch argv for `pipeline` + BGR tail + ``fdsink fd=<fd>``."""
    return [
        GST_LAUNCH,
        "-v",
        "-e",
        *shlex.split(pipeline),
        "!",
        *shlex.split(sink_tail(width, height)),
        "!",
        "fdsink",
        f"fd={fd}",
        "sync=false",
    ]


class GstSubprocessSource(FrameSource):
    """Frames from ``gst-launch-1.0`` on a pipe; the frame size comes from the negotiated caps.

    ``finite``: the pipeline ends by itself (a file); its end is then the end of stream (with
    ``loop`` the pipeline is started again) rather than a failure.
    """

    def __init__(
        self,
        pipeline: str,
        width: int = 0,
        height: int = 0,
        fps: float = 0.0,
        open_timeout: float = 10.0,
        read_timeout: float = 5.0,
        finite: bool = False,
        loop: bool = True,
        name: str | None = None,
        path: str | None = None,
    ) -> None:
        super().__init__()
        self.path = path  # a file the pipeline reads: checked before starting (gst's own error says little)
        self.pipeline = pipeline
        self.req_width, self.req_height = width, height
        self.nominal_fps = fps
        self.open_timeout, self.read_timeout = open_timeout, read_timeout
        self.finite, self.loop = finite, loop
        self.live = not finite
        self.name = name or f"gstreamer {redact(pipeline)[:120]}"
        self._proc: subprocess.Popen[bytes] | None = None
        self._rfd = -1
        self._stride = 0
        self._raw: np.ndarray | None = None
        self._lines: deque[str] = deque(maxlen=40)
        self._caps_seen = threading.Event()
        self._caps: tuple[int, int, float] | None = None
        self._resized: tuple[int, int, float] | None = None  # new caps seen after the first
        self._reader: threading.Thread | None = None

    # -- process management -------------------------------------------------------------------
    def open(self) -> None:
        if not gst_available():
            raise RuntimeMissingError(f"{GST_LAUNCH} not found: install GStreamer (gstreamer1.0-tools and plugins)")
        self.close()
        if self.path is not None and not os.path.isfile(self.path):
            raise SourceError(f"file not found: {self.path}")
        rfd, wfd = os.pipe()
        try:
            fcntl.fcntl(wfd, _F_SETPIPE_SZ, 1 << 20)  # fewer wake-ups for big frames
        except OSError:
            pass
        cmd = full_command(self.pipeline, wfd, self.req_width, self.req_height)
        self._lines.clear()
        self._caps_seen.clear()
        self._caps = None
        self._resized = None
        try:
            self._proc = subprocess.Popen(
                cmd,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                pass_fds=(wfd,),
                start_new_session=True,
            )
        except OSError as err:
            os.close(rfd)
            os.close(wfd)
            raise SourceError(f"cannot start {GST_LAUNCH}: {err}") from err
        os.close(wfd)
        self._rfd = rfd
        self._reader = threading.Thread(
            target=self._read_messages, args=(self._proc,), name="gst-messages", daemon=True
        )
        self._reader.start()
        deadline = time.monotonic() + self.open_timeout
        while not self._caps_seen.wait(0.05):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                why = self._error_text() or (
                    "timed out waiting for caps"
                    if self._proc.poll() is None
                    else f"exited with code {self._proc.returncode}"
                )
                self.close()
                if "rtspsrc" in self.pipeline and "Unauthorized" in why:
                    raise AuthenticationError(
                        "RTSP authentication failed (401 Unauthorized): wrong user or password "
                        "(or none) in the rtspsrc location"
                    )
                raise SourceError(f"gstreamer pipeline did not start: {why}")
        caps = self._caps
        assert caps is not None  # the reader thread sets it before it sets _caps_seen
        fmt_w, fmt_h, fps = caps
        self.width, self.height = fmt_w, fmt_h
        if fps and not self.nominal_fps:
            self.nominal_fps = fps
        self._stride = (self.width * 3 + 3) & ~3  # GStreamer pads BGR rows to 4 bytes
        self._raw = np.empty((self.height, self._stride), np.uint8) if self._stride != self.width * 3 else None

    def _read_messages(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.decode(errors="replace").rstrip()
            caps = parse_caps(line)
            if caps:
                if not self._caps_seen.is_set():
                    self._caps = caps
                    self._caps_seen.set()
                elif self._caps is not None and caps[:2] != self._caps[:2]:
                    self._resized = caps  # the stream changed resolution: read() restarts at the new size
                continue
            if "deep-notify" in line or "GstPad:" in line:
                continue
            self._lines.append(line)

    def _error_text(self) -> str:
        errs = [
            ln
            for ln in self._lines
            if ln.startswith(("ERROR", "WARNING: erroneous", "Additional debug info"))
            or "ERROR" in ln
            or "erroneous pipeline" in ln
        ]
        return " | ".join(errs[-3:])[:500]

    def interrupt(self) -> None:
        proc = self._proc
        if proc is not None and proc.poll() is None:
            try:
                os.killpg(proc.pid, 15)
            except (ProcessLookupError, PermissionError):
                pass

    def close(self) -> None:
        proc, self._proc = self._proc, None
        if self._rfd >= 0:
            os.close(self._rfd)
            self._rfd = -1
        if proc is not None:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, 15)
                    proc.wait(3)
                except (ProcessLookupError, PermissionError):
                    pass
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, 9)
                    proc.wait(3)
            if proc.stdout is not None:
                proc.stdout.close()
        if self._reader is not None:
            self._reader.join(2)
            self._reader = None

    # -- frames ---------------------------------------------------------------------------------
    def read(self, out: np.ndarray | None = None) -> np.ndarray:
        for _ in range(3):
            try:
                return self._read_once(out)
            except _Restarted:
                continue
        raise SourceError("pipeline ends without frames")

    def _read_once(self, out: np.ndarray | None) -> np.ndarray:
        if self._rfd < 0:
            raise SourceError("source is not open")
        if out is None or out.shape != self.shape or out.dtype != np.uint8 or not out.flags.c_contiguous:
            out = np.empty(self.shape, np.uint8)
        target = out if self._raw is None else self._raw
        view = target.data.cast("B")
        got, total = 0, view.nbytes
        deadline = time.monotonic() + self.read_timeout
        while got < total:
            ready, _, _ = select.select([self._rfd], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                raise SourceError(f"no frame for {self.read_timeout:g} s")
            n = os.readv(self._rfd, [view[got:]])
            if n == 0:
                self._end_of_pipe(got)
            got += n
        if self._resized is not None:
            # frames of the new size are on the pipe, read as if of the old one: drop this frame
            # and start the pipeline again, which reads the new size off its caps
            new = self._resized
            log.info(
                "%s: resolution changed %dx%d -> %dx%d: restarting the pipeline",
                self.name,
                self.width,
                self.height,
                new[0],
                new[1],
            )
            self.open()
            raise _Restarted
        if self._raw is not None:
            np.copyto(out, self._raw[:, : self.width * 3].reshape(self.shape))
        return out

    def _end_of_pipe(self, got: int) -> None:
        proc = self._proc
        code = proc.wait(3) if proc is not None else None
        if self.finite and code == 0 and got == 0:
            if self.loop:
                self.open()  # start the file again; raises SourceError if that fails
                raise _Restarted
            raise EndOfStream("end of stream")
        why = self._error_text() or f"{GST_LAUNCH} exited with code {code}"
        raise SourceError(f"stream ended: {why}")


class _Restarted(Exception):
    """Internal: a looping finite pipeline was restarted; read again."""
