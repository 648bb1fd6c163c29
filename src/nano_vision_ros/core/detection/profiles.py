"""Task profiles: which model, decoder, labels and thresholds make a task (``config/tasks/*.yaml``).

A profile names either a single-stage model (``model`` + ``decoder``) or a pipeline class
(``pipeline: "module:Class"`` + ``options``) implementing the ``Detector`` protocol. Users add a
task by dropping a YAML file in ``config/tasks/`` (or pointing at one by path); no code changes.
"""

from __future__ import annotations

import importlib
import logging
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from nano_vision_ros.core.config_yaml import ConfigProblems, load_yaml, validate_yaml
from nano_vision_ros.core.detection.decoders import DECODERS, make_decoder
from nano_vision_ros.core.detection.labels import labels_from_metadata, load_labels
from nano_vision_ros.core.detection.pipeline import SingleStageDetector
from nano_vision_ros.core.detection.types import Detector
from nano_vision_ros.core.errors import ConfigError, ModelError
from nano_vision_ros.core.paths import data_roots, resolve

log = logging.getLogger(__name__)
TASKS_DIR = "config/tasks"


class InputSpec(BaseModel):
    """Pre-processing; unset fields take the decoder's preset (YOLO: letterbox, RGB, /255)."""

    model_config = ConfigDict(extra="forbid")
    resize: Literal["letterbox", "resize"] | None = None
    channel_order: Literal["rgb", "bgr"] | None = None
    layout: Literal["auto", "nchw", "nhwc"] | None = None
    mean: list[float] | None = Field(None, min_length=3, max_length=3)
    std: list[float] | None = Field(None, min_length=3, max_length=3)
    pad_value: int | None = Field(None, ge=0, le=255)
    width: int | None = Field(None, gt=0, description="only for models with a dynamic input size")
    on_device: bool = Field(False, description="pre-process on the GPU into the input buffer (TensorRT backend)")
    height: int | None = Field(None, gt=0)


class DecoderOptions(BaseModel):
    """Decoder settings a profile may give (unset: the decoder's default); an unknown key is an error."""

    model_config = ConfigDict(extra="forbid")
    anchors: list[list[float]] | None = Field(None, description="yolov5 raw heads: anchors per output (w, h pairs)")
    box_format: Literal["xyxy", "yxyx", "cxcywh"] | None = Field(None, description="yolov3: box layout")
    normalized: bool | None = Field(None, description="yolov3 / end2end: boxes are 0..1")
    strides: list[int] | None = Field(None, description="nanodet: head strides")
    reg_max: int | None = Field(None, ge=1, description="nanodet: distribution bins - 1")
    center_offset: float | None = Field(None, description="nanodet: anchor centre offset")
    layout: Literal["xyxy_score_class", "batch_xyxy_class_score", "efficient_nms"] | None = Field(
        None, description="end2end: output layout"
    )


class BackendOptions(BaseModel):
    """Backend settings a profile may give (each backend takes the ones it knows); unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")
    threads: int | None = Field(None, ge=0, description="onnxruntime: intra-op threads (the node's threads > 0 wins)")
    precision: Literal["fp32", "fp16", "int8"] | None = Field(None, description="tensorrt / onnxruntime-trt precision")
    workspace_mb: int | None = Field(None, gt=0, description="tensorrt: builder workspace")
    cache_dir: str | None = Field(None, description="where built engines are cached")
    calibration_images: str | None = Field(None, description="tensorrt int8: folder of calibration images")
    calibration_cache: str | None = Field(None, description="tensorrt int8: calibration cache file")
    input_shape: list[int] | None = Field(None, description="tensorrt: input shape of a dynamic model")
    dla_core: int | None = Field(None, ge=0, description="tensorrt: DLA core (Jetson Xavier/Orin)")
    spinning: bool | None = Field(None, description="onnxruntime: let idle threads spin")

    def kwargs(self) -> dict[str, Any]:
        """The options that are set, as keyword arguments of create_backend."""
        out = self.model_dump(exclude_none=True)
        if "input_shape" in out:
            out["input_shape"] = tuple(out["input_shape"])
        return out


Backend = Literal["auto", "onnxruntime", "tensorrt", "opencv"]


class TaskProfile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    description: str = ""
    model: str | None = None
    backend: Backend = "auto"
    device: str = "auto"
    decoder: str = "auto"  # a name of the DECODERS registry (checked below: the registry can grow)
    decoder_options: DecoderOptions = Field(default_factory=DecoderOptions)
    labels: str | list[str] | None = None
    input: InputSpec = Field(default_factory=InputSpec)
    score_threshold: float = Field(0.35, ge=0.0, le=1.0)
    nms_threshold: float = Field(0.45, ge=0.0, le=1.0)
    max_detections: int = Field(100, gt=0)
    classes: list[str] | None = None
    pipeline: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)
    backend_options: BackendOptions = Field(default_factory=BackendOptions)

    @field_validator("decoder")
    @classmethod
    def _known_decoder(cls, v: str) -> str:
        if v != "auto" and v not in DECODERS:
            raise ValueError(f"unknown decoder {v!r}; choose one of auto, {', '.join(DECODERS)}")
        return v

    @field_validator("pipeline")
    @classmethod
    def _pipeline_form(cls, v: str | None) -> str | None:
        if v is not None and ":" not in v:
            raise ValueError("pipeline must be 'module:Class'")
        return v


class ProfileOverrides(BaseModel):
    """What a caller (detector node, `nano-vision check`, a bench) sets over its task profile.

    None = the profile's value: "not set" is explicit, no ``""`` / ``0`` stands for it (a ROS
    parameter cannot be None, so the node turns its empty default into None at its boundary).
    `with_overrides` is the one merge rule.
    """

    model_config = ConfigDict(extra="forbid")
    model: str | None = Field(None, min_length=1, description="model file instead of the profile's")
    backend: Backend | None = None
    device: str | None = Field(None, min_length=1, description="auto | cpu | cuda | tensorrt | cuda:N")
    score_threshold: float | None = Field(None, ge=0, le=1)
    nms_threshold: float | None = Field(None, ge=0, le=1)
    threads: int | None = Field(None, ge=1, description="onnxruntime intra-op threads (backend_options.threads)")


def with_overrides(profile: TaskProfile, overrides: ProfileOverrides) -> TaskProfile:
    """The profile with every set override in place of its value, validated as a profile again."""
    set_ = overrides.model_dump(exclude_none=True)
    if not set_:
        return profile
    threads = set_.pop("threads", None)
    data = {**profile.model_dump(), **set_}
    if threads is not None:
        data["backend_options"] = {**data["backend_options"], "threads": threads}
    return TaskProfile.model_validate(data)


def available_tasks() -> list[str]:
    names: set[str] = set()
    for root in data_roots():
        d = root / TASKS_DIR
        if d.is_dir():
            names.update(p.stem for p in d.glob("*.yaml"))
    return sorted(names)


def find_profile(task: str) -> Path:
    """A profile by name (``config/tasks/<name>.yaml``) or by path."""
    if task.endswith((".yaml", ".yml")) or "/" in task:
        p = resolve(task)
    else:
        p = resolve(f"{TASKS_DIR}/{task}.yaml")
    if not p.is_file():
        raise ConfigError(
            f"task profile {task!r} not found; known tasks: {', '.join(available_tasks()) or 'none'}", "task"
        )
    return p


def load_profile(task: str) -> TaskProfile:
    p = find_profile(task)
    doc = load_yaml(p)
    data = {} if doc.data is None else doc.data
    if not isinstance(data, dict):
        raise ConfigProblems([f"{doc.where()}: task profile: expected a mapping (model, decoder, labels, …)"], "task")
    return validate_yaml(TaskProfile, doc, {"name": p.stem, **data}, parameter="task")


def _import(spec: str) -> Any:
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ConfigError(f"pipeline {spec!r}: cannot import {module_name}: {err}", "task") from None
    try:
        return getattr(module, attr)
    except AttributeError:
        raise ConfigError(f"pipeline {spec!r}: {module_name} has no {attr}", "task") from None


def calibration_preprocess(profile: TaskProfile, onnx_path: str):
    """The task's pre-processing as image -> tensor, for INT8 calibration of a TensorRT build."""
    from nano_vision_ros.core.detection.decoders import DECODERS, guess_decoder
    from nano_vision_ros.core.detection.pipeline import input_geometry
    from nano_vision_ros.core.detection.preprocess import Preprocessor
    from nano_vision_ros.core.inference.opencv_backend import onnx_io

    inputs, outputs, _ = onnx_io(onnx_path)
    name = guess_decoder(outputs) if profile.decoder == "auto" else profile.decoder
    pre = {
        **DECODERS[name].preset,
        **{
            k: v for k, v in profile.input.model_dump(exclude={"width", "height", "on_device"}).items() if v is not None
        },
    }
    size = (profile.input.width, profile.input.height) if profile.input.width and profile.input.height else None
    layout, w, h = input_geometry(inputs[0], pre.pop("layout", "auto"), size)
    p = Preprocessor(w, h, layout=layout, **pre)
    return lambda image: p(image)[0].copy()


def build_detector(
    profile: TaskProfile,
    *,
    model: str | None = None,
    backend: str | None = None,
    device: str | None = None,
    score_threshold: float | None = None,
    nms_threshold: float | None = None,
    threads: int | None = None,
    **backend_options: Any,
) -> Detector:
    """Load the task's model (or pipeline); ModelError / RuntimeMissingError / ConfigError on failure.

    The keyword settings are `ProfileOverrides` (None = the profile's), merged by `with_overrides`.
    """
    try:
        overrides = ProfileOverrides(
            model=model,
            backend=backend,  # checked here: a wrong name is a ConfigError
            device=device,
            score_threshold=score_threshold,
            nms_threshold=nms_threshold,
            threads=threads,
        )
    except ValidationError as err:
        e = err.errors()[0]
        name = str(e["loc"][0]) if e.get("loc") else "task"
        raise ConfigError(f"{name}: {e['msg']} (got {e.get('input')!r})", name) from None
    if profile.pipeline:
        cls = _import(profile.pipeline)
        options = dict(profile.options)
        try:
            det = cls(**options)
        except TypeError as err:
            raise ConfigError(f"pipeline {profile.pipeline}: bad options {sorted(options)}: {err}", "task") from None
        for name in ("score_threshold", "nms_threshold"):
            value = getattr(overrides, name)
            if value is not None and hasattr(det, name):
                setattr(det, name, value)
        return det
    from nano_vision_ros.core.inference import create_backend

    profile = with_overrides(profile, overrides)
    if not profile.model:
        raise ConfigError(f"task {profile.name!r} names no model; set 'model'", "model")
    resolved = str(resolve(profile.model))
    opts = {**profile.backend_options.kwargs(), **backend_options}
    if profile.backend == "tensorrt" and resolved.lower().endswith(".onnx") and opts.get("precision") == "int8":
        opts.setdefault("preprocess", calibration_preprocess(profile, resolved))
    be = create_backend(resolved, profile.backend, device=profile.device, **opts)
    try:
        try:
            decoder = make_decoder(profile.decoder, be.outputs, **profile.decoder_options.model_dump(exclude_none=True))
        except ModelError as err:  # the file first: the diagnostics line is short
            raise ModelError(f"model {resolved}: {err}") from None
        labels: list[str] = []
        if isinstance(profile.labels, list):
            labels = profile.labels
        elif isinstance(profile.labels, str):
            labels = load_labels(profile.labels)
        else:
            labels = labels_from_metadata(be.metadata) or []
        pre = profile.input.model_dump(exclude={"width", "height", "on_device"})
        size = (profile.input.width, profile.input.height) if profile.input.width and profile.input.height else None
        try:
            return SingleStageDetector(
                be,
                decoder,
                labels,
                pre,
                score_threshold=profile.score_threshold,
                nms_threshold=profile.nms_threshold,
                max_detections=profile.max_detections,
                classes=profile.classes,
                input_size=size,
                device_preprocess=profile.input.on_device,
            )
        except ModelError as err:
            if "labels" in str(err):  # name both files: the labels and the model they do not fit
                where = f"labels {resolve(profile.labels)}, " if isinstance(profile.labels, str) else ""
                raise ModelError(f"{err} ({where}model {resolved})") from None
            raise ModelError(f"model {resolved}: {err}") from None
    except Exception:
        be.close()
        raise
