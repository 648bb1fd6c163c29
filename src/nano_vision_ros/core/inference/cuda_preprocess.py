"""Pre-processing on the GPU: BGR uint8 frame -> letterboxed / resized, normalised NCHW float tensor.

Uploading the uint8 frame (3 bytes/pixel) and resizing on the GPU moves a quarter of the bytes of
uploading the float tensor, and frees the CPU (the Nano's weak spot). One CUDA C kernel, compiled
at run time by pycuda (``SourceModule``) or CuPy (``RawKernel``); bilinear sampling uses OpenCV's
half-pixel convention so results match ``Preprocessor`` to within rounding.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from nano_vision_ros.core.errors import RuntimeMissingError
from nano_vision_ros.core.inference.base import TensorInfo, Transform, letterbox_transform

if TYPE_CHECKING:
    from nano_vision_ros.core.inference.cuda_mem import CudaBuffers

KERNEL = r"""
extern "C" __global__ void letterbox_normalise(
    const unsigned char* __restrict__ src, int src_w, int src_h, int src_pitch,
    float* __restrict__ dst, int dst_w, int dst_h,
    float scale_x, float scale_y, int pad_x, int pad_y, int new_w, int new_h,
    int c0, int c1, int c2, float m0, float m1, float m2, float s0, float s1, float s2, float pad)
{
    int x = blockIdx.x * blockDim.x + threadIdx.x;
    int y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x >= dst_w || y >= dst_h) return;
    int plane = dst_w * dst_h;
    int o = y * dst_w + x;
    int cs[3] = {c0, c1, c2};
    float ms[3] = {m0, m1, m2};
    float ss[3] = {s0, s1, s2};
    int ix = x - pad_x, iy = y - pad_y;
    if (ix < 0 || iy < 0 || ix >= new_w || iy >= new_h) {
        for (int c = 0; c < 3; ++c) dst[c * plane + o] = (pad - ms[c]) * ss[c];
        return;
    }
    float fx = (ix + 0.5f) / scale_x - 0.5f;
    float fy = (iy + 0.5f) / scale_y - 0.5f;
    fx = fminf(fmaxf(fx, 0.f), (float)(src_w - 1));
    fy = fminf(fmaxf(fy, 0.f), (float)(src_h - 1));
    int x0 = (int)fx, y0 = (int)fy;
    int x1 = min(x0 + 1, src_w - 1), y1 = min(y0 + 1, src_h - 1);
    float ax = fx - x0, ay = fy - y0;
    for (int c = 0; c < 3; ++c) {
        int k = cs[c];
        float p00 = src[y0 * src_pitch + x0 * 3 + k], p01 = src[y0 * src_pitch + x1 * 3 + k];
        float p10 = src[y1 * src_pitch + x0 * 3 + k], p11 = src[y1 * src_pitch + x1 * 3 + k];
        float v = (p00 * (1.f - ax) + p01 * ax) * (1.f - ay) + (p10 * (1.f - ax) + p11 * ax) * ay;
        dst[c * plane + o] = (v - ms[c]) * ss[c];
    }
}
"""


class _Params:
    def __init__(
        self,
        width: int,
        height: int,
        resize: str,
        channel_order: str,
        mean: Sequence[float],
        std: Sequence[float],
        pad_value: int,
    ) -> None:
        self.width, self.height = int(width), int(height)
        self.letterbox = resize == "letterbox"
        self.channels = (2, 1, 0) if channel_order == "rgb" else (0, 1, 2)
        self.mean = [float(m) for m in mean]
        self.inv_std = [1.0 / float(s) for s in std]
        self.pad = float(pad_value)

    def args(self, src_w: int, src_h: int) -> tuple[Transform, tuple[Any, ...]]:
        t = letterbox_transform(src_w, src_h, self.width, self.height, self.letterbox)
        new_w, new_h = int(round(src_w * t.scale_x)), int(round(src_h * t.scale_y))
        return t, (
            np.int32(src_w),
            np.int32(src_h),
            np.int32(src_w * 3),
            None,
            np.int32(self.width),
            np.int32(self.height),
            np.float32(t.scale_x),
            np.float32(t.scale_y),
            np.int32(t.pad_x),
            np.int32(t.pad_y),
            np.int32(new_w),
            np.int32(new_h),
            *[np.int32(c) for c in self.channels],
            *[np.float32(m) for m in self.mean],
            *[np.float32(s) for s in self.inv_std],
            np.float32(self.pad),
        )


class CupyPreprocessor:
    """Same contract as ``Preprocessor`` but the tensor stays on the GPU (a CuPy array)."""

    def __init__(
        self,
        width: int,
        height: int,
        resize: str = "letterbox",
        channel_order: str = "rgb",
        mean: Sequence[float] = (0, 0, 0),
        std: Sequence[float] = (255, 255, 255),
        pad_value: int = 114,
    ) -> None:
        try:
            import cupy as cp
        except ImportError as err:
            raise RuntimeMissingError("CuPy is not installed (pip install cupy-cuda12x / cupy-cuda13x)") from err
        self.cp = cp
        self.p = _Params(width, height, resize, channel_order, mean, std, pad_value)
        self.kernel = cp.RawKernel(KERNEL, "letterbox_normalise")
        self.tensor = cp.empty((1, 3, self.p.height, self.p.width), cp.float32)
        self._src: Any | None = None  # a CuPy array (CuPy ships no types)

    def __call__(self, image_bgr: np.ndarray):
        h, w = image_bgr.shape[:2]
        if self._src is None or self._src.shape != image_bgr.shape:
            self._src = self.cp.empty(image_bgr.shape, self.cp.uint8)
        self._src.set(np.ascontiguousarray(image_bgr))
        t, args = self.p.args(w, h)
        args = (self._src, *args[:3], self.tensor, *args[4:])
        block = (32, 8, 1)
        grid = ((self.p.width + 31) // 32, (self.p.height + 7) // 8, 1)
        self.kernel(grid, block, args)
        return self.tensor, t


class PycudaPreprocessor:
    """The kernel through pycuda, writing into a device buffer (e.g. a TensorRT input binding)."""

    def __init__(
        self,
        buffers: Any,
        dst_name: str,
        width: int,
        height: int,
        resize: str = "letterbox",
        channel_order: str = "rgb",
        mean: Sequence[float] = (0, 0, 0),
        std: Sequence[float] = (255, 255, 255),
        pad_value: int = 114,
    ) -> None:
        from pycuda.compiler import SourceModule

        self.buffers = buffers
        self.dst_name = dst_name
        self.p = _Params(width, height, resize, channel_order, mean, std, pad_value)
        with buffers.active():
            self.func = SourceModule(KERNEL, no_extern_c=True).get_function("letterbox_normalise")
        self._src_shape: tuple[int, ...] | None = None

    def __call__(self, image_bgr: np.ndarray) -> Transform:
        """Upload, resize and normalise into ``buffers.dev[dst_name]``; call inside ``buffers.active()``."""
        b = self.buffers
        h, w = image_bgr.shape[:2]
        if self._src_shape != image_bgr.shape:
            if "_frame" in b.dev:
                b.dev["_frame"].free()
            b.allocate("_frame", image_bgr.shape, np.uint8)
            self._src_shape = image_bgr.shape
        b.to_device("_frame", image_bgr)
        t, args = self.p.args(w, h)
        args = (b.dev["_frame"], *args[:3], b.dev[self.dst_name], *args[4:])
        grid = ((self.p.width + 31) // 32, (self.p.height + 7) // 8, 1)
        self.func(*args, block=(32, 8, 1), grid=grid, stream=b.stream)
        return t


class DevicePreprocessMixin:
    """For backends holding ``self.buffers`` (``CudaBuffers``) with the model input as a device buffer:
    upload the uint8 frame, run the kernel into the input buffer, then ``_run_on_device`` (the
    backend's enqueue + output download). Used by ``TensorRTBackend``."""

    supports_device_preprocess = True
    _device_pre: PycudaPreprocessor | None = None
    inputs: list[TensorInfo]  # the backend's
    buffers: CudaBuffers  # the backend's

    def enable_device_preprocess(self, **params: Any) -> None:
        name = self.inputs[0].name
        self._device_pre = PycudaPreprocessor(self.buffers, name, **params)

    def infer_image(self, image_bgr: np.ndarray, extra_feeds: dict[str, np.ndarray] | None = None):
        if self._device_pre is None:
            raise RuntimeError("enable_device_preprocess() first")
        b = self.buffers
        with b.active():
            transform = self._device_pre(np.ascontiguousarray(image_bgr))
            for name, arr in (extra_feeds or {}).items():
                b.to_device(name, arr)
            outs = self._run_on_device()
        return outs, transform

    def _run_on_device(self) -> list[np.ndarray]:
        """Enqueue inference on the input already in device memory; download and sync the outputs."""
        raise NotImplementedError
