"""Error types shared by the core and the nodes."""

from __future__ import annotations


class NanoVisionError(Exception):
    """Base class of the project's own errors."""


class ConfigError(NanoVisionError, ValueError):
    """A configuration value is invalid; the message names the parameter and the reason."""

    def __init__(self, message: str, parameter: str | None = None) -> None:
        super().__init__(message)
        self.parameter = parameter


class ModelError(NanoVisionError):
    """A model file is missing, corrupt or does not fit the decoder/backend it is used with."""


class RuntimeMissingError(NanoVisionError):
    """An optional runtime (TensorRT, pycuda, dlib, GStreamer…) is not installed."""
