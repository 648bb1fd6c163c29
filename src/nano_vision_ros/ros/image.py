"""numpy <-> sensor_msgs/Image and CompressedImage.

``to_bgr`` is the one way a node turns an image message (any common camera encoding, or a
jpeg/png ``CompressedImage``) into the BGR array the core takes; ``ImageError`` names what is
wrong with a bad message. The system ``cv_bridge`` is used where it imports and passes a self-test (set
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
    "yuv422_yuy2": (np.dtype(np.uint8), 2),
    "bayer_rggb16": (np.dtype(np.uint16), 1),
    "bayer_bggr16": (np.dtype(np.uint16), 1),
    "bayer_gbrg16": (np.dtype(np.uint16), 1),
    "bayer_grbg16": (np.dtype(np.uint16), 1),
}
_CV_DEPTHS = {
    "8U": np.uint8,
    "8S": np.int8,
    "16U": np.uint16,
    "16S": np.int16,
    "32S": np.int32,
    "32F": np.float32,
    "64F": np.float64,
}
for _d, _t in _CV_DEPTHS.items():
    for _c in (1, 2, 3, 4):
        ENCODINGS[f"{_d}C{_c}"] = (np.dtype(_t), _c)


class ImageError(ValueError):
    """The image message's encoding, size or buffer does not make a valid image.

    ``kind`` is a short word for counting bad frames by cause in diagnostics
    (encoding, empty, size, step, data, format, decode).
    """

    def __init__(self, message: str, kind: str = "invalid") -> None:
        super().__init__(message)
        self.kind = kind


ImageEncodingError = ImageError  # the older name, kept for callers and tests

# Declared sizes above these are refused before any buffer is touched (a corrupt header must not
# make a node allocate gigabytes): 16384 px a side, 128 Mpx in all.
MAX_SIDE = 16384
MAX_PIXELS = 1 << 27


def encoding_info(encoding: str) -> tuple[np.dtype, int]:
    try:
        return ENCODINGS[encoding]
    except (KeyError, TypeError):
        raise ImageError(
            f"encoding {_short(encoding)} unknown (unsupported image encoding; supported: "
            f"{', '.join(sorted(ENCODINGS))}, nv12, nv21)",
            "encoding",
        ) from None


def _short(value: object, limit: int = 40) -> str:
    """repr() cut to `limit` characters: a hostile field must not flood logs and diagnostics."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _check_size(w: int, h: int) -> None:
    if h <= 0 or w <= 0:
        raise ImageError(f"empty image ({w}x{h}): zero width or height", "empty")
    if w > MAX_SIDE or h > MAX_SIDE or w * h > MAX_PIXELS:
        raise ImageError(f"declared size {w}x{h} over the limit ({MAX_SIDE} a side, {MAX_PIXELS} pixels)", "size")


def _rows(msg: Image, h: int, row_bytes: int, what: str = "step*height") -> np.ndarray:
    """(h, row_bytes) uint8 view of the message buffer after checking step and length."""
    step = int(msg.step)
    if step < row_bytes:
        raise ImageError(f"step {step} < row of {row_bytes} bytes", "step")
    buf = np.frombuffer(msg.data, dtype=np.uint8)
    if buf.size < step * h:
        raise ImageError(f"data holds {buf.size} bytes < {what} {step * h}", "data")
    return buf[: step * h].reshape(h, step)[:, :row_bytes]


def imgmsg_to_numpy(msg: Image) -> np.ndarray:
    """A (H, W[, C]) array viewing the message buffer (copied only for foreign byte order)."""
    return _view(msg, msg.encoding)


def _view(msg: Image, encoding: str, native: bool = True) -> np.ndarray:
    dtype, channels = encoding_info(encoding)
    h, w = int(msg.height), int(msg.width)
    _check_size(w, h)
    row_bytes = w * channels * dtype.itemsize
    rows = _rows(msg, h, row_bytes)
    dt = dtype.newbyteorder(">" if msg.is_bigendian else "<")
    arr = rows.view(dt)  # rows may be padded (step > row bytes): the last axis is still contiguous
    arr = arr.reshape(h, w, channels) if channels > 1 else arr.reshape(h, w)
    if native and dt.byteorder not in ("=", "|") and dt.byteorder != ("<" if sys.byteorder == "little" else ">"):
        arr = arr.astype(dtype)  # foreign byte order: one copy into native order
    return arr


def default_encoding(arr: np.ndarray) -> str:
    if arr.dtype == np.uint8:
        return {2: "mono8", 3: "bgr8"}.get(arr.ndim, "bgra8" if arr.shape[-1] == 4 else f"8UC{arr.shape[-1]}")
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
    data.frombytes(arr.data.cast("B"))
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


def numpy_to_compressed(
    arr: np.ndarray, fmt: str = "jpeg", quality: int = 90, header: Header | None = None, encoding: str = "bgr8"
) -> CompressedImage:
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
            from cv_bridge import CvBridge

            cand = _CvBridgeConverter(CvBridge())
            probe = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
            if not np.array_equal(cand.to_numpy(cand.to_msg(probe, "bgr8")), probe):
                raise RuntimeError("round trip mismatch")
            _converter = cand
        except Exception as err:  # noqa: BLE001 - ROS 1's cv-bridge from PyPI, numpy 2 ABI breaks, or not installed
            if choice == "cv_bridge":
                log.warning("cv_bridge requested but unusable (%s); using own converter", err)
            else:
                log.debug("cv_bridge unusable (%s); using own converter", err)
    if _converter is None:
        _converter = _OwnConverter()
    return _converter


# ---------------------------------------------------------------------------------------------
# The one image message -> BGR conversion.


def _cv2() -> Any:
    import cv2

    return cv2


_COLOR_CODES: dict[str, str] = {
    "rgb8": "COLOR_RGB2BGR",
    "rgb16": "COLOR_RGB2BGR",
    "bgra8": "COLOR_BGRA2BGR",
    "8UC4": "COLOR_BGRA2BGR",
    "rgba8": "COLOR_RGBA2BGR",
    "mono8": "COLOR_GRAY2BGR",
    "8UC1": "COLOR_GRAY2BGR",
    "mono16": "COLOR_GRAY2BGR",
    "16UC1": "COLOR_GRAY2BGR",
    # ROS "yuv422" is UYVY byte order (image_encodings.h); "yuv422_yuy2" and "yuyv" are YUYV.
    "yuv422": "COLOR_YUV2BGR_UYVY",
    "uyvy": "COLOR_YUV2BGR_UYVY",
    "yuyv": "COLOR_YUV2BGR_YUY2",
    "yuv422_yuy2": "COLOR_YUV2BGR_YUY2",
    "bayer_rggb8": "COLOR_BayerRGGB2BGR",
    "bayer_bggr8": "COLOR_BayerBGGR2BGR",
    "bayer_gbrg8": "COLOR_BayerGBRG2BGR",
    "bayer_grbg8": "COLOR_BayerGRBG2BGR",
    "bayer_rggb16": "COLOR_BayerRGGB2BGR",
    "bayer_bggr16": "COLOR_BayerBGGR2BGR",
    "bayer_gbrg16": "COLOR_BayerGBRG2BGR",
    "bayer_grbg16": "COLOR_BayerGRBG2BGR",
}
_AS_IS = {"bgr8", "8UC3", "bgr16", "16UC3"}
_NV = {"nv12": "COLOR_YUV2BGR_NV12", "nv21": "COLOR_YUV2BGR_NV21"}
BGR_ENCODINGS = tuple(sorted({*_COLOR_CODES, *_AS_IS, *_NV}))
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def to_bgr(msg: Image | CompressedImage) -> np.ndarray:
    """HxWx3 uint8 BGR from any supported image message; ImageError names what is wrong.

    A bgr8 message with a tight step comes back as a view of the message buffer (no copy);
    everything else is converted once. 16-bit images are scaled to 8 bits (value >> 8).
    """
    if isinstance(msg, CompressedImage):
        return _compressed_to_bgr(msg)
    enc, arr = _checked_view(msg)
    cv2 = _cv2()
    if enc in _NV:
        return _convert(cv2, np.ascontiguousarray(arr), getattr(cv2, _NV[enc]), enc)
    if arr.dtype == np.uint16 and not enc.startswith("bayer"):
        arr = (arr >> 8).astype(np.uint8)
    if enc in _AS_IS:
        return np.ascontiguousarray(arr)  # a view unless rows are padded
    out = _convert(cv2, np.ascontiguousarray(arr), getattr(cv2, _COLOR_CODES[enc]), enc)
    if out.dtype == np.uint16:  # 16-bit Bayer demosaics to 16-bit BGR
        out = (out >> 8).astype(np.uint8)
    return out


def check_image(msg: Image) -> None:
    """Raise ImageError if to_bgr would refuse `msg`'s encoding or geometry, without converting.

    Only header fields and the buffer length are looked at (no pixel is touched), so a
    subscription callback can afford it before buffering a frame for later.
    """
    _checked_view(msg, native=False)


def _checked_view(msg: Image, native: bool = True) -> tuple[str, np.ndarray]:
    """(encoding, validated view of the pixels) for to_bgr; nv12/nv21 give the (h*3/2, w) planes."""
    enc = msg.encoding
    if enc not in ENCODINGS and enc not in _NV and isinstance(enc, str) and enc.lower() in BGR_ENCODINGS:
        enc = enc.lower()  # "BGR8", "YUYV" from loose drivers
    if enc in _NV:
        h, w = int(msg.height), int(msg.width)
        _check_size(w, h)
        if w % 2 or h % 2:
            raise ImageError(f"{enc} needs an even width and height, got {w}x{h}", "size")
        return enc, _rows(msg, h * 3 // 2, w, "step*height*3/2")  # Y rows then interleaved chroma rows
    if enc not in _AS_IS and enc not in _COLOR_CODES:
        if enc in ENCODINGS:
            raise ImageError(
                f"encoding {enc!r} cannot be shown as BGR (supported: {', '.join(BGR_ENCODINGS)})", "encoding"
            )
        raise ImageError(f"encoding {_short(enc)} unknown (supported: {', '.join(BGR_ENCODINGS)})", "encoding")
    if _COLOR_CODES.get(enc, "").startswith("COLOR_YUV2") and int(msg.width) % 2:
        raise ImageError(f"{enc} needs an even width, got {int(msg.width)}", "size")
    return enc, _view(msg, enc, native)


def _convert(cv2: Any, arr: np.ndarray, code: int, enc: str) -> np.ndarray:
    try:
        return cv2.cvtColor(arr, code)
    except cv2.error as err:
        raise ImageError(
            f"{enc} image {arr.shape} could not be converted: {str(err).strip()[-200:]}", "convert"
        ) from None


def _compressed_size(buf: np.ndarray) -> tuple[int, int] | None:
    """(width, height) a jpeg or png header declares, read without decoding; None if not found."""
    b = buf.data
    n = len(b)
    if n >= 24 and bytes(b[:8]) == b"\x89PNG\r\n\x1a\n":
        return int.from_bytes(b[16:20], "big"), int.from_bytes(b[20:24], "big")
    if n < 4 or b[0] != 0xFF or b[1] != 0xD8:
        return None
    i = 2
    while i + 4 <= n:
        if b[i] != 0xFF:
            return None
        marker = b[i + 1]
        if marker == 0xFF:
            i += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:
            i += 2
            continue
        if marker in _JPEG_SOF:
            if i + 9 > n:
                return None
            return (b[i + 7] << 8) | b[i + 8], (b[i + 5] << 8) | b[i + 6]
        i += 2 + ((b[i + 2] << 8) | b[i + 3])
    return None


def checked_jpeg(msg: CompressedImage) -> bytes:
    """The jpeg bytes of `msg`, to keep as they are (no full decode), after checking they are one.

    Checks the markers and declared size, then decodes at 1/8 scale (cheap: the DCT is scaled)
    so truncated or corrupt entropy data is refused too; ImageError names the problem.
    """
    fmt = msg.format if isinstance(msg.format, str) else ""
    buf = np.frombuffer(msg.data, dtype=np.uint8)
    if buf.size < 4 or buf[0] != 0xFF or buf[1] != 0xD8:
        raise ImageError(
            f"compressed image could not be decoded (format {_short(fmt)}, {buf.size} bytes): no jpeg start marker",
            "decode",
        )
    size = _compressed_size(buf)
    if size is None:
        raise ImageError(
            f"compressed image could not be decoded (format {_short(fmt)}, {buf.size} bytes): no jpeg frame header",
            "decode",
        )
    _check_size(*size)
    cv2 = _cv2()
    try:
        small = cv2.imdecode(buf, cv2.IMREAD_REDUCED_GRAYSCALE_8)
    except cv2.error:
        small = None
    if small is None:
        raise ImageError(f"compressed image could not be decoded (format {_short(fmt)}, {buf.size} bytes)", "decode")
    return buf.tobytes()


def _compressed_to_bgr(msg: CompressedImage) -> np.ndarray:
    fmt = msg.format if isinstance(msg.format, str) else ""
    buf = np.frombuffer(msg.data, dtype=np.uint8)
    low = fmt.lower()
    if low and not any(k in low for k in ("jpeg", "jpg", "png")):
        raise ImageError(f"compressed format {_short(fmt)} unsupported (jpeg or png)", "format")
    if buf.size == 0:
        raise ImageError(f"compressed image is empty (format {_short(fmt)}, 0 bytes)", "decode")
    size = _compressed_size(buf)
    if size is not None:
        _check_size(*size)
    cv2 = _cv2()
    try:
        img = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    except cv2.error:
        img = None
    if img is None or img.ndim != 3 or img.shape[2] != 3:
        raise ImageError(f"compressed image could not be decoded (format {_short(fmt)}, {buf.size} bytes)", "decode")
    if img.dtype != np.uint8:
        img = (img >> 8).astype(np.uint8)
    return img
