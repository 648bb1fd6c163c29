"""numpy <-> sensor_msgs/Image and CompressedImage: exact round trips, views, padded rows, errors."""

from __future__ import annotations

import numpy as np
import pytest
from sensor_msgs.msg import Image

from nano_vision_ros.ros import image as conv

rng = np.random.default_rng(7)

CASES = [
    ("bgr8", np.uint8, 3),
    ("rgb8", np.uint8, 3),
    ("bgra8", np.uint8, 4),
    ("rgba8", np.uint8, 4),
    ("mono8", np.uint8, 1),
    ("mono16", np.uint16, 1),
    ("16UC1", np.uint16, 1),
    ("32FC1", np.float32, 1),
    ("64FC1", np.float64, 1),
    ("8UC3", np.uint8, 3),
    ("16SC1", np.int16, 1),
    ("32SC1", np.int32, 1),
]


def _random(dtype, channels, h=37, w=53):
    shape = (h, w) if channels == 1 else (h, w, channels)
    if np.issubdtype(dtype, np.floating):
        return rng.standard_normal(shape).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, size=shape, dtype=dtype, endpoint=True)


@pytest.mark.parametrize("encoding,dtype,channels", CASES)
def test_round_trip_is_exact(encoding, dtype, channels):
    arr = _random(dtype, channels)
    msg = conv.numpy_to_imgmsg(arr, encoding)
    assert (msg.height, msg.width, msg.encoding) == (arr.shape[0], arr.shape[1], encoding)
    assert msg.step == arr.shape[1] * channels * np.dtype(dtype).itemsize
    back = conv.imgmsg_to_numpy(msg)
    assert back.dtype == np.dtype(dtype) and back.shape == arr.shape
    assert np.array_equal(back, arr)


def test_round_trip_through_serialization():
    """The bytes that cross DDS decode to the same pixels (serialize/deserialize like rclpy does)."""
    from rclpy.serialization import deserialize_message, serialize_message

    arr = _random(np.uint16, 1, 480, 640)
    msg = conv.numpy_to_imgmsg(arr, "mono16")
    back = conv.imgmsg_to_numpy(deserialize_message(serialize_message(msg), Image))
    assert np.array_equal(back, arr)


def test_to_numpy_views_the_message_buffer():
    arr = _random(np.uint8, 3, 4, 5)
    msg = conv.numpy_to_imgmsg(arr, "bgr8")
    view = conv.imgmsg_to_numpy(msg)
    msg.data[0] = (int(msg.data[0]) + 1) % 256  # change the message: the view must see it
    assert view[0, 0, 0] == msg.data[0]


def test_padded_rows_are_honoured():
    h, w, step = 3, 4, 16  # mono8 with 12 padding bytes per row
    raw = np.arange(h * step, dtype=np.uint8).reshape(h, step)
    msg = Image(height=h, width=w, encoding="mono8", step=step)
    msg.data = raw.tobytes()
    out = conv.imgmsg_to_numpy(msg)
    assert np.array_equal(out, raw[:, :w])


def test_big_endian_data_is_converted():
    arr = _random(np.uint16, 1, 5, 6)
    msg = Image(height=5, width=6, encoding="mono16", step=12, is_bigendian=1)
    msg.data = arr.astype(">u2").tobytes()
    assert np.array_equal(conv.imgmsg_to_numpy(msg), arr)


@pytest.mark.parametrize(
    "mutate,needle",
    [
        (lambda m: setattr(m, "encoding", "weird9"), "unsupported image encoding"),
        (lambda m: setattr(m, "step", 2), "step"),
        (lambda m: setattr(m, "height", 100), "data holds"),
        (lambda m: setattr(m, "width", 0), "empty image"),
    ],
)
def test_bad_messages_name_the_problem(mutate, needle):
    msg = conv.numpy_to_imgmsg(_random(np.uint8, 3, 4, 5), "bgr8")
    mutate(msg)
    with pytest.raises(conv.ImageEncodingError, match=needle):
        conv.imgmsg_to_numpy(msg)


def test_encoding_mismatch_is_refused():
    with pytest.raises(conv.ImageEncodingError, match="3 channel"):
        conv.numpy_to_imgmsg(np.zeros((4, 4), np.uint8), "bgr8")
    with pytest.raises(conv.ImageEncodingError, match="dtype"):
        conv.numpy_to_imgmsg(np.zeros((4, 4), np.float32), "mono8")


def test_png_round_trip_is_exact_including_16_bit():
    for arr in (_random(np.uint8, 3, 40, 60), _random(np.uint16, 1, 40, 60)):
        msg = conv.numpy_to_compressed(arr, "png", encoding="bgr8" if arr.ndim == 3 else "mono16")
        assert "png" in msg.format
        assert np.array_equal(conv.compressed_to_numpy(msg), arr)


def test_jpeg_round_trip_is_close(samples):
    import cv2

    img = cv2.imread(str(samples / "dog.jpg"))
    msg = conv.numpy_to_compressed(img, "jpeg", quality=95)
    assert msg.format.endswith("jpeg compressed bgr8")
    back = conv.compressed_to_numpy(msg)
    assert back.shape == img.shape
    assert np.abs(back.astype(int) - img.astype(int)).mean() < 3.0


def test_corrupt_compressed_image_is_a_clear_error():
    from sensor_msgs.msg import CompressedImage

    msg = CompressedImage(format="jpeg")
    msg.data = b"\xff\xd8 not really a jpeg"
    with pytest.raises(conv.ImageEncodingError, match="could not decode"):
        conv.compressed_to_numpy(msg)


def test_converter_falls_back_to_own_without_cv_bridge():
    c = conv.converter()
    arr = _random(np.uint8, 3, 8, 8)
    assert np.array_equal(c.to_numpy(c.to_msg(arr, "bgr8")), arr)
    assert c.name in ("own", "cv_bridge")


# --- to_bgr: the one image message -> BGR conversion --------------------------------------------


def _photo(samples, name="astronaut.png", size=(320, 240)):
    """A real colour photo, even-sized (4:2:2 / 4:2:0 / Bayer need even sides)."""
    import cv2

    return cv2.resize(cv2.imread(str(samples / name)), size, interpolation=cv2.INTER_AREA)


def _raw_msg(raw: np.ndarray, encoding: str, width: int, height: int) -> Image:
    raw = np.ascontiguousarray(raw)
    msg = Image(height=height, width=width, encoding=encoding, step=raw.nbytes // raw.shape[0])
    msg.data = raw.tobytes()
    return msg


def _mad(a, b) -> float:
    return float(np.abs(a.astype(int) - b.astype(int)).mean())


def _mosaic(bgr: np.ndarray, pattern: str) -> np.ndarray:
    """Sample a BGR image through a Bayer filter; `pattern` names the 2x2 cell row by row (e.g. 'rggb')."""
    idx = {"b": 0, "g": 1, "r": 2}
    out = np.empty(bgr.shape[:2], np.uint8)
    for k, (dy, dx) in enumerate(((0, 0), (0, 1), (1, 0), (1, 1))):
        out[dy::2, dx::2] = bgr[dy::2, dx::2, idx[pattern[k]]]
    return out


def test_to_bgr_bgr8_is_a_view_of_the_message_buffer(samples):
    img = _photo(samples)
    msg = conv.numpy_to_imgmsg(img, "bgr8")
    out = conv.to_bgr(msg)
    assert out.shape == img.shape and out.dtype == np.uint8 and np.array_equal(out, img)
    assert np.shares_memory(out, np.frombuffer(msg.data, np.uint8))


def test_to_bgr_padded_rows_give_the_pixels_contiguously(samples):
    img = _photo(samples)
    h, w = img.shape[:2]
    padded = np.zeros((h, w * 3 + 64), np.uint8)
    padded[:, : w * 3] = img.reshape(h, w * 3)
    out = conv.to_bgr(_raw_msg(padded, "bgr8", w, h))
    assert out.flags.c_contiguous and np.array_equal(out, img)


@pytest.mark.parametrize(
    "encoding,code",
    [("rgb8", "COLOR_BGR2RGB"), ("bgra8", "COLOR_BGR2BGRA"), ("rgba8", "COLOR_BGR2RGBA"), ("8UC3", None)],
)
def test_to_bgr_exact_for_lossless_colour_encodings(samples, encoding, code):
    import cv2

    img = _photo(samples)
    raw = img if code is None else cv2.cvtColor(img, getattr(cv2, code))
    out = conv.to_bgr(conv.numpy_to_imgmsg(raw, encoding))
    assert np.array_equal(out, img)


def test_to_bgr_mono8_and_mono16_scaled(samples):
    import cv2

    grey = cv2.cvtColor(_photo(samples), cv2.COLOR_BGR2GRAY)
    for enc in ("mono8", "8UC1"):
        out = conv.to_bgr(conv.numpy_to_imgmsg(grey, enc))
        assert out.shape == grey.shape + (3,) and all(np.array_equal(out[..., c], grey) for c in range(3))
    deep = grey.astype(np.uint16) * 257 + 100  # full 16-bit range: v16 >> 8 is the 8-bit value
    for enc in ("mono16", "16UC1"):
        out = conv.to_bgr(conv.numpy_to_imgmsg(deep, enc))
        assert np.array_equal(out[..., 1], (deep >> 8).astype(np.uint8))
    big = Image(height=deep.shape[0], width=deep.shape[1], encoding="mono16", step=deep.shape[1] * 2, is_bigendian=1)
    big.data = deep.astype(">u2").tobytes()
    assert np.array_equal(conv.to_bgr(big)[..., 2], (deep >> 8).astype(np.uint8))


@pytest.mark.parametrize(
    "encoding,to_code,wrong",
    [
        ("yuyv", "COLOR_BGR2YUV_YUY2", "uyvy"),
        ("yuv422_yuy2", "COLOR_BGR2YUV_YUY2", "yuv422"),
        ("uyvy", "COLOR_BGR2YUV_UYVY", "yuyv"),
        ("yuv422", "COLOR_BGR2YUV_UYVY", "yuv422_yuy2"),  # ROS 'yuv422' is UYVY byte order
    ],
)
def test_to_bgr_yuv422_matches_opencv_and_the_photo(samples, encoding, to_code, wrong):
    import cv2

    img = _photo(samples)
    h, w = img.shape[:2]
    packed = cv2.cvtColor(img, getattr(cv2, to_code))  # (h, w, 2): what usb_cam publishes
    out = conv.to_bgr(_raw_msg(packed.reshape(h, w * 2), encoding, w, h))
    back_code = "COLOR_YUV2BGR_YUY2" if "YUY2" in to_code else "COLOR_YUV2BGR_UYVY"
    assert np.array_equal(out, cv2.cvtColor(packed, getattr(cv2, back_code)))
    assert _mad(out, img) < 6.0  # chroma halved horizontally: small loss on a photo
    assert _mad(conv.to_bgr(_raw_msg(packed.reshape(h, w * 2), wrong, w, h)), img) > 3 * _mad(out, img)


@pytest.mark.parametrize("encoding", ["nv12", "nv21"])
def test_to_bgr_nv12_nv21_against_the_photo(samples, encoding):
    import cv2

    img = _photo(samples)
    h, w = img.shape[:2]
    i420 = cv2.cvtColor(img, cv2.COLOR_BGR2YUV_I420)  # Y plane, then U, then V planes
    y = i420[:h]
    u = i420[h : h + h // 4].reshape(h // 2, w // 2)
    v = i420[h + h // 4 :].reshape(h // 2, w // 2)
    uv = np.stack((u, v) if encoding == "nv12" else (v, u), axis=-1).reshape(h // 2, w)
    planes = np.vstack((y, uv))
    out = conv.to_bgr(_raw_msg(planes, encoding, w, h))
    assert out.shape == img.shape
    assert np.array_equal(out, cv2.cvtColor(planes, getattr(cv2, f"COLOR_YUV2BGR_{encoding.upper()}")))
    assert _mad(out, img) < 6.0
    # a padded stride (step > width) is honoured for both planes
    stride = np.zeros((planes.shape[0], w + 32), np.uint8)
    stride[:, :w] = planes
    padded = _raw_msg(stride, encoding, w, h)
    assert np.array_equal(conv.to_bgr(padded), out)


@pytest.mark.parametrize("pattern", ["rggb", "bggr", "gbrg", "grbg"])
def test_to_bgr_bayer_demosaics_the_right_pattern(samples, pattern):
    img = _photo(samples)
    h, w = img.shape[:2]
    raw = _mosaic(img, pattern)
    out = conv.to_bgr(_raw_msg(raw, f"bayer_{pattern}8", w, h))
    assert out.shape == img.shape
    good = _mad(out[2:-2, 2:-2], img[2:-2, 2:-2])
    assert good < 12.0  # bilinear demosaic of a photo
    other = {"rggb": "bggr", "bggr": "rggb", "gbrg": "grbg", "grbg": "gbrg"}[pattern]  # red <-> blue
    swapped = conv.to_bgr(_raw_msg(raw, f"bayer_{other}8", w, h))
    assert _mad(swapped[2:-2, 2:-2], img[2:-2, 2:-2]) > 1.5 * good
    deep = raw.astype(np.uint16) << 8
    out16 = conv.to_bgr(_raw_msg(deep, f"bayer_{pattern}16", w, h))
    assert out16.dtype == np.uint8 and _mad(out16, out) < 1.0


def test_to_bgr_compressed_jpeg_and_png(samples):
    img = _photo(samples)
    assert _mad(conv.to_bgr(conv.numpy_to_compressed(img, "jpeg", 95)), img) < 3.0
    assert np.array_equal(conv.to_bgr(conv.numpy_to_compressed(img, "png")), img)
    grey = img[..., 1].copy()
    out = conv.to_bgr(conv.numpy_to_compressed(grey, "png", encoding="mono8"))
    assert out.shape == img.shape and np.array_equal(out[..., 0], grey)


def _png_header(w: int, h: int) -> bytes:
    import struct
    import zlib

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))


def _jpeg_with_size(samples, w: int, h: int) -> bytes:
    """A real jpeg whose SOF marker is rewritten to declare w x h."""
    data = bytearray(conv.numpy_to_compressed(_photo(samples), "jpeg").data.tobytes())
    i = data.index(b"\xff\xc0")
    data[i + 5 : i + 9] = h.to_bytes(2, "big") + w.to_bytes(2, "big")
    return bytes(data)


@pytest.mark.parametrize(
    "mutate,kind,needle",
    [
        (lambda m: setattr(m, "encoding", "weird9"), "encoding", "encoding 'weird9' unknown"),
        (lambda m: setattr(m, "encoding", "32FC1"), "encoding", "cannot be shown as BGR"),
        (lambda m: setattr(m, "width", 0), "empty", "zero width or height"),
        (lambda m: setattr(m, "height", 0), "empty", "zero width or height"),
        (lambda m: setattr(m, "step", 10), "step", "step 10 < row of 15 bytes"),
        (lambda m: setattr(m, "height", 100), "data", "data holds 60 bytes < step\\*height 1500"),
        (
            lambda m: (setattr(m, "width", 100000), setattr(m, "height", 100000)),
            "size",
            "declared size 100000x100000 over the limit",
        ),
        (lambda m: setattr(m, "data", b""), "data", "data holds 0 bytes"),
        (lambda m: (setattr(m, "encoding", "yuyv"), setattr(m, "width", 5)), "size", "even width"),
        (lambda m: (setattr(m, "encoding", "nv12"), setattr(m, "width", 5)), "size", "even width and height"),
    ],
)
def test_to_bgr_bad_messages_name_the_problem(mutate, kind, needle):
    msg = conv.numpy_to_imgmsg(_random(np.uint8, 3, 4, 5), "bgr8")
    mutate(msg)
    with pytest.raises(conv.ImageError, match=needle) as info:
        conv.to_bgr(msg)
    assert info.value.kind == kind
    assert isinstance(info.value, ValueError) and conv.ImageError is conv.ImageEncodingError


@pytest.mark.parametrize(
    "fmt,data,kind,needle",
    [
        (
            "jpeg",
            b"\xff\xd8 not really a jpeg",
            "decode",
            "compressed image could not be decoded \\(format 'jpeg', 20 bytes\\)",
        ),
        ("png", b"", "decode", "empty"),
        ("h264", b"\x00\x00\x00\x01", "format", "compressed format 'h264' unsupported"),
        ("png", _png_header(100000, 100000), "size", "declared size 100000x100000 over the limit"),
    ],
)
def test_to_bgr_bad_compressed_images_name_the_problem(fmt, data, kind, needle):
    from sensor_msgs.msg import CompressedImage

    msg = CompressedImage(format=fmt)
    msg.data = data
    with pytest.raises(conv.ImageError, match=needle) as info:
        conv.to_bgr(msg)
    assert info.value.kind == kind


def test_to_bgr_refuses_a_jpeg_declaring_a_huge_size_before_decoding(samples):
    from sensor_msgs.msg import CompressedImage

    msg = CompressedImage(format="jpeg")
    msg.data = _jpeg_with_size(samples, 60000, 60000)
    with pytest.raises(conv.ImageError, match="declared size 60000x60000 over the limit"):
        conv.to_bgr(msg)
    msg.data = _jpeg_with_size(samples, 320, 240)  # the same bytes with the true size decode
    assert conv.to_bgr(msg).shape == (240, 320, 3)
