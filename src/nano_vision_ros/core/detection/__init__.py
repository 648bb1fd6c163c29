"""Detection: pre-processing, output decoders, detector pipelines, task profiles (ROS-free)."""

from nano_vision_ros.core.detection.types import Detections, Detector

__all__ = ["Detections", "Detector"]
