"""OpenCV DNN backend: a fallback where ONNX Runtime is missing (e.g. a JetPack OpenCV built with CUDA).

``cv2.dnn.readNetFromONNX`` has no API to list input shapes, so the I/O description and the
metadata are read from the ONNX file with the ``onnx`` package (graph only, no weights copied).
OpenCV 4.x and 5.x both load the shipped NanoDet-m and CenterNet models.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from nano_vision_ros.core.errors import ModelError, RuntimeMissingError
from nano_vision_ros.core.inference.base import InferenceBackend, TensorInfo

log = logging.getLogger(__name__)

_DEVICES = {
    "auto": ("DNN_BACKEND_OPENCV", "DNN_TARGET_CPU"),
    "cpu": ("DNN_BACKEND_OPENCV", "DNN_TARGET_CPU"),
    "cuda": ("DNN_BACKEND_CUDA", "DNN_TARGET_CUDA"),
    "cuda_fp16": ("DNN_BACKEND_CUDA", "DNN_TARGET_CUDA_FP16"),
    "opencl": ("DNN_BACKEND_OPENCV", "DNN_TARGET_OPENCL"),
}


def onnx_io(path: str) -> tuple[list[TensorInfo], list[TensorInfo], dict[str, str]]:
    """Inputs (minus initializers), outputs and metadata_props of an ONNX file."""
    try:
        import onnx
        from onnx import helper
    except ImportError as err:
        raise RuntimeMissingError(
            "the OpenCV backend reads model I/O with the 'onnx' package: pip install onnx"
        ) from err
    try:
        model = onnx.load(path, load_external_data=False)
    except Exception as err:  # DecodeError and friends
        raise ModelError(f"not a valid ONNX file: {path}: {str(err)[:200]}") from err
    inits = {i.name for i in model.graph.initializer}

    def info(v: Any) -> TensorInfo:
        t = v.type.tensor_type
        dims = tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in t.shape.dim)
        return TensorInfo(v.name, dims, np.dtype(helper.tensor_dtype_to_np_dtype(t.elem_type)))

    ins = [info(v) for v in model.graph.input if v.name not in inits]
    outs = [info(v) for v in model.graph.output]
    meta = {p.key: p.value for p in model.metadata_props}
    return ins, outs, meta


class OpenCVBackend(InferenceBackend):
    name = "opencv"

    def __init__(self, path: str, device: str = "auto", **_: Any) -> None:
        try:
            import cv2
        except ImportError as err:
            raise RuntimeMissingError("OpenCV is not installed: pip install opencv-python-headless") from err
        if device not in _DEVICES:
            raise ModelError(f"unknown opencv device {device!r}; use {', '.join(_DEVICES)}")
        self.inputs, self.outputs, self.metadata = onnx_io(path)
        try:
            self.net = cv2.dnn.readNetFromONNX(path)
        except cv2.error as err:
            raise ModelError(f"OpenCV DNN could not load {path}: {str(err).strip().splitlines()[-1][:300]}") from err
        be, tgt = _DEVICES[device]
        if device in ("auto", "cpu"):
            pass  # OpenCV's defaults; 5.x's new graph engine warns on any target set
        elif hasattr(cv2.dnn, be) and hasattr(cv2.dnn, tgt):
            self.net.setPreferableBackend(getattr(cv2.dnn, be))
            self.net.setPreferableTarget(getattr(cv2.dnn, tgt))
        elif device != "auto":
            raise RuntimeMissingError(f"this OpenCV build has no {be}/{tgt}")
        self._out_names = [o.name for o in self.outputs]
        self._cv2 = cv2

    def infer(self, feeds: dict[str, np.ndarray] | np.ndarray) -> list[np.ndarray]:
        if not isinstance(feeds, dict):
            feeds = {self.inputs[0].name: feeds}
        for name, arr in feeds.items():
            self.net.setInput(arr, name)
        outs = self.net.forward(self._out_names)
        return list(outs)

    def close(self) -> None:
        self.net = None  # type: ignore[assignment]
