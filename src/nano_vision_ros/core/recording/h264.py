"""The recorder's one H.264 encoder: BGR frames in, access units out (stdout).

Frames go to ffmpeg's stdin as I420 (yuv420p), converted here by OpenCV: half the bytes of BGR
through the pipe, and ffmpeg's own bgr24 -> yuv420p conversion (swscale, the larger cost) is not
run; measured in docs/performance/site_cost.md.

Every frame is encoded once, continuously, into an Annex-B stream with an access unit delimiter
before each frame and SPS/PPS before each keyframe, so the stream splits into frames without a
parser and every group of pictures decodes on its own. Keyframes come every ``gop`` frames
exactly (no scene-cut keyframes), so a clip's start is known to within ``gop / fps`` seconds.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import threading
from collections.abc import Callable

import cv2
import numpy as np

log = logging.getLogger(__name__)

AUD = b"\x00\x00\x00\x01\x09"
_SLICE_IDR, _SLICE = 5, 1


class EncoderError(RuntimeError):
    """ffmpeg is missing, would not start, or stopped taking frames."""


def split_access_units(buf: bytearray) -> list[bytes]:
    """Cut the complete access units (each starts with an AUD) off the front of `buf`."""
    out: list[bytes] = []
    start = buf.find(AUD)
    if start < 0:
        return out
    while True:
        nxt = buf.find(AUD, start + len(AUD))
        if nxt < 0:
            break
        out.append(bytes(buf[start:nxt]))
        start = nxt
    del buf[:start]
    return out


def is_keyframe(au: bytes) -> bool:
    """True when the access unit holds an IDR slice (NAL type 5)."""
    i = au.find(b"\x00\x00\x01")
    while 0 <= i < len(au) - 3:
        kind = au[i + 3] & 0x1F
        if kind == _SLICE_IDR:
            return True
        if kind == _SLICE:
            return False
        i = au.find(b"\x00\x00\x01", i + 3)
    return False


def encoder_command(
    width: int,
    height: int,
    fps: float,
    gop: int,
    codec: str = "libx264",
    preset: str = "ultrafast",
    crf: int = 26,
    ffmpeg: str | None = None,
) -> list[str]:
    exe = ffmpeg or shutil.which("ffmpeg")
    if exe is None:
        raise EncoderError("ffmpeg is not installed (see requirements/streaming.apt)")
    cmd = [
        exe,
        "-hide_banner",
        "-nostdin",
        "-loglevel",
        "error",
        "-f",
        "rawvideo",
        "-pix_fmt",
        "yuv420p",
        "-s",
        f"{width}x{height}",
        "-framerate",
        f"{fps:g}",
        "-i",
        "pipe:0",
        "-an",
        "-fps_mode",
        "passthrough",
        "-pix_fmt",
        "yuv420p",
        "-c:v",
        codec,
    ]
    if codec == "libx264":
        # zerolatency: each frame comes out as soon as it went in (no lookahead, no frame threads)
        cmd += [
            "-preset",
            preset,
            "-tune",
            "zerolatency",
            "-crf",
            str(crf),
            "-x264-params",
            f"keyint={gop}:min-keyint={gop}:scenecut=0:aud=1:repeat-headers=1",
        ]
    else:  # a hardware encoder: delimiters inserted by a bitstream filter
        cmd += ["-bsf:v", "dump_extra=freq=keyframe,h264_metadata=aud=insert"]
    cmd += ["-g", str(gop), "-bf", "0", "-flush_packets", "1", "-f", "h264", "pipe:1"]
    return cmd


class H264Encoder:
    """One ffmpeg process; ``write`` blocks while ffmpeg is busy, ``on_packet(au, key)`` runs on the reader thread."""

    def __init__(
        self,
        width: int,
        height: int,
        fps: float,
        gop: int,
        on_packet: Callable[[bytes, bool], None],
        codec: str = "libx264",
        preset: str = "ultrafast",
        crf: int = 26,
        ffmpeg: str | None = None,
    ) -> None:
        if width % 2 or height % 2:
            raise EncoderError(f"frame size {width}x{height} is odd; H.264 4:2:0 needs even sizes")
        self.width, self.height = width, height
        self.on_packet = on_packet
        self.packets = 0
        self.bytes_out = 0
        cmd = encoder_command(width, height, fps, gop, codec, preset, crf, ffmpeg)
        try:
            self._proc = subprocess.Popen(
                cmd,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                bufsize=0,
                start_new_session=True,
            )
        except OSError as err:
            raise EncoderError(f"cannot start ffmpeg: {err}") from err
        self._stderr = b""
        self._i420 = np.empty((height * 3 // 2, width), np.uint8)  # the frame as written to ffmpeg
        self._reader = threading.Thread(target=self._read, name="recorder-h264", daemon=True)
        self._reader.start()
        threading.Thread(target=self._read_stderr, name="recorder-h264-err", daemon=True).start()

    def write(self, img: np.ndarray) -> None:
        if img.shape[:2] != (self.height, self.width) or img.ndim != 3 or img.dtype != np.uint8:
            raise EncoderError(
                f"frame {img.shape} {img.dtype} does not match the encoder ({self.width}x{self.height} bgr8)"
            )
        assert self._proc.stdin is not None
        cv2.cvtColor(img, cv2.COLOR_BGR2YUV_I420, dst=self._i420)  # BT.601 limited range, as swscale's
        try:
            self._proc.stdin.write(self._i420.data.cast("B"))
        except (BrokenPipeError, OSError, ValueError) as err:
            raise EncoderError(f"the encoder stopped: {self.error_text() or err}") from err

    def _read(self) -> None:
        assert self._proc.stdout is not None
        buf = bytearray()
        while True:
            chunk = self._proc.stdout.read(1 << 16)
            if not chunk:
                break
            buf += chunk
            for au in split_access_units(buf):
                self._deliver(au)
        if buf.startswith(AUD):
            self._deliver(bytes(buf))  # the last frame has no delimiter after it

    def _deliver(self, au: bytes) -> None:
        self.packets += 1
        self.bytes_out += len(au)
        try:
            self.on_packet(au, is_keyframe(au))
        except Exception:
            log.exception("recorder packet handler")

    def _read_stderr(self) -> None:
        assert self._proc.stderr is not None
        for line in iter(self._proc.stderr.readline, b""):
            self._stderr = (self._stderr + line)[-1000:]

    def error_text(self) -> str:
        return self._stderr.decode(errors="replace").strip()[-400:]

    @property
    def alive(self) -> bool:
        return self._proc.poll() is None

    def close(self, timeout: float = 10.0) -> None:
        """End the stream: every frame written comes out through ``on_packet`` before this returns."""
        try:
            assert self._proc.stdin is not None
            self._proc.stdin.close()
        except OSError:
            pass
        try:
            self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(5)
        self._reader.join(timeout)
