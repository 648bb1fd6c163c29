"""The one interface every inference backend implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class TensorInfo:
    """Name, shape (None or a string for dynamic axes) and numpy dtype of a model input/output."""

    name: str
    shape: tuple[int | str | None, ...]
    dtype: np.dtype = field(default_factory=lambda: np.dtype(np.float32))


@dataclass(frozen=True)
class Transform:
    """Source -> model input: ``x_in = x_src * scale_x + pad_x`` (same for y)."""

    scale_x: float
    scale_y: float
    pad_x: float
    pad_y: float
    src_w: int
    src_h: int

    def to_source(self, boxes: np.ndarray) -> np.ndarray:
        """Map (N, 4) x1, y1, x2, y2 boxes from model-input pixels to source pixels, clipped."""
        out = np.empty_like(boxes, dtype=np.float32)
        out[:, 0::2] = (boxes[:, 0::2] - self.pad_x) / self.scale_x
        out[:, 1::2] = (boxes[:, 1::2] - self.pad_y) / self.scale_y
        np.clip(out[:, 0::2], 0, self.src_w, out=out[:, 0::2])
        np.clip(out[:, 1::2], 0, self.src_h, out=out[:, 1::2])
        return out


def letterbox_transform(src_w: int, src_h: int, dst_w: int, dst_h: int, letterbox: bool) -> Transform:
    """Scale (and centre padding, for letterbox) that fits a src image into the model input."""
    if not letterbox:
        return Transform(dst_w / src_w, dst_h / src_h, 0.0, 0.0, src_w, src_h)
    r = min(dst_w / src_w, dst_h / src_h)
    new_w, new_h = int(round(src_w * r)), int(round(src_h * r))
    return Transform(new_w / src_w, new_h / src_h, (dst_w - new_w) // 2, (dst_h - new_h) // 2, src_w, src_h)


class InferenceBackend(ABC):
    """Runs one model. Created by ``create_backend``; loads at construction, frees in ``close``."""

    #: registry name, e.g. "onnxruntime", "tensorrt", "opencv"
    name: str = ""

    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    #: model metadata (e.g. class names) when the format carries it
    metadata: dict[str, str]

    #: True where the backend can pre-process a frame on the GPU straight into its input buffer
    supports_device_preprocess: bool = False

    def enable_device_preprocess(self, **params: object) -> None:
        """Pre-process on the device (``Preprocessor`` parameters: width, height, resize,
        channel_order, mean, std, pad_value); then call ``infer_image``."""
        raise NotImplementedError(f"{self.name} has no device pre-processing")

    def infer_image(self, image_bgr: np.ndarray, extra_feeds: dict[str, np.ndarray] | None = None):
        """Frame in, (outputs, Transform) out, pre-processing on the device."""
        raise NotImplementedError(f"{self.name} has no device pre-processing")

    @abstractmethod
    def infer(self, feeds: dict[str, np.ndarray] | np.ndarray) -> list[np.ndarray]:
        """Run once; a bare array feeds the first input. Returns outputs in ``self.outputs`` order."""

    def warmup(self, runs: int = 2) -> None:
        """Run on zeros so the first real frame does not pay for lazy initialisation."""
        feeds = {}
        for t in self.inputs:
            shape = tuple(d if isinstance(d, int) and d > 0 else 1 for d in t.shape)
            feeds[t.name] = np.zeros(shape, dtype=t.dtype)
        for _ in range(runs):
            self.infer(feeds)

    def close(self) -> None:
        """Free the model and any device memory."""

    def __enter__(self) -> InferenceBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
