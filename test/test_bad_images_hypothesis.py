"""Property tests: to_bgr on arbitrary Image / CompressedImage fields either returns a BGR
frame of the declared size or raises ImageError (never another exception, never a read past
the buffer, which would show as a wrong shape or a crash)."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sensor_msgs.msg import CompressedImage, Image

from nano_vision_ros.ros import image as conv

ENCODINGS = sorted(conv.ENCODINGS) + ["nv12", "nv21", "BGR8", "YUYV", "", "bgr8 ", "jpeg", "bayer_xyzw8"]
U32 = 2**32 - 1
small = st.integers(0, 48)
side = st.one_of(small, small, small, st.integers(0, U32))

SETTINGS = settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def image_msgs(draw) -> Image:
    enc = draw(st.one_of(st.sampled_from(ENCODINGS), st.text(max_size=12)))
    w, h = draw(side), draw(side)
    dtype, ch = conv.ENCODINGS.get(enc, (np.dtype(np.uint8), 3))
    tight = w * ch * dtype.itemsize
    step = (
        draw(st.one_of(st.just(tight), st.integers(0, 4 * max(tight, 1)), st.integers(0, U32)))
        if tight <= U32
        else draw(st.integers(0, U32))
    )
    step = min(step, U32)
    expected = step * h * (3 // 2 if enc.startswith("nv") else 1)
    n = draw(st.one_of(st.just(min(expected, 200_000)), st.integers(0, 4096)))
    msg = Image(width=w, height=h, step=step, encoding=enc, is_bigendian=draw(st.integers(0, 1)))
    msg.data = (
        draw(st.binary(min_size=min(n, 200_000), max_size=min(n, 200_000))) if n < 4096 else bytes(min(n, 200_000))
    )
    return msg


@SETTINGS
@given(image_msgs())
def test_to_bgr_returns_the_declared_size_or_raises_image_error(msg):
    try:
        out = conv.to_bgr(msg)
    except conv.ImageError as err:
        assert str(err) and err.kind in {"encoding", "empty", "size", "step", "data", "convert"}
        assert len(str(err)) < 1000
        return
    assert out.dtype == np.uint8 and out.shape == (msg.height, msg.width, 3)
    assert msg.step * msg.height <= len(msg.data) or msg.encoding.startswith("nv")


def _real_jpeg() -> bytes:
    rng = np.random.default_rng(3)
    img = rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)
    return conv.numpy_to_compressed(img, "jpeg").data.tobytes()


JPEG = _real_jpeg()


@st.composite
def compressed_msgs(draw) -> CompressedImage:
    base = draw(
        st.sampled_from([JPEG, conv.numpy_to_compressed(np.zeros((8, 8, 3), np.uint8), "png").data.tobytes(), b""])
    )
    data = bytearray(base)
    for _ in range(draw(st.integers(0, 6))):  # flip, cut or extend bytes of a real image
        op = draw(st.sampled_from(["flip", "cut", "extend"]))
        if op == "flip" and data:
            i = draw(st.integers(0, len(data) - 1))
            data[i] = draw(st.integers(0, 255))
        elif op == "cut":
            data = data[: draw(st.integers(0, len(data)))]
        else:
            data += draw(st.binary(max_size=64))
    msg = CompressedImage(
        format=draw(st.sampled_from(["jpeg", "png", "bgr8; jpeg compressed bgr8", "", "h264", "x" * 300]))
    )
    msg.data = bytes(data)
    return msg


@SETTINGS
@given(compressed_msgs())
def test_to_bgr_on_mangled_compressed_images_returns_bgr_or_raises_image_error(msg):
    try:
        out = conv.to_bgr(msg)
    except conv.ImageError as err:
        assert err.kind in {"format", "decode", "size", "empty"} and len(str(err)) < 400
        return
    assert out.dtype == np.uint8 and out.ndim == 3 and out.shape[2] == 3
