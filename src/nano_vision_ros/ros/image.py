"""numpy <-> sensor_msgs/Image and CompressedImage.

The system ``cv_bridge`` is used where it imports and passes a self-test (set
``NANO_VISION_IMAGE_CONVERTER=own`` to skip it); otherwise the project's own converter, which
views the message buffer instead of copying it. PyPI's ``cv-bridge`` is ROS 1's and is never
imported on purpose.
"""
from __future__ import annotations

import array
import logging
import os
import sys
from typing import Any

import numpy as np
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

log = logging.getLogger(__name__)

# encoding -> (dtype, channels)
ENCODINGS: dict[str, tuple[np.dtype, int]] = {
    "mono8": (np.dtype(np.uint8), 1),
    "mono16": (np.dtype(np.uint16), 1),
    "bgr8": (np.dtype(np.uint8), 3),
    "rgb8": (np.dtype(np.uint8), 3),
    "bgra8": (np.dtype(np.uint8), 4),
    "rgba8": (np.dtype(np.uint8), 4),
    "bgr16": (np.dtype(np.uint16), 3),
    "rgb16": (np.dtype(np.uint16), 3),
    "bayer_rggb8": (np.dtype(np.uint8), 1),
    "bayer_bggr8": (np.dtype(np.uint8), 1),
    "bayer_gbrg8": (np.dtype(np.uint8), 1),
    "bayer_grbg8": (np.dtype(np.uint8), 1),
    "yuv422": (np.dtype(np.uint8), 2),
    "uyvy": (np.dtype(np.uint8), 2),
    "yuyv": (np.dtype(np.uint8), 2),
}
_CV_DEPTHS = {"8U": np.uint8, "8S": np.int8, "16U": np.uint16, "16S": np.int16, "32S": np.int32, "32F": np.float32, "64F": np.float64}
for _d, _t in _CV_DEPTHS.items():
    for _c in (1, 2, 3, 4):
        ENCODINGS[f"{_d}C{_c}"] = (np.dtype(_t), _c)


class ImageEncodingError(ValueError):
    """The image's encoding, size or buffer does not make a valid image."""


def encoding_info(encoding: str) -> tuple[np.dtype, int]:
    try:
        return ENCODINGS[encoding]
    except KeyError:
        raise ImageEncodingError(f"unsupported image encoding {encoding!r}; supported: {', '.join(sorted(ENCODINGS))}") from None


def imgmsg_to_numpy(msg: Image) -> np.ndarray:
    """A (H, W[, C]) array viewing the message buffer (copied only for foreign byte order)."""
    dtype, channels = encoding_info(msg.encoding)
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    row_bytes = w * channels * dtype.itemsize
    if h == 0 or w == 0:
        raise ImageEncodingError(f"empty image ({w}x{h})")
    if step < row_bytes:
        raise ImageEncodingError(f"step {step} < width*channels*bytes {row_bytes}")
    buf = np.frombuffer(msg.data, dtype=np.uint8)
    if buf.size < step * h:
        raise ImageEncodingError(f"data holds {buf.size} bytes, expected step*height = {step * h}")
    rows = buf[: step * h].reshape(h, step)[:, :row_bytes]
    dt = dtype.newbyteorder(">" if msg.is_bigendian else "<")
    arr = rows.view(dt)  # rows may be padded (step > row bytes): the last axis is still contiguous
    arr = arr.reshape(h, w, channels) if channels > 1 else arr.reshape(h, w)
    if dt.byteorder not in ("=", "|") and dt.byteorder != ("<" if sys.byteorder == "little" else ">"):
        arr = arr.astype(dtype)  # foreign byte order: one copy into native order
    return arr


def default_encoding(arr: np.ndarray) -> str:
    if arr.dtype == np.uint8:
        return {2: "mono8", 3: "bgr8"}.get(arr.ndim, "bgra8" if arr.shape[-1] == 4 else "8UC%d" % arr.shape[-1])
    for depth, t in _CV_DEPTHS.items():
        if arr.dtype == t:
            return f"{depth}C{1 if arr.ndim == 2 else arr.shape[2]}"
    raise ImageEncodingError(f"no image encoding for dtype {arr.dtype}")


def numpy_to_imgmsg(arr: np.ndarray, encoding: str | None = None, header: Header | None = None) -> Image:
    """An Image holding one copy of `arr`'s bytes (the minimum rclpy allows)."""
    encoding = encoding or default_encoding(arr)
    dtype, channels = encoding_info(encoding)
    if arr.dtype != dtype:
        raise ImageEncodingError(f"encoding {encoding} needs dtype {dtype}, array has {arr.dtype}")
    got_channels = 1 if arr.ndim == 2 else arr.shape[2]
    if arr.ndim not in (2, 3) or got_channels != channels:
        raise ImageEncodingError(f"encoding {encoding} needs {channels} channel(s), array shape is {arr.shape}")
    arr = np.ascontiguousarray(arr)
    msg = Image()
    if header is not None:
        msg.header = header
    msg.height, msg.width = int(arr.shape[0]), int(arr.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = int(arr.dtype.byteorder == ">" or (arr.dtype.byteorder == "=" and sys.byteorder == "big"))
    msg.step = int(arr.shape[1] * channels * arr.dtype.itemsize)
    data = array.array("B")
    data.frombytes(memoryview(arr).cast("B"))
    msg.data = data
    return msg


def compressed_to_numpy(msg: CompressedImage, flags: int | None = None) -> np.ndarray:
    """Decode a jpeg/png CompressedImage to BGR (or as stored for 16-bit png)."""
    import cv2

    buf = np.frombuffer(msg.data, dtype=np.uint8)
    img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED if flags is None else flags)
    if img is None:
        raise ImageEncodingError(f"could not decode compressed image (format {msg.format!r}, {buf.size} bytes)")
    return img


def numpy_to_compressed(arr: np.ndarray, fmt: str = "jpeg", quality: int = 90, header: Header | None = None,
                        encoding: str = "bgr8") -> CompressedImage:
    """Encode to jpeg or png; `format` follows image_transport: '<encoding>; jpeg compressed bgr8'."""
    import cv2

    fmt = fmt.lower()
    if fmt in ("jpeg", "jpg"):
        ok, enc = cv2.imencode(".jpg", arr, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
        fmt = "jpeg"
    elif fmt == "png":
        ok, enc = cv2.imencode(".png", arr)
    else:
        raise ImageEncodingError(f"unsupported compressed format {fmt!r}; use jpeg or png")
    if not ok:
        raise ImageEncodingError(f"{fmt} encoding failed for array {arr.shape} {arr.dtype}")
    msg = CompressedImage()
    if header is not None:
        msg.header = header
    msg.format = f"{encoding}; {fmt} compressed {encoding}"
    data = array.array("B")
    data.frombytes(enc.tobytes())
    msg.data = data
    return msg


class _OwnConverter:
    name = "own"

    def to_numpy(self, msg: Image) -> np.ndarray:
        return imgmsg_to_numpy(msg)

    def to_msg(self, arr: np.ndarray, encoding: str | None = None, header: Header | None = None) -> Image:
        return numpy_to_imgmsg(arr, encoding, header)


class _CvBridgeConverter:
    name = "cv_bridge"

    def __init__(self, bridge: Any) -> None:
        self._bridge = bridge

    def to_numpy(self, msg: Image) -> np.ndarray:
        return self._bridge.imgmsg_to_cv2(msg, desired_encoding="passthrough")

    def to_msg(self, arr: np.ndarray, encoding: str | None = None, header: Header | None = None) -> Image:
        msg = self._bridge.cv2_to_imgmsg(arr, encoding=encoding or default_encoding(arr))
        if header is not None:
            msg.header = header
        return msg


_converter: Any = None


def converter() -> Any:
    """The converter in use: system cv_bridge if it works, else the project's own."""
    global _converter
    if _converter is not None:
        return _converter
    choice = os.environ.get("NANO_VISION_IMAGE_CONVERTER", "auto")
    if choice in ("auto", "cv_bridge"):
        try:
            from cv_bridge import CvBridge  # type: ignore[import-not-found]

            cand = _CvBridgeConverter(CvBridge())
            probe = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
            if not np.array_equal(cand.to_numpy(cand.to_msg(probe, "bgr8")), probe):
                raise RuntimeError("round trip mismatch")
            _converter = cand
        except Exception as err:  # ROS 1's cv-bridge from PyPI, numpy 2 ABI breaks, or not installed
            if choice == "cv_bridge":
                log.warning("cv_bridge requested but unusable (%s); using own converter", err)
            else:
                log.debug("cv_bridge unusable (%s); using own converter", err)
    if _converter is None:
        _converter = _OwnConverter()
    return _converter
