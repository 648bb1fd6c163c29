"""TensorRT engine cache: where a built engine lives and whether it still fits.

An engine is only valid for the TensorRT version and the GPU it was built with, and for the exact
ONNX file and build settings. The cache key hashes all of them; the file name keeps the readable
parts (model stem, precision, GPU, TensorRT version) and a short digest, and a JSON sidecar
records the key so a stale or foreign engine is rebuilt, never loaded. Pure Python: tested
without TensorRT.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from nano_vision_ros.core.hashing import sha256_file  # noqa: F401 - re-exported here

PRECISIONS = ("fp32", "fp16", "int8")


def slug(text: str) -> str:
    """'NVIDIA Tegra X1' -> 'nvidia-tegra-x1' (safe in file names)."""
    return re.sub(r"[^a-z0-9._]+", "-", text.lower()).strip("-") or "unknown"


@dataclass(frozen=True)
class EngineKey:
    """Everything an engine depends on."""

    model_sha256: str
    trt_version: str
    gpu_name: str
    precision: str = "fp16"
    workspace_mb: int = 1024
    input_shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    calibration_sha256: str = ""  # int8 only: digest of the calibration cache / image list
    dla_core: int = -1

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {self.precision!r}")

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["input_shapes"] = {k: list(v) for k, v in sorted(self.input_shapes.items())}
        return d

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.as_dict(), sort_keys=True).encode()).hexdigest()


def default_cache_dir() -> Path:
    env = os.environ.get("NANO_VISION_ENGINE_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "nano_vision_ros" / "engines"


def engine_path(cache_dir: str | os.PathLike[str], model_path: str | os.PathLike[str], key: EngineKey) -> Path:
    """<cache>/<stem>.<precision>.<gpu>.trt<version>.<digest12>.engine"""
    stem = slug(Path(model_path).stem)
    name = f"{stem}.{key.precision}.{slug(key.gpu_name)}.trt{slug(key.trt_version)}.{key.digest()[:12]}.engine"
    return Path(cache_dir) / name


def sidecar_path(engine: str | os.PathLike[str]) -> Path:
    return Path(str(engine) + ".json")


def write_sidecar(engine: str | os.PathLike[str], key: EngineKey, **extra: Any) -> Path:
    p = sidecar_path(engine)
    tmp = p.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"key": key.as_dict(), "digest": key.digest(), **extra}, indent=2, sort_keys=True))
    os.replace(tmp, p)
    return p


def lookup(cache_dir: str | os.PathLike[str], model_path: str | os.PathLike[str], key: EngineKey) -> Path | None:
    """The cached engine for `key`, or None if absent, empty, or its sidecar records another key."""
    p = engine_path(cache_dir, model_path, key)
    if not p.is_file() or p.stat().st_size == 0:
        return None
    try:
        meta = json.loads(sidecar_path(p).read_text())
    except (OSError, ValueError):
        return None
    return p if meta.get("digest") == key.digest() else None


def store(
    cache_dir: str | os.PathLike[str],
    model_path: str | os.PathLike[str],
    key: EngineKey,
    serialized: bytes,
    **extra: Any,
) -> Path:
    """Write an engine atomically (temp file + rename) with its sidecar; returns its path."""
    p = engine_path(cache_dir, model_path, key)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_suffix(".engine.tmp")
    with open(tmp, "wb") as f:
        f.write(serialized)
    os.replace(tmp, p)
    write_sidecar(p, key, model=str(model_path), size=len(serialized), **extra)
    return p
