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


@pytest.mark.parametrize("mutate,needle", [
    (lambda m: setattr(m, "encoding", "weird9"), "unsupported image encoding"),
    (lambda m: setattr(m, "step", 2), "step"),
    (lambda m: setattr(m, "height", 100), "data holds"),
    (lambda m: setattr(m, "width", 0), "empty image"),
])
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
