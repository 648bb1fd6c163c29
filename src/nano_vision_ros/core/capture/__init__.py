"""Frame capture without ROS: sources (file, V4L2, URL, GStreamer subprocess, Jetson CSI, test
pattern), the capture thread with pacing, throttling, resizing and reconnects, and the settings."""

from nano_vision_ros.core.capture.base import EndOfStream, FrameSource, SourceError
from nano_vision_ros.core.capture.config import CaptureConfig, create_source, infer_kind
from nano_vision_ros.core.capture.loop import (
    CONNECTING,
    FINISHED,
    RECONNECTING,
    STOPPED,
    STREAMING,
    CaptureLoop,
    output_size,
)
from nano_vision_ros.core.capture.pattern import TestPatternSource, decode_frame_index, render_test_pattern
from nano_vision_ros.core.capture.rtsp import AuthenticationError

__all__ = [
    "CONNECTING",
    "FINISHED",
    "RECONNECTING",
    "STOPPED",
    "STREAMING",
    "AuthenticationError",
    "CaptureConfig",
    "CaptureLoop",
    "EndOfStream",
    "FrameSource",
    "SourceError",
    "TestPatternSource",
    "create_source",
    "decode_frame_index",
    "infer_kind",
    "output_size",
    "render_test_pattern",
]
