"""H.264 → FLV → RTMP encoder command lines (ffmpeg or GStreamer subprocess fed raw I420 on stdin).

I420 (yuv420p), converted by the streamer with OpenCV, not BGR: half the bytes through the pipe and
no colour conversion in the encoder process (ffmpeg's bgr24 -> yuv420p swscale cost more than
OpenCV's; docs/performance/site_cost.md); nvvidconv takes I420 as it is.

The encoder is a subprocess so a crash, a stalled TCP connection or a GPU encoder fault never takes
the node down: the streamer restarts it. Hardware encoders (Jetson ``nvv4l2h264enc`` in
GStreamer, ffmpeg ``h264_nvmpi`` / ``h264_v4l2m2m`` / ``h264_nvenc``) are used where a one-frame
probe encode actually works, not merely where the binary lists them (Debian's ffmpeg lists
``h264_v4l2m2m`` on every PC).
"""

from __future__ import annotations

import functools
import logging
import shutil
import subprocess
from dataclasses import dataclass

log = logging.getLogger(__name__)

#: the raw frames on the encoder's stdin (ffmpeg's name; GStreamer's I420): width x height x 3/2 bytes
INPUT_PIX_FMT = "yuv420p"


def frame_bytes(width: int, height: int) -> int:
    """Bytes of one I420 frame (even width and height)."""
    return width * height * 3 // 2


#: ffmpeg hardware H.264 encoders, tried in this order by ``auto`` (Jetson first).
FFMPEG_HW_ENCODERS = ("h264_nvmpi", "h264_v4l2m2m", "h264_nvenc")


@dataclass(frozen=True)
class EncoderSettings:
    width: int
    height: int
    fps: float
    bitrate_kbps: int = 2000
    gop: int = 30  # keyframe interval in frames: a new viewer waits at most gop/fps seconds
    preset: str = "ultrafast"


def _ffmpeg() -> str | None:
    return shutil.which("ffmpeg")


def _gst_launch() -> str | None:
    return shutil.which("gst-launch-1.0")


@functools.cache
def ffmpeg_encoder_works(codec: str) -> bool:
    """True when ffmpeg can encode one small frame with `codec` here (hardware present and usable)."""
    exe = _ffmpeg()
    if exe is None:
        return False
    cmd = [
        exe,
        "-hide_banner",
        "-loglevel",
        "error",
        "-f",
        "lavfi",
        "-i",
        "color=c=gray:s=256x144:r=10",
        "-frames:v",
        "2",
        "-c:v",
        codec,
        "-pix_fmt",
        "yuv420p",
        "-f",
        "null",
        "-",
    ]
    try:
        return (
            subprocess.run(
                cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=15, check=False
            ).returncode
            == 0
        )
    except (OSError, subprocess.TimeoutExpired):
        return False


@functools.cache
def gst_element_exists(element: str) -> bool:
    exe = shutil.which("gst-inspect-1.0")
    if exe is None:
        return False
    try:
        return (
            subprocess.run(
                [exe, element], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=15, check=False
            ).returncode
            == 0
        )
    except (OSError, subprocess.TimeoutExpired):
        return False


def pick_ffmpeg_codec(codec: str = "auto") -> str:
    """'auto' -> the first working hardware encoder, else libx264; an explicit name is kept."""
    if codec != "auto":
        return codec
    for hw in FFMPEG_HW_ENCODERS:
        if ffmpeg_encoder_works(hw):
            return hw
    return "libx264"


def ffmpeg_command(url: str, s: EncoderSettings, codec: str = "libx264", ffmpeg: str | None = None) -> list[str]:
    """ffmpeg reading raw I420 frames on stdin (wall-clock timestamps, resampled to CFR) to RTMP."""
    exe = ffmpeg or _ffmpeg() or "ffmpeg"
    fps = f"{s.fps:g}"
    cmd = [
        exe,
        "-hide_banner",
        "-nostdin",
        "-loglevel",
        "error",
        # Input: the frames as they come; wall-clock timestamps keep the stream in real time even
        # when frames are late or dropped, and the output -r resamples to a constant rate.
        "-f",
        "rawvideo",
        "-pix_fmt",
        INPUT_PIX_FMT,
        "-s",
        f"{s.width}x{s.height}",
        "-framerate",
        fps,
        "-use_wallclock_as_timestamps",
        "1",
        "-fflags",
        "nobuffer",
        "-probesize",
        "32",
        "-analyzeduration",
        "0",
        "-thread_queue_size",
        "4",
        "-i",
        "pipe:0",
        "-an",
        "-fps_mode",
        "cfr",
        "-r",
        fps,
        "-pix_fmt",
        "yuv420p",
    ]
    if codec == "libx264":
        cmd += [
            "-c:v",
            "libx264",
            "-preset",
            s.preset,
            "-tune",
            "zerolatency",
            "-profile:v",
            "baseline",
            "-x264-params",
            f"keyint={s.gop}:min-keyint={s.gop}:scenecut=0:rc-lookahead=0:sync-lookahead=0",
        ]
    else:
        cmd += ["-c:v", codec]
    kbps = int(s.bitrate_kbps)
    cmd += [
        "-b:v",
        f"{kbps}k",
        "-maxrate",
        f"{kbps}k",
        "-bufsize",
        f"{max(kbps // 2, 100)}k",
        "-g",
        str(s.gop),
        "-bf",
        "0",
        "-flags",
        "+low_delay",
        "-flush_packets",
        "1",
        "-f",
        "flv",
        "-flvflags",
        "no_duration_filesize",
        url,
    ]
    return cmd


def gstreamer_command(url: str, s: EncoderSettings, element: str = "auto", gst_launch: str | None = None) -> list[str]:
    """gst-launch: fdsrc (raw I420 on stdin) → x264enc / nvv4l2h264enc → h264parse → flvmux → rtmpsink."""
    exe = gst_launch or _gst_launch() or "gst-launch-1.0"
    if element == "auto":
        element = "nvv4l2h264enc" if gst_element_exists("nvv4l2h264enc") else "x264enc"
    num, den = _fraction(s.fps)
    src = [
        "fdsrc",
        "fd=0",
        f"blocksize={frame_bytes(s.width, s.height)}",
        "do-timestamp=true",
        "!",
        "rawvideoparse",
        "use-sink-caps=false",
        f"width={s.width}",
        f"height={s.height}",
        "format=i420",
        # OpenCV's I420 is tightly packed; GStreamer's default strides round rows up to 4 bytes
        f"plane-strides=<{s.width},{s.width // 2},{s.width // 2}>",
        f"plane-offsets=<0,{s.width * s.height},{s.width * s.height * 5 // 4}>",
        f"frame-size={frame_bytes(s.width, s.height)}",
        f"framerate={num}/{den}",
        "!",
        "queue",
        "max-size-buffers=2",
        "leaky=downstream",
        "!",
    ]
    if element == "nvv4l2h264enc":
        # nvvidconv takes I420 from system memory as it is (the VIC converts to NVMM NV12): no CPU conversion.
        enc = [
            "nvvidconv",
            "!",
            "video/x-raw(memory:NVMM),format=NV12",
            "!",
            "nvv4l2h264enc",
            f"bitrate={int(s.bitrate_kbps) * 1000}",
            f"iframeinterval={s.gop}",
            f"idrinterval={s.gop}",
            "insert-sps-pps=true",
            "maxperf-enable=true",
            "!",
        ]
    else:
        enc = [
            "x264enc",
            "tune=zerolatency",
            f"speed-preset={s.preset}",
            f"bitrate={int(s.bitrate_kbps)}",
            f"key-int-max={s.gop}",
            "bframes=0",
            "byte-stream=false",
            "!",
        ]
    sink = [
        "h264parse",
        "config-interval=-1",
        "!",
        "flvmux",
        "streamable=true",
        "!",
        "rtmpsink",
        f"location={url} live=1",
        "sync=false",
    ]
    return [exe, "-q", "-e", *src, *enc, *sink]


def _fraction(fps: float) -> tuple[int, int]:
    if abs(fps - round(fps)) < 1e-6:
        return int(round(fps)), 1
    return int(round(fps * 1000)), 1000


def build_command(
    url: str, s: EncoderSettings, encoder: str = "auto", ffmpeg_codec: str = "auto"
) -> tuple[str, list[str]]:
    """(description, argv) for the chosen encoder; 'auto' prefers ffmpeg, then GStreamer.

    On a Jetson whose ffmpeg has no hardware encoder but whose GStreamer has ``nvv4l2h264enc``,
    'auto' takes GStreamer so the hardware encoder is used.
    """
    if encoder not in ("auto", "ffmpeg", "gstreamer"):
        raise ValueError(f"encoder must be auto, ffmpeg or gstreamer (got {encoder!r})")
    if encoder == "auto":
        codec = pick_ffmpeg_codec(ffmpeg_codec) if _ffmpeg() else None
        if (codec in (None, "libx264")) and _gst_launch() and gst_element_exists("nvv4l2h264enc"):
            return "gstreamer/nvv4l2h264enc", gstreamer_command(url, s, "nvv4l2h264enc")
        if codec is not None:
            return f"ffmpeg/{codec}", ffmpeg_command(url, s, codec)
        if _gst_launch():
            return "gstreamer/x264enc", gstreamer_command(url, s, "x264enc")
        raise FileNotFoundError("neither ffmpeg nor gst-launch-1.0 is installed (see requirements/streaming.apt)")
    if encoder == "ffmpeg":
        if _ffmpeg() is None:
            raise FileNotFoundError("ffmpeg is not installed (see requirements/streaming.apt)")
        codec = pick_ffmpeg_codec(ffmpeg_codec)
        return f"ffmpeg/{codec}", ffmpeg_command(url, s, codec)
    if _gst_launch() is None:
        raise FileNotFoundError("gst-launch-1.0 is not installed (see requirements/streaming.apt)")
    element = "nvv4l2h264enc" if gst_element_exists("nvv4l2h264enc") else "x264enc"
    return f"gstreamer/{element}", gstreamer_command(url, s, element)
