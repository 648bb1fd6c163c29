"""pycuda memory for TensorRT: page-locked host buffers, device buffers, one stream, one context.

The detector runs inference on a worker thread, not the thread that loaded the model, so the
device's primary context is retained once and pushed/popped around every call (``with mem.active():``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np

from nano_vision_ros.core.errors import RuntimeMissingError


def import_pycuda():
    try:
        import pycuda.driver as cuda
    except ImportError as err:
        raise RuntimeMissingError(
            "pycuda is not installed: on Jetson `pip install pycuda` (needs CUDA headers: "
            "export CUDA_ROOT=/usr/local/cuda PATH=$PATH:/usr/local/cuda/bin)"
        ) from err
    return cuda


class CudaBuffers:
    """Host/device buffer pairs keyed by name, on one device context and stream."""

    def __init__(self, device: int = 0) -> None:
        cuda = import_pycuda()
        self.cuda = cuda
        cuda.init()
        if device >= cuda.Device.count():
            raise RuntimeMissingError(f"CUDA device {device} not present ({cuda.Device.count()} devices)")
        self.device = cuda.Device(device)
        self.context = self.device.retain_primary_context()
        self.host: dict[str, np.ndarray] = {}
        self.dev: dict[str, Any] = {}  # pycuda DeviceAllocations (pycuda ships no types)
        with self.active():
            self.stream = cuda.Stream()

    @property
    def device_name(self) -> str:
        return self.device.name()

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        self.context.push()
        try:
            yield
        finally:
            self.cuda.Context.pop()

    def allocate(self, name: str, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        """Page-locked host array + device allocation of the same size (call inside ``active()``)."""
        host = self.cuda.pagelocked_empty(tuple(shape), np.dtype(dtype))
        self.host[name] = host
        self.dev[name] = self.cuda.mem_alloc(max(host.nbytes, 1))
        return host

    def address(self, name: str) -> int:
        return int(self.dev[name])

    def to_device(self, name: str, src: np.ndarray | None = None) -> None:
        host = self.host[name]
        if src is not None and src is not host:
            np.copyto(host, src, casting="same_kind")
        self.cuda.memcpy_htod_async(self.dev[name], host, self.stream)

    def to_host(self, name: str) -> np.ndarray:
        self.cuda.memcpy_dtoh_async(self.host[name], self.dev[name], self.stream)
        return self.host[name]

    def synchronize(self) -> None:
        self.stream.synchronize()

    def free(self) -> None:
        if not self.dev:
            self.context = None
            return
        with self.active():
            for d in self.dev.values():
                d.free()
            self.dev.clear()
            self.host.clear()
            self.stream = None
        self.context.detach()
        self.context = None
