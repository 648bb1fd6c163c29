"""Typed parameters: declared once from a pydantic model, validated, bad values named."""
from __future__ import annotations

import pytest
import rclpy
from pydantic import BaseModel, Field, field_validator
from rclpy.parameter import Parameter

from nano_vision_ros.core.errors import ConfigError
from nano_vision_ros.ros.params import load_config


class Inner(BaseModel):
    host: str = "127.0.0.1"
    port: int = Field(1883, ge=1, le=65535)


class Cfg(BaseModel):
    source: str = "test"
    fps: float = Field(30.0, gt=0, description="frames per second")
    size: list[int] = [640, 480]
    tags: list[str] = []
    inner: Inner = Inner()

    @field_validator("size")
    @classmethod
    def _two(cls, v: list[int]) -> list[int]:
        if len(v) != 2 or min(v) <= 0:
            raise ValueError("must be [width, height] with both > 0")
        return v


@pytest.fixture
def make_node():
    ctx = rclpy.context.Context()
    rclpy.init(context=ctx)
    nodes = []

    def _make(**overrides):
        n = rclpy.create_node("params_test", context=ctx,
                              parameter_overrides=[Parameter(k, value=v) for k, v in overrides.items()])
        nodes.append(n)
        return n

    yield _make
    for n in nodes:
        n.destroy_node()
    rclpy.shutdown(context=ctx)


def test_defaults_and_overrides(make_node):
    node = make_node(**{"fps": 12.5, "inner.port": 1999, "tags": ["a", "b"]})
    cfg = load_config(node, Cfg)
    assert cfg.fps == 12.5 and cfg.inner.port == 1999 and cfg.tags == ["a", "b"]
    assert cfg.size == [640, 480] and cfg.source == "test"
    assert node.has_parameter("inner.host")
    assert node.describe_parameter("fps").description == "frames per second"


@pytest.mark.parametrize("overrides,needle", [
    ({"fps": -1.0}, "parameter 'fps'"),
    ({"inner.port": 70000}, "parameter 'inner.port'"),
    ({"size": [640]}, "parameter 'size': must be [width, height]"),
    ({"fps": "fast"}, "parameter 'fps'"),
])
def test_bad_values_are_named(make_node, overrides, needle):
    with pytest.raises(ConfigError) as err:
        load_config(make_node(**overrides), Cfg)
    assert needle in str(err.value)


def test_runtime_changes_are_validated(make_node):
    applied = []
    node = make_node()
    load_config(node, Cfg, on_change=applied.append)
    bad = node.set_parameters([Parameter("fps", value=-5.0)])[0]
    assert not bad.successful and "parameter 'fps'" in bad.reason
    assert node.get_parameter("fps").value == 30.0
    good = node.set_parameters([Parameter("fps", value=15.0)])[0]
    assert good.successful and applied[-1].fps == 15.0


def test_runtime_changes_refused_without_handler(make_node):
    node = make_node()
    load_config(node, Cfg)
    res = node.set_parameters([Parameter("fps", value=15.0)])[0]
    assert not res.successful and "restart" in res.reason
