"""YAML configuration with file:line problems (core.config_yaml): site file, task profiles."""

from __future__ import annotations

import textwrap
from typing import Annotated, Literal

import pytest
from pydantic import BaseModel, ConfigDict, Field

from nano_vision_ros.core.config_yaml import ConfigProblems, load_yaml, validate_yaml
from nano_vision_ros.core.detection.profiles import load_profile
from nano_vision_ros.site.config import load_site


def _write(tmp_path, name: str, body: str):
    p = tmp_path / name
    p.write_text(textwrap.dedent(body).lstrip())
    return p


def test_site_file_unknown_keys_named_with_lines_and_hints(tmp_path):
    site = _write(
        tmp_path,
        "site.yaml",
        """
        site_id: x
        flavour: vanilla
        services:
          mosquitto: {enabled: true, prot: 1884}
        cameras:
          - name: cam0
            nodes:
              - camera
              - {kind: detector, nmae: x}
        camras: []
        site_id: y
    """,
    )
    with pytest.raises(ConfigProblems) as err:
        load_site(site)
    assert err.value.problems == [
        f"{site}:2: key 'flavour' unknown",
        f"{site}:4: key 'prot' in 'services.mosquitto' unknown (did you mean 'port'?)",
        f"{site}:9: key 'nmae' in 'cameras.0.nodes.1' unknown (did you mean 'name'?)",
        f"{site}:10: key 'camras' unknown (did you mean 'cameras'?)",
        f"{site}:11: key 'site_id' given twice (the later one wins)",
    ]


def test_task_profile_unknown_keys_and_bad_values_with_lines(tmp_path):
    prof = _write(
        tmp_path,
        "t.yaml",
        """
        model: m.onnx
        decodr: yolov5
        input: {resise: letterbox}
        score_threshold: 3
    """,
    )
    with pytest.raises(ConfigProblems) as err:
        load_profile(str(prof))
    assert err.value.problems == [
        f"{prof}:2: key 'decodr' unknown (did you mean 'decoder'?)",
        f"{prof}:3: key 'resise' in 'input' unknown (did you mean 'resize'?)",
        f"{prof}:4: 'score_threshold': Input should be less than or equal to 1",
    ]


def test_not_yaml_names_the_line(tmp_path):
    bad = _write(tmp_path, "bad.yaml", "a: 1\nb: [1, 2\nc: 3\n")
    with pytest.raises(ConfigProblems, match=rf"{bad}:\d: not valid YAML"):
        load_yaml(bad)


class _Count(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["count"]
    thresholds: dict[str, int] = Field(default_factory=dict)


class _Zone(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["intrusion"]
    labels: list[str] = Field(default_factory=list)


class _Rules(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rules: list[_Count | _Zone] = Field(default_factory=list)


class _Tagged(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rules: list[Annotated[_Count | _Zone, Field(discriminator="type")]] = Field(default_factory=list)


@pytest.mark.parametrize("model", [_Rules, _Tagged])
def test_yaml_inside_a_params_string_points_into_the_outer_file(model):
    """A rules string at line 20 of a params file: lines are the outer file's; union tags skipped."""
    text = "rules:\n  - {type: count, treshold: 1}\n  - type: intrusion\n    lables: [person]\n"
    doc = load_yaml(text=text, source="site_params.yaml", line_offset=20)
    with pytest.raises(ConfigProblems) as err:
        validate_yaml(model, doc)
    probs = err.value.problems
    assert any(p.startswith("site_params.yaml:22: key 'treshold' in 'rules.0' unknown") for p in probs), probs
    assert any(
        p.startswith("site_params.yaml:24: key 'lables' in 'rules.1' unknown (did you mean 'labels'?)") for p in probs
    ), probs


def test_profile_option_keys_are_typed(tmp_path):
    """decoder_options / backend_options are models: a misspelled option is named, not defaulted."""
    prof = _write(
        tmp_path,
        "opts.yaml",
        """
        model: m.onnx
        decoder: yolov5
        decoder_options: {anchor: [[1, 2]]}
        backend: onnxruntime
        backend_options: {thread: 2, precision: fp8}
    """,
    )
    with pytest.raises(ConfigProblems) as err:
        load_profile(str(prof))
    probs = err.value.problems
    assert probs[0] == f"{prof}:3: key 'anchor' in 'decoder_options' unknown (did you mean 'anchors'?)"
    assert f"{prof}:5: key 'thread' in 'backend_options' unknown (did you mean 'threads'?)" in probs
    assert any(
        p.startswith(f"{prof}:5: 'backend_options.precision': Input should be 'fp32', 'fp16' or 'int8'") for p in probs
    ), probs
