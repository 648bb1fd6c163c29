"""core.options.options_from: a core dataclass from a parameter model, shared fields passed on by name."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel

from nano_vision_ros.core.options import options_from


@dataclass
class _Core:
    fps: float
    width: int = 0
    token: str = ""
    keepalive: float = 1.0  # core-only: keeps its default


class _Params(BaseModel):
    fps: float = 10.0
    width: int = 320
    image_topic: str = "image_raw"  # node-only: not passed


def test_shared_fields_by_name_overrides_win():
    core = options_from(_Core, _Params(fps=5.0), token="t", width=640)
    assert core == _Core(fps=5.0, width=640, token="t", keepalive=1.0)
