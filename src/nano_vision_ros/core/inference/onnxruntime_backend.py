"""ONNX Runtime backend: CPU everywhere, CUDA / TensorRT execution providers where the build has them."""
from __future__ import annotations

import logging
from typing import Any

import numpy as np

from nano_vision_ros.core.errors import ModelError, RuntimeMissingError
from nano_vision_ros.core.inference.base import InferenceBackend, TensorInfo

log = logging.getLogger(__name__)

_ORT_TYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(uint8)": np.uint8,
    "tensor(int8)": np.int8,
    "tensor(int32)": np.int32,
    "tensor(int64)": np.int64,
    "tensor(bool)": np.bool_,
}

_PROVIDERS = {
    "cpu": ["CPUExecutionProvider"],
    "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
}


class OnnxRuntimeBackend(InferenceBackend):
    name = "onnxruntime"

    def __init__(self, path: str, device: str = "auto", threads: int = 0, precision: str = "fp16",
                 cache_dir: str | None = None, **_: Any) -> None:
        try:
            import onnxruntime as ort
        except ImportError as err:
            raise RuntimeMissingError("ONNX Runtime is not installed: pip install onnxruntime (or onnxruntime-gpu)") from err
        available = ort.get_available_providers()
        if device == "auto":
            wanted = [p for p in _PROVIDERS["tensorrt"] if p in available]
        elif device in _PROVIDERS:
            wanted = [p for p in _PROVIDERS[device] if p in available]
            if _PROVIDERS[device][0] not in available:
                raise RuntimeMissingError(
                    f"ONNX Runtime here has no {_PROVIDERS[device][0]} (available: {', '.join(available)})")
        else:
            raise ModelError(f"unknown onnxruntime device {device!r}; use auto, cpu, cuda or tensorrt")
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = int(threads)
        opts.log_severity_level = 3
        providers: list[Any] = list(wanted)
        if "TensorrtExecutionProvider" in providers:
            # the TensorRT EP builds an engine when the session is created (minutes on a Nano):
            # keep it in the same cache folder as the native backend's engines
            from nano_vision_ros.core.inference.engine_cache import default_cache_dir

            cache = str(cache_dir or default_cache_dir())
            providers[providers.index("TensorrtExecutionProvider")] = ("TensorrtExecutionProvider", {
                "trt_engine_cache_enable": True, "trt_engine_cache_path": cache,
                "trt_fp16_enable": precision in ("fp16", "int8")})
            log.info("ONNX Runtime TensorRT provider: engines cached in %s (first start builds one)", cache)
        try:
            self.session = ort.InferenceSession(path, sess_options=opts, providers=providers)
        except Exception as err:  # onnxruntime raises its own Fail/InvalidProtobuf/NoSuchFile types
            raise ModelError(f"ONNX Runtime could not load {path}: {str(err).splitlines()[0][:300]}") from err
        self.providers = self.session.get_providers()
        self.inputs = [TensorInfo(i.name, tuple(i.shape), np.dtype(_ORT_TYPES.get(i.type, np.float32)))
                       for i in self.session.get_inputs()]
        self.outputs = [TensorInfo(o.name, tuple(o.shape), np.dtype(_ORT_TYPES.get(o.type, np.float32)))
                        for o in self.session.get_outputs()]
        meta = self.session.get_modelmeta()
        self.metadata = dict(meta.custom_metadata_map or {})
        self._output_names = [o.name for o in self.outputs]

    def infer(self, feeds: dict[str, np.ndarray] | np.ndarray) -> list[np.ndarray]:
        if not isinstance(feeds, dict):
            feeds = {self.inputs[0].name: feeds}
        return self.session.run(self._output_names, feeds)

    def close(self) -> None:
        self.session = None  # type: ignore[assignment]
