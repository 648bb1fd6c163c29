"""Multi-object tracking: stable track ids across frames (ByteTrack-style)."""

from nano_vision_ros.core.tracking.bytetrack import ByteTracker, TrackerConfig

__all__ = ["ByteTracker", "TrackerConfig"]
