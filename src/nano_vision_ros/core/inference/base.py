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

    def __enter__(self) -> "InferenceBackend":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
