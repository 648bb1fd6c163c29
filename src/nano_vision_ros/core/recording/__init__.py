"""Event clip recording: one H.264 encode into a ring, fragmented MP4 clips cut by stream copy, quota and retention."""

from nano_vision_ros.core.recording.clip import ClipError, ClipWriter, sha256_file
from nano_vision_ros.core.recording.recorder import (
    Recorder,
    RecorderOptions,
    event_time,
    parse_time,
)
from nano_vision_ros.core.recording.retention import Retention
from nano_vision_ros.core.recording.ring import Frame, FrameRing

__all__ = [
    "ClipError",
    "ClipWriter",
    "Frame",
    "FrameRing",
    "Recorder",
    "RecorderOptions",
    "Retention",
    "event_time",
    "parse_time",
    "sha256_file",
]
