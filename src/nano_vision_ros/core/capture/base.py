"""What every frame source is: open, read into a buffer, close; failures are SourceError."""

from __future__ import annotations

import numpy as np

from nano_vision_ros.core.errors import NanoVisionError


class SourceError(NanoVisionError):
    """The source could not be opened or stopped delivering (missing file, unplugged device, dropped stream).

    The capture loop answers it by closing the source and reopening it with backoff.
    """


class EndOfStream(NanoVisionError):
    """A finite source (a file with ``loop`` off) has delivered its last frame."""


class FrameSource:
    """Base of the capture sources. Not thread-safe: one capture thread owns a source.

    ``read(out)`` returns a BGR (or RGB when ``rgb`` was asked and ``native_rgb`` is true) uint8
    frame of shape (height, width, 3); it writes into ``out`` when ``out`` has that shape, so the
    loop can hand it preallocated memory. The returned array is valid until the next ``read``.
    """

    #: a short description for logs and diagnostics (never contains credentials)
    name: str = "source"
    #: the frame rate the source itself runs at (0 = unknown / as fast as it delivers)
    nominal_fps: float = 0.0
    #: frames come at the source's own pace (camera, stream) rather than as fast as they are read
    live: bool = True
    #: the source can render RGB directly (saves a colour conversion)
    native_rgb: bool = False

    def __init__(self) -> None:
        self.width = 0
        self.height = 0

    def open(self) -> None:
        raise NotImplementedError

    def read(self, out: np.ndarray | None = None) -> np.ndarray:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def interrupt(self) -> None:
        """Called from another thread at stop: make a blocked ``read`` return soon (best effort)."""

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.height, self.width, 3)


def redact(url: str) -> str:
    """``rtsp://user:pass@host/x`` -> ``rtsp://***@host/x`` for logs."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    auth, at, host = rest.partition("@")
    if at and "/" not in auth:
        return f"{scheme}://***@{host}"
    return url
