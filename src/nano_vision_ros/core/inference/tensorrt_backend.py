"""TensorRT backend (Jetson): load an engine, or build one from ONNX and cache it.

- ``.engine`` / ``.trt`` / ``.plan``: deserialised as is (must match this TensorRT and GPU).
- ``.onnx`` with ``backend: tensorrt``: the engine cache (``engine_cache``) is looked up by
  model sha256 + TensorRT version + GPU name + build settings; a miss builds the engine
  (FP32 / FP16 / INT8 with a calibration cache made from a folder of images), showing progress.
- Memory: pycuda page-locked host buffers, device buffers and one stream (``cuda_mem``); the
  TensorRT 8 binding API and the TensorRT 10 named-tensor API through ``trt_compat``.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from nano_vision_ros.core.errors import ModelError, RuntimeMissingError
from nano_vision_ros.core.inference import engine_cache, trt_compat
from nano_vision_ros.core.inference.base import InferenceBackend, TensorInfo
from nano_vision_ros.core.inference.cuda_preprocess import DevicePreprocessMixin

log = logging.getLogger(__name__)


def import_tensorrt():
    try:
        import tensorrt as trt
    except ImportError as err:
        raise RuntimeMissingError(
            "TensorRT Python bindings are not installed: on Jetson they come with JetPack "
            "(apt install python3-libnvinfer); on a PC use NVIDIA's tensorrt wheels, or backend onnxruntime"
        ) from err
    return trt


class _Heartbeat:
    """Log a progress line every `period` s while a long build runs (TRT 8 has no progress API)."""

    def __init__(self, what: str, period: float = 15.0) -> None:
        self.what, self.period = what, period
        self._stop = threading.Event()
        self._t0 = time.monotonic()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            log.info("%s: still building, %.0f s so far (a Nano takes minutes)", self.what, time.monotonic() - self._t0)

    def __enter__(self) -> _Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(1)


def _progress_monitor(trt: Any) -> Any | None:
    """A TRT >= 8.6/10 IProgressMonitor that logs phase progress; None where the API is absent."""
    base = getattr(trt, "IProgressMonitor", None)
    if base is None:
        return None

    class _Monitor(base):  # type: ignore[misc, valid-type]
        def __init__(self) -> None:
            super().__init__()  # the one base: the same call as base.__init__(self)
            self._last = 0.0

        def phase_start(self, phase_name, parent_phase, num_steps):
            log.info("TensorRT build: %s (%d steps)", phase_name, num_steps)

        def step_complete(self, phase_name, step):
            now = time.monotonic()
            if now - self._last > 5:
                log.info("TensorRT build: %s step %d", phase_name, step)
                self._last = now
            return True  # False would cancel the build

        def phase_finish(self, phase_name):
            pass

    return _Monitor()


def _make_calibrator(
    trt: Any,
    images: list[Path],
    preprocess: Callable[[np.ndarray], np.ndarray],
    input_shape: tuple[int, ...],
    cache_file: Path,
):
    """IInt8EntropyCalibrator2 over a folder of images; the calibration cache is reused if present."""
    import cv2

    from nano_vision_ros.core.inference.cuda_mem import import_pycuda

    cuda = import_pycuda()

    class _Calibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.images = list(images)
            self.index = 0
            self.nbytes = int(np.prod(input_shape)) * 4
            self.dev = cuda.mem_alloc(self.nbytes)

        def get_batch_size(self) -> int:
            return 1

        def get_batch(self, names):
            while self.index < len(self.images):
                img = cv2.imread(str(self.images[self.index]))
                self.index += 1
                if img is None:
                    continue
                if self.index % 10 == 0:
                    log.info("INT8 calibration: image %d/%d", self.index, len(self.images))
                cuda.memcpy_htod(self.dev, np.ascontiguousarray(preprocess(img), np.float32))
                return [int(self.dev)]
            return None

        def read_calibration_cache(self):
            return cache_file.read_bytes() if cache_file.is_file() else None

        def write_calibration_cache(self, cache):
            cache_file.parent.mkdir(parents=True, exist_ok=True)
            cache_file.write_bytes(bytes(cache))

    return _Calibrator()


def build_engine(
    onnx_path: str,
    precision: str = "fp16",
    workspace_mb: int = 1024,
    input_shapes: dict[str, tuple[int, ...]] | None = None,
    calibration_images: str | None = None,
    calibration_cache: str | None = None,
    preprocess: Callable[[np.ndarray], np.ndarray] | None = None,
    dla_core: int = -1,
) -> bytes:
    """Serialised engine from an ONNX file (TensorRT 8 and 10)."""
    trt = import_tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    major = int(trt.__version__.split(".")[0])
    flags = 0 if major >= 10 else 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    with open(onnx_path, "rb") as f:
        if not parser.parse(f.read()):
            errs = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise ModelError(f"TensorRT's ONNX parser rejected {onnx_path}: {errs[:500]}")
    config = builder.create_builder_config()
    if hasattr(config, "set_memory_pool_limit"):
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
    else:  # TensorRT < 8.4
        config.max_workspace_size = workspace_mb << 20
    monitor = _progress_monitor(trt)
    if monitor is not None:
        config.progress_monitor = monitor
    if precision in ("fp16", "int8") and builder.platform_has_fast_fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    if precision == "int8":
        if not builder.platform_has_fast_int8:
            raise ModelError("this GPU has no fast INT8 (the Jetson Nano has none); use fp16")
        config.set_flag(trt.BuilderFlag.INT8)
        cache = Path(calibration_cache or (str(onnx_path) + ".int8.calib"))
        images = sorted(
            p for p in Path(calibration_images or "").glob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png")
        )
        if not cache.is_file() and not images:
            raise ModelError(f"INT8 needs a calibration cache ({cache}) or a folder of images (calibration_images)")
        if preprocess is None:
            raise ModelError("INT8 calibration needs the task's pre-processing")
        inp = network.get_input(0)
        config.int8_calibrator = _make_calibrator(trt, images, preprocess, tuple(inp.shape), cache)
    if dla_core >= 0:
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = dla_core
        config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
    dynamic = [network.get_input(i) for i in range(network.num_inputs) if -1 in tuple(network.get_input(i).shape)]
    if dynamic:
        profile = builder.create_optimization_profile()
        for t in dynamic:
            shape = (input_shapes or {}).get(t.name)
            if shape is None:
                shape = trt_compat.resolve_shape(tuple(t.shape))
            profile.set_shape(t.name, shape, shape, shape)
        config.add_optimization_profile(profile)
    log.info(
        "building a %s TensorRT %s engine from %s (minutes on a Jetson Nano)", precision, trt.__version__, onnx_path
    )
    t0 = time.monotonic()
    with _Heartbeat(f"engine for {os.path.basename(onnx_path)}"):
        serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ModelError(f"TensorRT failed to build an engine from {onnx_path} (see the TensorRT log above)")
    log.info("engine built in %.0f s", time.monotonic() - t0)
    return bytes(serialized)


class TensorRTBackend(DevicePreprocessMixin, InferenceBackend):
    name = "tensorrt"

    def __init__(
        self,
        path: str,
        device: str = "auto",
        precision: str = "fp16",
        workspace_mb: int = 1024,
        cache_dir: str | None = None,
        calibration_images: str | None = None,
        calibration_cache: str | None = None,
        input_shape: tuple[int, ...] | None = None,
        dla_core: int = -1,
        preprocess: Callable[[np.ndarray], np.ndarray] | None = None,
        **_: Any,
    ) -> None:
        trt = import_tensorrt()
        from nano_vision_ros.core.inference.cuda_mem import CudaBuffers

        dev_index = 0 if device in ("auto", "cuda", "gpu") else int(str(device).removeprefix("cuda:"))
        self.buffers = CudaBuffers(dev_index)
        self._trt_logger = trt.Logger(trt.Logger.WARNING)
        engine_file = Path(path)
        if engine_file.suffix.lower() == ".onnx":
            key = engine_cache.EngineKey(
                engine_cache.sha256_file(path),
                trt.__version__,
                self.buffers.device_name,
                precision,
                workspace_mb,
                {},
                engine_cache.sha256_file(calibration_cache)
                if calibration_cache and os.path.isfile(calibration_cache)
                else "",
                dla_core,
            )
            cdir = Path(cache_dir) if cache_dir else engine_cache.default_cache_dir()
            found = engine_cache.lookup(cdir, path, key)
            if found is None:
                with self.buffers.active():
                    data = build_engine(
                        path, precision, workspace_mb, None, calibration_images, calibration_cache, preprocess, dla_core
                    )
                found = engine_cache.store(cdir, path, key, data)
                log.info("engine cached at %s", found)
            engine_file = found
        with self.buffers.active():
            self.runtime = trt.Runtime(self._trt_logger)
            try:
                data = engine_file.read_bytes()
            except OSError as err:
                raise ModelError(f"cannot read engine {engine_file}: {err}") from err
            self.engine = self.runtime.deserialize_cuda_engine(data)
            if self.engine is None:
                raise ModelError(
                    f"TensorRT {trt.__version__} could not load {engine_file}: corrupt, or built with another "
                    "TensorRT version or GPU (rebuild it from the ONNX file)"
                )
            self.context = self.engine.create_execution_context()
            self.io = trt_compat.list_io(self.engine)
            for io in self.io:
                if io.is_input:
                    shape = trt_compat.resolve_shape(
                        io.shape, input_shape if io.index == 0 else None, trt_compat.profile_shapes(self.engine, io)
                    )
                    trt_compat.set_input_shape(self.context, io, shape)
                    io.shape = shape
            for io in self.io:
                if not io.is_input:
                    io.shape = trt_compat.output_shape(self.context, io)
                self.buffers.allocate(io.name, io.shape, io.dtype)
        self.inputs = [TensorInfo(i.name, i.shape, i.dtype) for i in self.io if i.is_input]
        self.outputs = [TensorInfo(i.name, i.shape, i.dtype) for i in self.io if not i.is_input]
        self.metadata = {}
        self._addresses = [self.buffers.address(i.name) for i in self.io]

    def infer(self, feeds: dict[str, np.ndarray] | np.ndarray) -> list[np.ndarray]:
        if not isinstance(feeds, dict):
            feeds = {self.inputs[0].name: feeds}
        b = self.buffers
        with b.active():
            for name, arr in feeds.items():
                b.to_device(name, arr)
            return self._run_on_device()

    def _run_on_device(self) -> list[np.ndarray]:
        b = self.buffers
        trt_compat.execute(self.context, self.io, self._addresses, b.stream.handle)
        outs = [b.to_host(o.name) for o in self.outputs]
        b.synchronize()
        return outs  # page-locked buffers, valid until the next inference

    def close(self) -> None:
        if getattr(self, "buffers", None) is None:
            return
        self.context = None
        self.engine = None
        self.runtime = None
        self.buffers.free()
        self.buffers = None  # type: ignore[assignment]
