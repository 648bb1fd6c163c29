"""The frozen feature extractor under every attribute classifier, and how a crop is fed to it.

A backbone is an ONNX graph from an image batch to one feature vector per image. Its
pre-processing (size, layout, channel order, mean/std) travels inside the file as metadata
(key ``nano_vision.backbone``), so a composed classifier (backbone + head, one file) can be run
by anyone who has the file. ``extract`` cuts a backbone out of a shipped model (see
``models/attr_backbone_*.onnx.md``); ``bench/attributes_backbones.py`` compared the candidates.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from nano_vision_ros.core.errors import ModelError, RuntimeMissingError

log = logging.getLogger(__name__)
META_KEY = "nano_vision.backbone"
DEFAULT_BACKBONE = "models/attr_backbone_mobilenetv2.onnx"


@dataclass
class BackboneSpec:
    """How images reach the backbone; stored as JSON in the ONNX metadata."""

    name: str
    width: int
    height: int
    layout: str = "nhwc"  # nhwc | nchw
    channel_order: str = "rgb"  # rgb | bgr
    mean: tuple[float, float, float] = (127.5, 127.5, 127.5)
    std: tuple[float, float, float] = (127.5, 127.5, 127.5)
    batch: int = 0  # 0 = any batch size; 1 = one image per run
    features: int = 0  # length of the feature vector

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> BackboneSpec:
        d = json.loads(text)
        d["mean"], d["std"] = tuple(d["mean"]), tuple(d["std"])
        return cls(**d)

    def preprocess(self, crops: list[np.ndarray]) -> np.ndarray:
        """BGR crops of any size -> one float32 batch (plain resize: the crop's aspect is the region's)."""
        mean = np.asarray(self.mean, np.float32)
        std = np.asarray(self.std, np.float32)
        out = np.empty((len(crops), self.height, self.width, 3), np.float32)
        for k, img in enumerate(crops):
            im = cv2.resize(img, (self.width, self.height), interpolation=cv2.INTER_AREA)
            if self.channel_order == "rgb":
                im = im[:, :, ::-1]
            out[k] = (im.astype(np.float32) - mean) / std
        return out if self.layout == "nhwc" else np.ascontiguousarray(out.transpose(0, 3, 1, 2))


def read_metadata(model_path: str) -> dict[str, str]:
    import onnx

    m = onnx.load(model_path, load_external_data=False)
    return {p.key: p.value for p in m.metadata_props}


def extract(src: str, out: str, spec: BackboneSpec, input_name: str, output_name: str, pool: bool = False) -> Path:
    """Cut `src` at `output_name` (+ GlobalAveragePool + Flatten if `pool`), set the input size of
    `spec`, store `spec` in the metadata; the graph is checked and run once."""
    import onnx
    from onnx import helper, utils

    model = onnx.shape_inference.infer_shapes(onnx.load(src))  # the Extractor needs value_info
    sub = utils.Extractor(model).extract_model([input_name], [output_name])
    g = sub.graph
    if pool:
        g.node.extend(
            [
                helper.make_node("GlobalAveragePool", [output_name], ["_attr_pool"]),
                helper.make_node("Flatten", ["_attr_pool"], ["features"], axis=1),
            ]
        )
    else:
        g.node.append(helper.make_node("Flatten", [output_name], ["features"], axis=1))
    del g.output[:]
    g.output.append(helper.make_tensor_value_info("features", onnx.TensorProto.FLOAT, None))
    dims = g.input[0].type.tensor_type.shape.dim
    shape = (
        [spec.batch or "N", spec.height, spec.width, 3]
        if spec.layout == "nhwc"
        else [spec.batch or "N", 3, spec.height, spec.width]
    )
    for d, v in zip(dims, shape):
        d.Clear()
        if isinstance(v, str):
            d.dim_param = v
        else:
            d.dim_value = v
    del g.value_info[:]  # shapes inferred for the old input size would be wrong now
    sub = onnx.shape_inference.infer_shapes(sub)
    feats = FeatureExtractor.from_model(sub, spec)
    spec.features = int(feats.run([np.zeros((spec.height, spec.width, 3), np.uint8)]).shape[1])
    del sub.metadata_props[:]
    sub.metadata_props.add(key=META_KEY, value=spec.to_json())
    sub.producer_name = "nano_vision_ros.core.attributes.backbone"
    onnx.checker.check_model(sub)
    onnx.save(sub, out)
    return Path(out)


def _session(model: Any, threads: int) -> Any:
    try:
        import onnxruntime as ort
    except ImportError as err:
        raise RuntimeMissingError(f"onnxruntime is needed for attribute classifiers: {err}") from None
    so = ort.SessionOptions()
    so.intra_op_num_threads = max(1, threads)
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    data = model if isinstance(model, (bytes, str)) else model.SerializeToString()
    try:
        return ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])
    except Exception as err:  # noqa: BLE001 - ORT raises its own exception types
        raise ModelError(f"attribute model {model if isinstance(model, str) else '<graph>'}: {err}") from None


class FeatureExtractor:
    """Backbone features of BGR crops (frozen; used by `train` and `eval`)."""

    def __init__(self, session: Any, spec: BackboneSpec) -> None:
        self.session, self.spec = session, spec
        self.input = session.get_inputs()[0].name
        self.output = session.get_outputs()[0].name

    @classmethod
    def open(cls, path: str, threads: int = 1) -> FeatureExtractor:
        from nano_vision_ros.core.paths import resolve

        p = str(resolve(path))
        if not Path(p).is_file():
            raise ModelError(f"backbone {path}: file not found")
        meta = read_metadata(p)
        if META_KEY not in meta:
            raise ModelError(f"backbone {p}: no {META_KEY} metadata (not made by attributes.backbone.extract)")
        return cls(_session(p, threads), BackboneSpec.from_json(meta[META_KEY]))

    @classmethod
    def from_model(cls, model: Any, spec: BackboneSpec, threads: int = 1) -> FeatureExtractor:
        return cls(_session(model, threads), spec)

    def run(self, crops: list[np.ndarray], batch: int = 16) -> np.ndarray:
        step = 1 if self.spec.batch == 1 else batch
        outs = []
        for s in range(0, len(crops), step):
            x = self.spec.preprocess(crops[s : s + step])
            outs.append(self.session.run([self.output], {self.input: x})[0].reshape(len(x), -1))
        return np.concatenate(outs).astype(np.float32) if outs else np.zeros((0, self.spec.features), np.float32)
