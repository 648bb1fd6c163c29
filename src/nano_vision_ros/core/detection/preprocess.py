"""Image -> input tensor with preallocated buffers, and the transform back to source pixels.

One ``Preprocessor`` per model: the letterbox canvas and the output tensor are allocated once;
per frame the only allocation is OpenCV's resized image. Normalisation is ``(x - mean) / std``
per channel in the model's channel order (``mean=0, std=255`` gives YOLO's 0..1 input).
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

# the transform lives with the backends (GPU pre-processing returns it too); detection imports inference
from nano_vision_ros.core.inference.base import Transform, letterbox_transform

__all__ = ["Preprocessor", "Transform", "letterbox_transform"]


class Preprocessor:
    """BGR uint8 frame -> float tensor (NCHW or NHWC) into one preallocated buffer."""

    def __init__(
        self,
        width: int,
        height: int,
        layout: str = "nchw",
        resize: str = "letterbox",
        channel_order: str = "rgb",
        mean: Sequence[float] = (0.0, 0.0, 0.0),
        std: Sequence[float] = (255.0, 255.0, 255.0),
        pad_value: int = 114,
        dtype: np.dtype | type = np.float32,
    ) -> None:
        if layout not in ("nchw", "nhwc"):
            raise ValueError(f"layout must be nchw or nhwc, not {layout!r}")
        if resize not in ("letterbox", "resize"):
            raise ValueError(f"resize must be letterbox or resize, not {resize!r}")
        if channel_order not in ("rgb", "bgr"):
            raise ValueError(f"channel_order must be rgb or bgr, not {channel_order!r}")
        self.width, self.height = int(width), int(height)
        self.layout, self.resize, self.channel_order = layout, resize, channel_order
        self.pad_value = int(pad_value)
        self.dtype = np.dtype(dtype)
        std_a = np.asarray(std, np.float32).reshape(3)
        if np.any(std_a == 0):
            raise ValueError("std must not contain 0")
        self._scale = (1.0 / std_a).astype(np.float32)
        self._bias = (-np.asarray(mean, np.float32).reshape(3) / std_a).astype(np.float32)
        self._canvas = np.full((self.height, self.width, 3), self.pad_value, np.uint8)
        shape = (1, 3, self.height, self.width) if layout == "nchw" else (1, self.height, self.width, 3)
        self.tensor = np.empty(shape, self.dtype)
        self._work = np.empty((self.height, self.width), np.float32)
        self._rgb = np.empty((self.height, self.width, 3), np.uint8)
        self._identity = bool(np.all(self._scale == 1.0) and np.all(self._bias == 0.0))
        self._last_src: tuple[int, int] | None = None
        self._transform: Transform | None = None
        # model channel c comes from BGR channel _src_ch[c]
        self._src_ch = (2, 1, 0) if channel_order == "rgb" else (0, 1, 2)

    def __call__(self, image_bgr: np.ndarray) -> tuple[np.ndarray, Transform]:
        if image_bgr.ndim != 3 or image_bgr.shape[2] != 3 or image_bgr.dtype != np.uint8:
            raise ValueError(f"expected an HxWx3 uint8 BGR image, got {image_bgr.shape} {image_bgr.dtype}")
        h, w = image_bgr.shape[:2]
        if self._last_src != (w, h):
            self._transform = letterbox_transform(w, h, self.width, self.height, self.resize == "letterbox")
            self._canvas[:] = self.pad_value  # padding bands change with the source size
            self._last_src = (w, h)
        t = self._transform
        assert t is not None
        nw, nh = int(round(w * t.scale_x)), int(round(h * t.scale_y))
        px, py = int(t.pad_x), int(t.pad_y)
        roi = self._canvas[py : py + nh, px : px + nw]
        if (nw, nh) == (w, h):
            roi[:] = image_bgr
        else:
            roi[:] = cv2.resize(image_bgr, (nw, nh), interpolation=cv2.INTER_LINEAR)
        self._normalise()
        return self.tensor, t

    def _normalise(self) -> None:
        c = self._canvas
        if self.layout == "nchw":
            for i, src in enumerate(self._src_ch):
                out = self.tensor[0, i]
                if self.dtype == np.float32:
                    np.multiply(c[:, :, src], self._scale[i], out=out, casting="unsafe")
                    out += self._bias[i]
                else:
                    np.multiply(c[:, :, src], self._scale[i], out=self._work, casting="unsafe")
                    self._work += self._bias[i]
                    out[:] = self._work
        else:
            img: np.ndarray = c
            if self.channel_order == "rgb":
                img = cv2.cvtColor(c, cv2.COLOR_BGR2RGB, dst=self._rgb)
            if self._identity:
                np.copyto(self.tensor[0], img, casting="unsafe")
            else:
                np.multiply(img, self._scale, out=self.tensor[0], casting="unsafe")
                self.tensor[0] += self._bias
