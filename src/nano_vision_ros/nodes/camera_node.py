"""camera_node: frames from a file, V4L2 device, network stream, GStreamer pipeline, Jetson CSI
camera or test pattern, published as ``image_raw`` + ``camera_info`` (and optionally
``image_raw/compressed``).

Capture (``core.capture.CaptureLoop``) runs on its own thread and publishes from there, so the
executor only serves timers (diagnostics) and parameter requests. The frame is captured straight
into the memory of the outgoing message (an ``array.array`` the ``Image`` keeps), so the only
copies left are the ones rclpy and the DDS transport make. A failing source is retried with
bounded exponential backoff; the node never exits because of it.
"""

from __future__ import annotations

import array
import logging
from typing import Literal

import cv2
import numpy as np
from builtin_interfaces.msg import Time
from pydantic import Field
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Header

from nano_vision_ros.core.camera_info import CameraCalibration, load_calibration, uncalibrated
from nano_vision_ros.core.capture import (
    FINISHED,
    RECONNECTING,
    STREAMING,
    CaptureConfig,
    CaptureLoop,
    create_source,
    gst,
)
from nano_vision_ros.core.errors import ConfigError
from nano_vision_ros.core.opencv_threads import limit_opencv_threads
from nano_vision_ros.ros import qos
from nano_vision_ros.ros.diagnostics import ERROR, OK, WARN, Diagnostics
from nano_vision_ros.ros.image import numpy_to_compressed
from nano_vision_ros.ros.params import load_config
from nano_vision_ros.ros.runtime import run_node

log = logging.getLogger(__name__)


class CameraNodeConfig(CaptureConfig):
    """Parameters of camera_node: the capture settings plus what is published."""

    frame_id: str = Field("camera", min_length=1, description="header.frame_id of image_raw and camera_info")
    camera_info_url: str = Field("", description="calibration YAML (file://, package://, path); '' = uncalibrated")
    encoding: Literal["bgr8", "rgb8"] = Field("bgr8", description="pixel order of image_raw")
    qos_depth: int = Field(1, ge=1, le=100, description="image_raw history depth (best effort)")
    publish_compressed: bool = Field(False, description="also publish image_raw/compressed (jpeg)")
    jpeg_quality: int = Field(80, ge=1, le=100, description="jpeg quality of image_raw/compressed")
    diagnostics_period: float = Field(1.0, gt=0.0, le=60.0, description="seconds between /diagnostics statuses")


class CameraNode(Node):
    def __init__(self, name: str = "camera_node", **kwargs) -> None:
        super().__init__(name, **kwargs)
        limit_opencv_threads()  # per-frame OpenCV work: no busy-waiting pool (core.opencv_threads)
        self.cfg = load_config(self, CameraNodeConfig)
        cfg = self.cfg
        self._calibration: CameraCalibration | None = (
            load_calibration(cfg.camera_info_url) if cfg.camera_info_url else None
        )
        if cfg.kind in ("gstreamer", "csi") or cfg.backend == "gstreamer":
            if not gst.gst_available():
                raise ConfigError(
                    f"parameter 'source_kind': {cfg.kind} needs {gst.GST_LAUNCH} (GStreamer), which is not installed",
                    "source_kind",
                )
            if cfg.kind == "csi" and not gst.has_element("nvarguscamerasrc"):
                log.warning(
                    "nvarguscamerasrc is not installed (not a Jetson?): the CSI source will keep failing and retrying"
                )
        self._rgb = cfg.encoding == "rgb8"
        self._info_cache: tuple[int, int, CameraInfo] | None = None
        self._warned_aspect = False

        self._pub_image = self.create_publisher(Image, "image_raw", qos.sensor(cfg.qos_depth))
        self._pub_info = self.create_publisher(CameraInfo, "camera_info", qos.sensor(cfg.qos_depth))
        self._pub_jpeg = (
            self.create_publisher(CompressedImage, "image_raw/compressed", qos.sensor(cfg.qos_depth))
            if cfg.publish_compressed
            else None
        )
        # one outgoing Image, reused: its data is the array the capture writes into
        self._msg = Image(encoding=cfg.encoding, is_bigendian=0)
        self._msg.header.frame_id = cfg.frame_id
        self._data: array.array | None = None
        self._view: np.ndarray | None = None

        self.source = create_source(cfg, rgb=self._rgb)
        self.loop = CaptureLoop(
            self.source,
            self._publish,
            pace=cfg.pace,
            fps=cfg.fps,
            max_rate=cfg.max_rate,
            resize=(cfg.resize_width, cfg.resize_height),
            rgb=self._rgb,
            reconnect_delay=cfg.reconnect_delay,
            reconnect_max_delay=cfg.reconnect_max_delay,
            clock=lambda: self.get_clock().now().nanoseconds,
            allocate=self._allocate,
            name="capture",
        )
        self._diag = Diagnostics(self, self._collect, cfg.diagnostics_period)
        self.get_logger().info(
            f"source {self.source.name} ({cfg.kind}), publishing {self.resolve_topic_name('image_raw')} "
            f"{cfg.encoding} frame_id={cfg.frame_id}"
            + (f", max {cfg.max_rate:g} Hz" if cfg.max_rate else "")
            + (", +compressed" if cfg.publish_compressed else "")
        )
        self.loop.start()

    # -- capture thread ----------------------------------------------------------------------------
    def _allocate(self, shape: tuple[int, ...]) -> np.ndarray:
        """Output frames live in an array.array that the Image message takes without a copy."""
        n = int(np.prod(shape))
        self._data = array.array("B", bytes(n))
        self._view = np.frombuffer(self._data, dtype=np.uint8).reshape(shape)
        return self._view

    def _publish(self, frame: np.ndarray, stamp_ns: int, seq: int) -> None:
        h, w = frame.shape[:2]
        stamp = Time(sec=stamp_ns // 1_000_000_000, nanosec=stamp_ns % 1_000_000_000)
        msg = self._msg
        msg.header.stamp = stamp
        if self._pub_image.get_subscription_count():
            msg.height, msg.width, msg.step = h, w, w * 3
            if frame is self._view and self._data is not None:
                msg.data = self._data
            else:  # never expected (the loop writes into our buffer), kept correct anyway
                data = array.array("B")
                data.frombytes(np.ascontiguousarray(frame).tobytes())
                msg.data = data
            self._pub_image.publish(msg)
        if self._pub_info.get_subscription_count():  # like image_raw: nothing is serialized for nobody
            info = self._camera_info(w, h)
            info.header.stamp = stamp
            self._pub_info.publish(info)
        if self._pub_jpeg is not None and self._pub_jpeg.get_subscription_count():
            bgr = cv2.cvtColor(frame, cv2.COLOR_RGB2BGR) if self._rgb else frame
            jpeg = numpy_to_compressed(
                bgr, "jpeg", self.cfg.jpeg_quality, Header(stamp=stamp, frame_id=self.cfg.frame_id)
            )
            jpeg.format = f"{self.cfg.encoding}; jpeg compressed bgr8"
            self._pub_jpeg.publish(jpeg)

    def _camera_info(self, width: int, height: int) -> CameraInfo:
        if self._info_cache and self._info_cache[:2] == (width, height):
            return self._info_cache[2]
        cal = self._calibration
        if cal is None:
            cal = uncalibrated(width, height)
        else:
            if cal.aspect_differs(width, height) and not self._warned_aspect:
                self._warned_aspect = True
                self.get_logger().warning(
                    f"calibration is for {cal.width}x{cal.height}, frames are {width}x{height} "
                    "(another aspect ratio): camera_info is scaled but likely wrong"
                )
            cal = cal.scaled(width, height)
        info = CameraInfo(
            width=width,
            height=height,
            distortion_model=cal.distortion_model,
            d=list(cal.d),
            k=list(cal.k),
            r=list(cal.r),
            p=list(cal.p),
            binning_x=cal.binning_x,
            binning_y=cal.binning_y,
        )
        info.header.frame_id = self.cfg.frame_id
        self._info_cache = (width, height, info)
        return info

    # -- diagnostics ---------------------------------------------------------------------------------
    def _collect(self) -> tuple[int, str, dict[str, object]]:
        st = self.loop.stats()
        state = str(st["state"])
        if state in (STREAMING, FINISHED):
            level, message = OK, state
        elif state == RECONNECTING:
            level = ERROR if self.loop.attempts >= 5 else WARN
            message = f"reconnecting: {st['last_error']}"
        else:
            level, message = WARN, state
        st["frame_id"] = self.cfg.frame_id
        return level, message, st

    def destroy_node(self) -> None:
        loop = getattr(self, "loop", None)  # absent when __init__ was refused (bad configuration)
        if loop is not None:
            loop.stop()
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    return run_node(lambda: CameraNode(), args)


if __name__ == "__main__":
    import sys

    sys.exit(main())
