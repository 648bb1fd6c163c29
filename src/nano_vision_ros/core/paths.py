"""Find the package's data (config/, models/, samples/) wherever it is installed.

Order: an absolute or existing relative path as given; ``$NANO_VISION_DATA_DIR``; the source
checkout (editable install); the ament share directory (``colcon build`` / ``ros2 run``).
``package://nano_vision_ros/<rel>`` and ``file://`` URLs are accepted too (camera_info_url style).
"""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE = "nano_vision_ros"


def data_roots() -> list[Path]:
    roots: list[Path] = []
    env = os.environ.get("NANO_VISION_DATA_DIR")
    if env:
        roots.append(Path(env))
    checkout = Path(__file__).resolve().parents[3]  # src/nano_vision_ros/core/paths.py -> repo root
    if (checkout / "package.xml").is_file():
        roots.append(checkout)
    try:
        from ament_index_python.packages import get_package_share_directory

        roots.append(Path(get_package_share_directory(PACKAGE)))
    except Exception:  # noqa: BLE001,S110 - not installed through ament (plain pip) or ament_index missing
        pass
    return roots


def resolve(path: str | os.PathLike[str]) -> Path:
    """The existing file or folder `path` names; if none exists, the path as given (callers report it)."""
    text = str(path)
    if text.startswith("file://"):
        return Path(text[len("file://") :])
    if text.startswith("package://"):
        pkg, _, rel = text[len("package://") :].partition("/")
        if pkg != PACKAGE:
            try:
                from ament_index_python.packages import get_package_share_directory

                return Path(get_package_share_directory(pkg)) / rel
            except Exception:  # noqa: BLE001 - package unknown to ament: the path as given
                return Path(text)
        text = rel
    p = Path(text).expanduser()
    if p.is_absolute() or p.exists():
        return p
    for root in data_roots():
        cand = root / p
        if cand.exists():
            return cand
    return p


def read_token_file(path: str, parameter: str = "token_file") -> str:
    """A secret kept in a file (``~`` expanded, surrounding whitespace dropped); ConfigError naming
    the parameter when it cannot be read. The one way nodes read their tokens."""
    from nano_vision_ros.core.errors import ConfigError

    try:
        return Path(os.path.expanduser(path)).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as err:
        reason = getattr(err, "strerror", None) or err
        raise ConfigError(f"parameter '{parameter}': cannot read {path}: {reason}", parameter=parameter) from None
