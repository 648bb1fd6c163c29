"""The capture settings (one pydantic model) and the factory that turns them into a source.

``source_kind`` says what ``source`` means; with ``auto`` (the default) it is read off ``source``:

=================================  ===============  =============================================
``source``                          kind             notes
=================================  ===============  =============================================
``samples/vtest.mp4``, ``/x.mkv``  ``file``         paced at the file's rate (or ``fps``), loops
``0``, ``/dev/video0``             ``v4l2``         ``pixel_format`` MJPG/YUYV, width/height/fps
``rtsp://…``, ``http://…``, …      ``url``          ``transport`` tcp/udp, ``low_latency``
``… ! …`` (has a ``!``)            ``gstreamer``    a gst-launch pipeline (BGR tail is added)
``csi://0``                        ``csi``          Jetson nvarguscamerasrc, sensor id 0
``test://pattern``                 ``test_pattern`` moving pattern that encodes the frame index
=================================  ===============  =============================================
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from nano_vision_ros.core.capture.base import FrameSource

SourceKind = Literal["auto", "file", "v4l2", "url", "gstreamer", "csi", "test_pattern"]
URL_SCHEMES = (
    "rtsp://",
    "rtsps://",
    "http://",
    "https://",
    "rtmp://",
    "rtmps://",
    "tcp://",
    "udp://",
    "srt://",
    "rtp://",
    "hls+http://",
)
MAX_SIDE = 16384
DEFAULT_PATTERN_SIZE = (640, 480)
DEFAULT_CSI_MODE = (1920, 1080, 30.0)


def infer_kind(source: str) -> str:
    """The source kind ``auto`` stands for, from the text of ``source``."""
    s = source.strip()
    if s.startswith("test://") or s in ("test", "pattern", "test_pattern"):
        return "test_pattern"
    if s.startswith("csi://"):
        return "csi"
    if "!" in s:
        return "gstreamer"
    if s.lower().startswith(URL_SCHEMES):
        return "url"
    if s.isdigit() or s.startswith(("/dev/video", "/dev/v4l/")):
        return "v4l2"
    return "file"


class CaptureConfig(BaseModel):
    """Where frames come from and how they are read (ROS parameters of the camera node)."""

    model_config = ConfigDict(extra="forbid")

    source_kind: SourceKind = Field(
        "auto", description="file | v4l2 | url | gstreamer | csi | test_pattern | auto (from `source`)"
    )
    source: str = Field(
        "samples/vtest.mp4",
        validate_default=True,
        description="file path, device index/path, URL, gst pipeline, csi://<sensor>, test://pattern",
    )
    backend: Literal["auto", "opencv", "gstreamer"] = Field(
        "auto",
        description="reader for file/url: opencv (FFmpeg) or gstreamer (gst-launch subprocess); auto = gstreamer where Jetson's nvv4l2decoder exists, else opencv",
    )
    width: int = Field(
        0, ge=0, le=MAX_SIDE, description="capture width (v4l2/csi/test_pattern/gstreamer scale); 0 = source's own"
    )
    height: int = Field(
        0, ge=0, le=MAX_SIDE, validate_default=True, description="capture height; set together with width"
    )
    fps: float = Field(
        0.0,
        ge=0.0,
        le=1000.0,
        description="capture rate (v4l2/csi) or pacing rate (file/test_pattern); 0 = source's own",
    )
    pace: bool = Field(
        True, description="file/test_pattern: deliver at `fps` (the file's rate); false = as fast as possible"
    )
    loop: bool = Field(True, description="file: start again at the end (false: stop, node stays up)")
    pixel_format: Literal["auto", "MJPG", "YUYV"] = Field("auto", description="v4l2 pixel format")
    transport: Literal["tcp", "udp"] = Field("tcp", description="RTSP transport")
    low_latency: bool = Field(True, description="url: no demuxer buffering, short probing")
    latency_ms: int = Field(
        0, ge=0, le=10000, description="RTSP jitter buffer for the gstreamer backend (rtspsrc latency)"
    )
    sensor_id: int = Field(0, ge=0, le=15, description="csi: sensor id (csi://N in `source` sets it too)")
    flip_method: int = Field(
        0, ge=0, le=7, description="csi: nvvidconv flip-method (0 none, 2 rotate 180, 4 horizontal, 6 vertical)"
    )
    resize_width: int = Field(
        0, ge=0, le=MAX_SIDE, description="published width; 0 = as captured (one of the two keeps the aspect)"
    )
    resize_height: int = Field(
        0, ge=0, le=MAX_SIDE, validate_default=True, description="published height; 0 = as captured"
    )
    max_rate: float = Field(0.0, ge=0.0, le=1000.0, description="publish at most this many frames/s (0 = every frame)")
    open_timeout: float = Field(10.0, gt=0.0, le=300.0, description="seconds to wait for a source to open")
    read_timeout: float = Field(
        5.0, gt=0.0, le=300.0, description="seconds without a frame before the source counts as lost"
    )
    reconnect_delay: float = Field(
        0.5, gt=0.0, le=60.0, description="first retry delay after a failure (doubles each try)"
    )
    reconnect_max_delay: float = Field(
        10.0, gt=0.0, le=600.0, validate_default=True, description="upper bound of the retry delay"
    )

    @field_validator("source", mode="before")
    @classmethod
    def _source_text(cls, v: Any) -> Any:
        return str(v) if isinstance(v, int) and not isinstance(v, bool) else v

    @field_validator("source")
    @classmethod
    def _source_fits_kind(cls, v: str, info: ValidationInfo) -> str:
        kind = info.data.get("source_kind", "auto")
        kind = infer_kind(v) if kind == "auto" else kind
        if kind in ("file", "url", "gstreamer", "v4l2") and not v.strip():
            raise ValueError(f"empty, but source_kind {kind} needs it")
        if kind == "url" and not v.lower().startswith(URL_SCHEMES):
            raise ValueError(f"not a stream URL (expected one of {', '.join(s.rstrip(':/') for s in URL_SCHEMES)})")
        if kind == "v4l2" and not (v.strip().isdigit() or v.startswith("/dev/")):
            raise ValueError("a V4L2 device is an index (0) or a /dev path")
        if kind == "csi" and v.startswith("csi://") and not v[len("csi://") :].isdigit():
            raise ValueError("csi://<sensor id>, e.g. csi://0")
        return v

    @field_validator("height")
    @classmethod
    def _size_pair(cls, v: int, info: ValidationInfo) -> int:
        w = info.data.get("width", 0)
        if bool(v) != bool(w):
            raise ValueError("width and height are set together (both 0 = the source's own size)")
        if v and (v < 16 or (w or 0) < 16):
            raise ValueError(f"{w}x{v} is too small (16 px at least)")
        return v

    @field_validator("resize_height")
    @classmethod
    def _resize_min(cls, v: int, info: ValidationInfo) -> int:
        w = info.data.get("resize_width", 0) or 0
        if (v and v < 16) or (w and w < 16):
            raise ValueError(f"resize {w}x{v} is too small (16 px at least, 0 = keep)")
        return v

    @field_validator("reconnect_max_delay")
    @classmethod
    def _delay_order(cls, v: float, info: ValidationInfo) -> float:
        first = info.data.get("reconnect_delay")
        if first is not None and v < first:
            raise ValueError(f"smaller than reconnect_delay ({first})")
        return v

    @property
    def kind(self) -> str:
        return infer_kind(self.source) if self.source_kind == "auto" else self.source_kind

    @property
    def csi_sensor(self) -> int:
        if self.source.startswith("csi://") and self.source[len("csi://") :].isdigit():
            return int(self.source[len("csi://") :])
        return self.sensor_id


def create_source(cfg: CaptureConfig, rgb: bool = False) -> FrameSource:
    """The FrameSource `cfg` describes (not opened). Nothing is checked against the outside world
    here: a missing file or device is a source failure at open, retried by the loop."""
    from nano_vision_ros.core.capture import gst
    from nano_vision_ros.core.capture.opencv_source import OpenCVSource
    from nano_vision_ros.core.capture.pattern import TestPatternSource

    kind = cfg.kind
    common: dict[str, Any] = {"open_timeout": cfg.open_timeout, "read_timeout": cfg.read_timeout}
    if kind == "test_pattern":
        w, h = (cfg.width, cfg.height) if cfg.width else DEFAULT_PATTERN_SIZE
        return TestPatternSource(w, h, cfg.fps or 30.0, rgb=rgb)
    if kind == "csi":
        w, h = (cfg.width, cfg.height) if cfg.width else DEFAULT_CSI_MODE[:2]
        fps = cfg.fps or DEFAULT_CSI_MODE[2]
        pipe = gst.csi_pipeline(cfg.csi_sensor, w, h, fps, cfg.flip_method)
        return gst.GstSubprocessSource(pipe, fps=fps, name=f"csi sensor {cfg.csi_sensor} {w}x{h}@{fps:g}", **common)
    if kind == "gstreamer":
        return gst.GstSubprocessSource(cfg.source, cfg.width, cfg.height, cfg.fps, **common)
    # auto: Jetson's hardware decoder when GStreamer has it, else OpenCV's FFmpeg (software)
    use_gst = cfg.backend == "gstreamer" or (
        cfg.backend == "auto" and kind in ("file", "url") and gst.hardware_decoder()
    )
    if kind == "file":
        if use_gst:
            from nano_vision_ros.core.paths import resolve

            path = str(resolve(cfg.source))
            return gst.GstSubprocessSource(
                gst.file_pipeline(path),
                cfg.width,
                cfg.height,
                cfg.fps,
                finite=True,
                loop=cfg.loop,
                name=f"file {path} (gstreamer)",
                path=path,
                **common,
            )
        return OpenCVSource("file", cfg.source, loop=cfg.loop, **common)
    if kind == "url":
        if use_gst:
            pipe = gst.url_pipeline(cfg.source, cfg.transport, cfg.latency_ms)
            return gst.GstSubprocessSource(pipe, cfg.width, cfg.height, cfg.fps, **common)
        return OpenCVSource("url", cfg.source, transport=cfg.transport, low_latency=cfg.low_latency, **common)
    if kind == "v4l2":
        return OpenCVSource(
            "v4l2", cfg.source, width=cfg.width, height=cfg.height, fps=cfg.fps, pixel_format=cfg.pixel_format, **common
        )
    raise ValueError(f"unknown source kind {kind!r}")
