"""Inference backends as plugins: one module each, imported only when asked for.

``create_backend(path)`` picks the backend from the file (``.onnx`` -> onnxruntime,
``.engine``/``.trt`` -> tensorrt) unless ``backend`` names one. A missing runtime raises
``RuntimeMissingError`` with what to install; a missing or corrupt model raises ``ModelError``.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

from nano_vision_ros.core.errors import ConfigError, ModelError
from nano_vision_ros.core.inference.base import InferenceBackend, TensorInfo

#: backend name -> "module:Class" (relative to this package)
BACKENDS: dict[str, str] = {
    "onnxruntime": "onnxruntime_backend:OnnxRuntimeBackend",
    "tensorrt": "tensorrt_backend:TensorRTBackend",
    "opencv": "opencv_backend:OpenCVBackend",
}

_BY_SUFFIX = {".onnx": "onnxruntime", ".engine": "tensorrt", ".trt": "tensorrt", ".plan": "tensorrt"}


def backend_for(path: str, backend: str = "auto") -> str:
    if backend != "auto":
        if backend not in BACKENDS:
            raise ConfigError(
                f"unknown inference backend {backend!r}; choose one of auto, {', '.join(BACKENDS)}", "backend"
            )
        return backend
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in _BY_SUFFIX:
        raise ConfigError(
            f"cannot tell the backend from model file {path!r} (suffix {suffix!r}); set backend", "backend"
        )
    return _BY_SUFFIX[suffix]


def create_backend(path: str, backend: str = "auto", **options: Any) -> InferenceBackend:
    """Load `path` with the chosen backend. Options are backend-specific (device, precision…)."""
    if not path:
        raise ModelError("no model file given")
    if not os.path.isfile(path):
        raise ModelError(f"model file not found: {path}")
    name = backend_for(path, backend)
    module_name, cls_name = BACKENDS[name].split(":")
    module = importlib.import_module(f"{__name__}.{module_name}")
    cls = getattr(module, cls_name)
    return cls(path, **options)


__all__ = ["BACKENDS", "InferenceBackend", "TensorInfo", "backend_for", "create_backend"]
