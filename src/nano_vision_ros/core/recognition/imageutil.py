"""Images handed to the recognisers outside the camera stream (enrolment) -> BGR uint8.

Camera frames (sensor_msgs/Image in any encoding) become BGR in ``ros.image.to_bgr``, the one
message -> BGR conversion; this module only decodes what commands carry.
"""
from __future__ import annotations

import base64
import binascii

import cv2
import numpy as np


def decode_b64_image(text: str, max_bytes: int = 10_000_000) -> np.ndarray:
    """A base64 (optionally data-URL) JPEG/PNG -> BGR; ValueError says what is wrong."""
    if not isinstance(text, str) or not text:
        raise ValueError("image_b64 must be a non-empty base64 string")
    if text.startswith("data:"):
        text = text.split(",", 1)[-1]
    if len(text) > max_bytes * 4 // 3 + 4:
        raise ValueError(f"image_b64 is larger than {max_bytes} bytes")
    try:
        data = base64.b64decode(text, validate=False)
    except (binascii.Error, ValueError) as err:
        raise ValueError(f"image_b64 is not valid base64: {err}") from None
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise ValueError(f"image_b64 does not decode as an image ({len(data)} bytes)")
    return img
