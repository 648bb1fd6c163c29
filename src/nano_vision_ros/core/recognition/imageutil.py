"""Images handed to the recognisers outside the camera stream (enrolment) -> BGR uint8.

Camera frames (sensor_msgs/Image in any encoding) become BGR in ``ros.image.to_bgr``, the one
message -> BGR conversion; this module only decodes what commands carry.
"""

from __future__ import annotations

import cv2
import numpy as np


def decode_image_bytes(data: bytes, max_bytes: int = 10_000_000) -> np.ndarray:
    """Encoded JPEG/PNG bytes -> BGR; ValueError says what is wrong (size checked before decoding)."""
    if not data:
        raise ValueError("image is empty")
    if len(data) > max_bytes:
        raise ValueError(f"image of {len(data)} bytes is larger than the limit of {max_bytes}")
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise ValueError(f"image does not decode as an image ({len(data)} bytes)")
    return img
