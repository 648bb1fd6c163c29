"""ONNX Runtime backend: CPU everywhere, CUDA / TensorRT execution providers where the build has them."""

from __future__ import annotations

import logging
import os
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


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask, so a cpuset or taskset counts)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def auto_threads(threads: int = 0, detectors: int = 1) -> int:
    """Intra-op threads: ``threads`` if > 0, else the usable cores shared out among the detectors
    on this machine (``max(1, cores // detectors)``), so N detectors do not oversubscribe the CPU."""
    if threads > 0:
        return int(threads)
    return max(1, usable_cores() // max(1, int(detectors)))


class OnnxRuntimeBackend(InferenceBackend):
    """Sessions never spin: ONNX Runtime's default keeps its intra-op threads busy-waiting between
    inferences, which at a 10 fps camera cadence roughly doubles the CPU of the same inference
    (docs/performance/detector.md). ``spinning=True`` restores the default (benchmarks only)."""

    name = "onnxruntime"

    def __init__(
        self,
        path: str,
        device: str = "auto",
        threads: int = 0,
        precision: str = "fp16",
        cache_dir: str | None = None,
        detectors: int = 1,
        spinning: bool = False,
        **_: Any,
    ) -> None:
        try:
            import onnxruntime as ort
        except ImportError as err:
            raise RuntimeMissingError(
                "ONNX Runtime is not installed: pip install onnxruntime (or onnxruntime-gpu)"
            ) from err
        available = ort.get_available_providers()
        if device == "auto":
            wanted = [p for p in _PROVIDERS["tensorrt"] if p in available]
        elif device in _PROVIDERS:
            wanted = [p for p in _PROVIDERS[device] if p in available]
            if _PROVIDERS[device][0] not in available:
                raise RuntimeMissingError(
                    f"ONNX Runtime here has no {_PROVIDERS[device][0]} (available: {', '.join(available)})"
                )
        else:
            raise ModelError(f"unknown onnxruntime device {device!r}; use auto, cpu, cuda or tensorrt")
        opts = ort.SessionOptions()
        self.threads = auto_threads(int(threads), int(detectors))
        opts.intra_op_num_threads = self.threads
        opts.inter_op_num_threads = 1  # sequential execution mode: the inter-op pool is idle anyway
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        spin = "1" if spinning else "0"
        opts.add_session_config_entry("session.intra_op.allow_spinning", spin)
        opts.add_session_config_entry("session.inter_op.allow_spinning", spin)
        self.spinning = bool(spinning)
        opts.log_severity_level = 3
        providers: list[Any] = list(wanted)
        if "TensorrtExecutionProvider" in providers:
            # the TensorRT EP builds an engine when the session is created (minutes on a Nano):
            # keep it in the same cache folder as the native backend's engines
            from nano_vision_ros.core.inference.engine_cache import default_cache_dir

            cache = str(cache_dir or default_cache_dir())
            providers[providers.index("TensorrtExecutionProvider")] = (
                "TensorrtExecutionProvider",
                {
                    "trt_engine_cache_enable": True,
                    "trt_engine_cache_path": cache,
                    "trt_fp16_enable": precision in ("fp16", "int8"),
                },
            )
            log.info("ONNX Runtime TensorRT provider: engines cached in %s (first start builds one)", cache)
        try:
            self.session = ort.InferenceSession(path, sess_options=opts, providers=providers)
        except Exception as err:  # onnxruntime raises its own Fail/InvalidProtobuf/NoSuchFile types
            raise ModelError(f"ONNX Runtime could not load {path}: {str(err).splitlines()[0][:300]}") from err
        self.providers = self.session.get_providers()
        self.inputs = [
            TensorInfo(i.name, tuple(i.shape), np.dtype(_ORT_TYPES.get(i.type, np.float32)))
            for i in self.session.get_inputs()
        ]
        self.outputs = [
            TensorInfo(o.name, tuple(o.shape), np.dtype(_ORT_TYPES.get(o.type, np.float32)))
            for o in self.session.get_outputs()
        ]
        meta = self.session.get_modelmeta()
        self.metadata = dict(meta.custom_metadata_map or {})
        self._output_names = [o.name for o in self.outputs]

    def infer(self, feeds: dict[str, np.ndarray] | np.ndarray) -> list[np.ndarray]:
        if not isinstance(feeds, dict):
            feeds = {self.inputs[0].name: feeds}
        return self.session.run(self._output_names, feeds)

    def close(self) -> None:
        self.session = None
