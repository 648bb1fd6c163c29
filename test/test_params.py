"""Typed parameters: declared once from a pydantic model, validated, bad values named."""

from __future__ import annotations

from pathlib import Path

import pytest
import rclpy
from pydantic import BaseModel, Field, field_validator
from rclpy.parameter import Parameter

from nano_vision_ros.core.errors import ConfigError
from nano_vision_ros.ros.params import load_config

SAMPLE = Path(__file__).resolve().parent.parent / "samples" / "vtest.mp4"


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
        n = rclpy.create_node(
            "params_test", context=ctx, parameter_overrides=[Parameter(k, value=v) for k, v in overrides.items()]
        )
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


@pytest.mark.parametrize(
    "overrides,needle",
    [
        ({"fps": -1.0}, "parameter 'fps'"),
        ({"inner.port": 70000}, "parameter 'inner.port'"),
        ({"size": [640]}, "parameter 'size': must be [width, height]"),
        ({"fps": "fast"}, "parameter 'fps'"),
    ],
)
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


# --- parameter names: a misspelled override is refused, not silently dropped --------------------


def test_unknown_override_is_refused_with_suggestion(make_node):
    node = make_node(**{"sourse": "x", "inner.prot": 1999})
    with pytest.raises(ConfigError) as err:
        load_config(node, Cfg)
    msg = str(err.value)
    assert msg.startswith("node /params_test: ")
    assert "unknown parameter 'sourse' (did you mean 'source'?)" in msg
    assert "unknown parameter 'inner.prot' (did you mean 'inner.port'" in msg


def test_unknown_override_without_close_name(make_node):
    with pytest.raises(ConfigError) as err:
        load_config(make_node(zzz_totally_else=1), Cfg)
    assert "unknown parameter 'zzz_totally_else' (not a parameter of this node)" in str(err.value)


def test_site_wide_and_ros_names_are_tolerated(make_node):
    node = make_node(site_id="s1", device_id="d1", use_sim_time=False, autostart=False, fps=5.0)
    assert load_config(node, Cfg).fps == 5.0


def test_set_of_undeclared_name_is_refused_with_suggestion(make_node):
    from rclpy.exceptions import ParameterNotDeclaredException

    node = make_node()
    load_config(node, Cfg, on_change=lambda c: None)
    with pytest.raises(ParameterNotDeclaredException) as err:
        node.set_parameters([Parameter("fsp", value=3.0)])
    assert "node /params_test: unknown parameter 'fsp' (did you mean 'fps'?)" in str(err.value)
    assert node.set_parameters([Parameter("fps", value=3.0)])[0].successful


def test_camera_node_refuses_misspelled_names(start_node):
    """Issue 11: `-p sourse:=… -p fpss:=99` used to play the bundled sample on the defaults."""
    from conftest import wait_for

    p = start_node("camera_node", "-r", "__ns:=/cam0", "-p", "sourse:=/nonexistent.mp4", "-p", "fpss:=99")
    wait_for(lambda: not p.alive(), timeout=60, what="camera_node to exit")
    assert p.proc.returncode == 2
    errors = [ln for ln in p.log().splitlines() if "ERROR" in ln]
    assert len(errors) == 1, p.log()
    assert "node /cam0/camera_node" in errors[0]
    assert "unknown parameter 'fpss' (did you mean 'fps'?)" in errors[0]
    assert "unknown parameter 'sourse' (did you mean 'source'?)" in errors[0]
    assert "streaming" not in p.log()


def test_params_file_typo_refused_and_wildcard_site_ids_tolerated(start_node, tmp_path):
    """A typo in a params file section for this node is refused; `/**` site_id/device_id are not."""
    from conftest import wait_for

    good = tmp_path / "good.yaml"
    good.write_text(
        "/**:\n  ros__parameters:\n    site_id: s\n    device_id: d\n"
        f"/**/camera_node:\n  ros__parameters:\n    source: {SAMPLE}\n    loop: true\n"
    )
    bad = tmp_path / "bad.yaml"
    bad.write_text(good.read_text() + "    fpss: 99.0\n")
    b = start_node("camera_node", "--params-file", str(bad), name="bad")
    wait_for(lambda: not b.alive(), timeout=60, what="camera_node with a params-file typo to exit")
    assert b.proc.returncode == 2 and "unknown parameter 'fpss' (did you mean 'fps'?)" in b.log()
    g = start_node("camera_node", "--params-file", str(good), name="good")
    wait_for(lambda: "streaming" in g.log() or not g.alive(), timeout=60, what="camera_node to stream")
    assert g.alive() and "unknown parameter" not in g.log(), g.log()


def test_ros2_param_set_of_undeclared_name_over_dds(start_node, ros_node):
    """A second process calls the node's SetParameters service: the typo is refused with the help."""
    from conftest import wait_for
    from rcl_interfaces.srv import SetParameters

    p = start_node("camera_node", "-r", "__ns:=/pt", "-p", f"source:={SAMPLE}", "-p", "loop:=true")
    node = ros_node("param_client")
    cli = node.create_client(SetParameters, "/pt/camera_node/set_parameters")
    wait_for(lambda: cli.service_is_ready() or not p.alive(), timeout=60, what="set_parameters service")
    assert p.alive(), p.log()
    req = SetParameters.Request(parameters=[Parameter("fpss", value=5.0).to_parameter_msg()])
    fut = cli.call_async(req)
    wait_for(fut.done, timeout=30, what="set_parameters reply")
    res = fut.result().results[0]
    assert not res.successful
    assert res.reason == "node /pt/camera_node: unknown parameter 'fpss' (did you mean 'fps'?)"
    assert p.alive()


def test_detector_model_holds_none_for_not_set():
    """detector_node: model/backend/device/threads 'not set' is None in the typed model (the ROS
    parameter's empty form, '' / 0, reads as not set); what it sets over the profile is one ProfileOverrides."""
    from nano_vision_ros.core.detection.profiles import ProfileOverrides
    from nano_vision_ros.nodes.detector_node import DetectorConfig
    from nano_vision_ros.ros.params import validate_config

    cfg = validate_config(DetectorConfig, {"model": "", "backend": "", "device": "", "threads": 0})
    assert (cfg.model, cfg.backend, cfg.device, cfg.threads) == (None, None, None, None)
    assert cfg.overrides() == ProfileOverrides()
    cfg = validate_config(
        DetectorConfig, {"model": "m.onnx", "backend": "opencv", "threads": 2, "score_threshold": 0.5}
    )
    assert cfg.overrides() == ProfileOverrides(model="m.onnx", backend="opencv", threads=2, score_threshold=0.5)
    with pytest.raises(ConfigError, match="'backend'"):
        validate_config(DetectorConfig, {"backend": "onnxrt"})
