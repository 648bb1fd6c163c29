"""Camera calibration (camera_calibration / camera_info_manager YAML) without ROS.

``load_calibration(url)`` reads the YAML that ``cameracalibrator`` writes (``file://``,
``package://nano_vision_ros/…`` or a plain path); ``uncalibrated(w, h)`` is the default when no
file is given (all-zero K, as camera_info_manager publishes for an uncalibrated camera);
``scaled(w, h)`` fits a calibration to a resized frame.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from nano_vision_ros.core.errors import ConfigError
from nano_vision_ros.core.paths import resolve


@dataclass(frozen=True)
class CameraCalibration:
    width: int
    height: int
    camera_name: str = ""
    distortion_model: str = "plumb_bob"
    d: tuple[float, ...] = ()
    k: tuple[float, ...] = (0.0,) * 9
    r: tuple[float, ...] = (0.0,) * 9
    p: tuple[float, ...] = (0.0,) * 12
    binning_x: int = 0
    binning_y: int = 0
    source: str = field(default="", compare=False)

    @property
    def calibrated(self) -> bool:
        return self.k[0] != 0.0

    def scaled(self, width: int, height: int) -> CameraCalibration:
        """The same camera seen at another resolution (intrinsics scale with the image)."""
        if (width, height) == (self.width, self.height) or not self.width or not self.height:
            return replace(self, width=width, height=height)
        sx, sy = width / self.width, height / self.height
        k = list(self.k)
        k[0] *= sx
        k[1] *= sx
        k[2] *= sx
        k[3] *= sy
        k[4] *= sy
        k[5] *= sy
        p = list(self.p)
        for i in range(4):
            p[i] *= sx
            p[4 + i] *= sy
        return replace(self, width=width, height=height, k=tuple(k), p=tuple(p))

    def aspect_differs(self, width: int, height: int) -> bool:
        return bool(self.width and self.height) and abs(width * self.height - height * self.width) > max(width, height)


def uncalibrated(width: int, height: int, camera_name: str = "") -> CameraCalibration:
    return CameraCalibration(width=width, height=height, camera_name=camera_name)


def _matrix(doc: dict[str, Any], key: str, size: int | None, where: str) -> tuple[float, ...]:
    m = doc.get(key)
    if m is None:
        if size is None:
            return ()
        raise ValueError(f"{where}: '{key}' missing")
    data = m.get("data") if isinstance(m, dict) else m
    if not isinstance(data, list) or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in data):
        raise ValueError(f"{where}: '{key}.data' must be a list of numbers")
    if size is not None and len(data) != size:
        raise ValueError(f"{where}: '{key}' needs {size} values, has {len(data)}")
    if isinstance(m, dict) and "rows" in m and "cols" in m and int(m["rows"]) * int(m["cols"]) != len(data):
        raise ValueError(f"{where}: '{key}' rows*cols != len(data)")
    return tuple(float(v) for v in data)


def parse_calibration(doc: Any, where: str = "calibration") -> CameraCalibration:
    """A calibration from the parsed YAML mapping; ValueError says what is wrong."""
    if not isinstance(doc, dict):
        raise ValueError(f"{where}: not a YAML mapping")
    try:
        w, h = int(doc["image_width"]), int(doc["image_height"])
    except (KeyError, TypeError, ValueError):
        raise ValueError(f"{where}: image_width and image_height (integers) are required") from None
    if w <= 0 or h <= 0:
        raise ValueError(f"{where}: image size {w}x{h} is not positive")
    k = _matrix(doc, "camera_matrix", 9, where)
    d = _matrix(doc, "distortion_coefficients", None, where)
    r = (
        _matrix(doc, "rectification_matrix", 9, where)
        if "rectification_matrix" in doc
        else (1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0)
    )
    if "projection_matrix" in doc:
        p = _matrix(doc, "projection_matrix", 12, where)
    else:  # monocular: P = [K | 0]
        p = (k[0], k[1], k[2], 0.0, k[3], k[4], k[5], 0.0, k[6], k[7], k[8], 0.0)
    return CameraCalibration(
        width=w,
        height=h,
        camera_name=str(doc.get("camera_name", "") or ""),
        distortion_model=str(doc.get("distortion_model", "plumb_bob") or "plumb_bob"),
        d=d,
        k=k,
        r=r,
        p=p,
        binning_x=int(doc.get("binning_x", 0) or 0),
        binning_y=int(doc.get("binning_y", 0) or 0),
        source=where,
    )


def load_calibration(url: str, parameter: str = "camera_info_url") -> CameraCalibration:
    """Read a calibration YAML; an unreadable or invalid file is a ConfigError naming `parameter`."""
    import yaml

    path = resolve(url)
    try:
        text = path.read_text()
    except OSError as err:
        raise ConfigError(
            f"parameter '{parameter}': cannot read {url!r} ({path}): {err.strerror or err}", parameter
        ) from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(
            f"parameter '{parameter}': {path} is not valid YAML: {str(err).splitlines()[0]}", parameter
        ) from None
    try:
        return parse_calibration(doc, str(path))
    except ValueError as err:
        raise ConfigError(f"parameter '{parameter}': {err}", parameter) from None
