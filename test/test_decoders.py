"""Decoders on real model outputs (NanoDet-m, CenterNet on dog.jpg) and on small ONNX graphs whose
outputs encode known boxes, decoded back to those boxes in source pixels."""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
import yaml
from onnx import TensorProto, helper

from nano_vision_ros.core.detection.nms import iou_matrix, nms, nms_numpy
from nano_vision_ros.core.detection.preprocess import Preprocessor
from nano_vision_ros.core.detection.profiles import build_detector, load_profile
from nano_vision_ros.core.errors import ConfigError, ModelError

REPO = Path(__file__).resolve().parent.parent
SHARED_MODELS = REPO.parent / "shared" / "models"

# Reference boxes read off dog.jpg (768x576) by eye with a 50 px grid drawn over it.
DOG_REF = {
    "dog": (133, 220, 310, 540),
    "bicycle": (126, 140, 567, 420),
    "truck": (466, 74, 695, 170),
}


def _match(dets, label: str) -> float:
    ref = np.array([DOG_REF[label]], np.float32)
    ious = [iou_matrix(ref, dets.boxes[i : i + 1])[0, 0] for i in range(len(dets)) if dets.label_of(i) == label]
    return max(ious, default=0.0)


@pytest.mark.parametrize("backend", ["onnxruntime", "opencv"])
def test_nanodet_finds_dog_bicycle_truck(samples, backend):
    det = build_detector(load_profile("coco_objects"), backend=backend)
    try:
        dets = det.detect(cv2.imread(str(samples / "dog.jpg")))
    finally:
        det.close()
    assert _match(dets, "dog") > 0.6
    assert _match(dets, "bicycle") > 0.7
    assert _match(dets, "truck") > 0.6
    assert (dets.boxes[:, 2] <= 768).all() and (dets.boxes[:, 3] <= 576).all()


def test_centernet_end_to_end(samples):
    model = SHARED_MODELS / "centernet_mbv3_512_coco.onnx"
    det = build_detector(load_profile("coco_centernet"), model=str(model))
    dets = det.detect(cv2.imread(str(samples / "dog.jpg")))
    assert _match(dets, "dog") > 0.6
    assert _match(dets, "bicycle") > 0.6
    # CenterNet calls the pickup a car; its box is the truck's place
    cars = [i for i in range(len(dets)) if dets.label_of(i) in ("car", "truck")]
    assert max(iou_matrix(np.array([DOG_REF["truck"]], np.float32), dets.boxes[cars])[0]) > 0.6


# --- small ONNX graphs with known outputs -------------------------------------------------------


def _const_model(
    path: Path,
    outputs: dict[str, np.ndarray],
    in_shape=(1, 3, 320, 320),
    extra_inputs=(),
    metadata: dict[str, str] | None = None,
    out_types: dict[str, int] | None = None,
) -> Path:
    """A graph whose outputs are constants (plus 0 x mean(input), so the input is used)."""
    nodes = [
        helper.make_node("ReduceMean", ["images"], ["m"], keepdims=0),
        helper.make_node("Mul", ["m", "zero"], ["z"]),
    ]
    inits = [helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0])]
    outs = []
    for name, arr in outputs.items():
        ttype = (out_types or {}).get(name, TensorProto.FLOAT)
        inits.append(helper.make_tensor(f"{name}_c", TensorProto.FLOAT, arr.shape, arr.astype(np.float32).ravel()))
        if ttype == TensorProto.FLOAT:
            nodes.append(helper.make_node("Add", [f"{name}_c", "z"], [name]))
        else:
            nodes.append(helper.make_node("Add", [f"{name}_c", "z"], [f"{name}_f"]))
            nodes.append(helper.make_node("Cast", [f"{name}_f"], [name], to=ttype))
        outs.append(helper.make_tensor_value_info(name, ttype, list(arr.shape)))
    inputs = [helper.make_tensor_value_info("images", TensorProto.FLOAT, list(in_shape))]
    for name, shape in extra_inputs:
        inputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape)))
    graph = helper.make_graph(nodes, "g", inputs, outs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    for k, v in (metadata or {}).items():
        model.metadata_props.append(onnx.StringStringEntryProto(key=k, value=v))
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def _profile(tmp_path: Path, **data) -> Path:
    p = tmp_path / f"{data.get('name', 'task')}.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


# Source frame 640x480 into a 320x320 letterbox: scale 0.5, pad_y 40. Source box -> input box.
SRC_W, SRC_H = 640, 480
SRC_BOX = np.array([100, 60, 300, 260], np.float32)
SRC_BOX2 = np.array([400, 200, 600, 440], np.float32)


def _to_input(b, letterbox=True):
    if letterbox:
        return b * 0.5 + np.array([0, 40, 0, 40], np.float32)
    return b * np.array([320 / SRC_W, 320 / SRC_H] * 2, np.float32)


def _cxcywh(b):
    return np.array([(b[0] + b[2]) / 2, (b[1] + b[3]) / 2, b[2] - b[0], b[3] - b[1]], np.float32)


def _frame():
    return np.full((SRC_H, SRC_W, 3), 90, np.uint8)


def _check(dets, expected: list[tuple[np.ndarray, str, float]]):
    assert len(dets) == len(expected), (dets.boxes, dets.scores, dets.class_ids)
    for box, label, score in expected:
        i = [j for j in range(len(dets)) if dets.label_of(j) == label]
        assert len(i) == 1, f"{label}: {len(i)} detections"
        np.testing.assert_allclose(dets.boxes[i[0]], box, atol=1.0)
        assert dets.scores[i[0]] == pytest.approx(score, abs=1e-3)


@pytest.mark.parametrize("resize", ["letterbox", "resize"])
def test_yolov5_flat(tmp_path, resize):
    rows = np.zeros((50, 8), np.float32)
    a, b = _to_input(SRC_BOX, resize == "letterbox"), _to_input(SRC_BOX2, resize == "letterbox")
    rows[0] = [*_cxcywh(a), 0.9, 0.1, 0.95, 0.05]  # head .855
    rows[1] = [*_cxcywh(a + 3), 0.8, 0.1, 0.9, 0.05]  # overlapping duplicate, suppressed by NMS
    rows[2] = [*_cxcywh(b), 0.7, 0.9, 0.1, 0.1]  # helmet .63
    rows[3] = [*_cxcywh(b), 0.2, 0.1, 0.1, 0.9]  # below threshold
    model = _const_model(tmp_path / "v5.onnx", {"output0": rows[None]})
    prof = _profile(
        tmp_path,
        name="ppe",
        model=str(model),
        decoder="yolov5",
        labels=["helmet", "head", "person"],
        score_threshold=0.3,
        input={"resize": resize},
    )
    det = build_detector(load_profile(str(prof)))
    dets = det.detect(_frame())
    _check(dets, [(SRC_BOX, "head", 0.855), (SRC_BOX2, "helmet", 0.63)])


def test_yolov5_raw_anchor_grid(tmp_path):
    """Raw head [1,3,H,W,5+C]: logits 0 put a box of the anchor's size at the cell centre."""
    gh = gw = 10  # stride 32 on 320
    head = np.full((1, 3, gh, gw, 7), -10.0, np.float32)
    head[0, 0, 5, 4, :4] = 0.0
    head[0, 0, 5, 4, 4] = 5.0
    head[0, 0, 5, 4, 5 + 1] = 5.0
    model = _const_model(tmp_path / "raw.onnx", {"p5": head})
    prof = _profile(
        tmp_path,
        name="raw",
        model=str(model),
        decoder="yolov5",
        labels=["smoke", "fire"],
        decoder_options={"anchors": [[116, 90, 156, 198, 373, 326]]},
    )
    det = build_detector(load_profile(str(prof)))
    dets = det.detect(_frame())
    cx, cy, w, h = (4 + 0.5) * 32, (5 + 0.5) * 32, 116, 90
    inp = np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], np.float32)
    src = (inp - np.array([0, 40, 0, 40])) / 0.5
    src = np.clip(src, 0, [SRC_W, SRC_H, SRC_W, SRC_H])
    s = 1 / (1 + np.exp(-5.0))
    _check(dets, [(src, "fire", s * s)])


def test_yolov8_with_metadata_names(tmp_path):
    n = 40
    out = np.zeros((1, 4 + 3, n), np.float32)
    a, b = _to_input(SRC_BOX), _to_input(SRC_BOX2)
    out[0, :4, 0], out[0, 4:, 0] = _cxcywh(a), [0.05, 0.88, 0.0]
    out[0, :4, 1], out[0, 4:, 1] = _cxcywh(a + 2), [0.05, 0.7, 0.0]
    out[0, :4, 7], out[0, 4:, 7] = _cxcywh(b), [0.0, 0.0, 0.66]
    model = _const_model(
        tmp_path / "v8.onnx",
        {"output0": out},
        in_shape=(1, 3, 320, 320),
        metadata={"names": "{0: 'helmet', 1: 'head', 2: 'person'}"},
    )
    prof = _profile(tmp_path, name="v8", model=str(model), decoder="auto")  # guessed; names from metadata
    det = build_detector(load_profile(str(prof)))
    assert det.labels == ["helmet", "head", "person"]
    assert det.decoder.name == "yolov8"
    _check(det.detect(_frame()), [(SRC_BOX, "head", 0.88), (SRC_BOX2, "person", 0.66)])


def test_yolov3_tiny_boxes_scores(tmp_path):
    n = 30
    boxes = np.zeros((1, n, 4), np.float32)
    scores = np.zeros((1, 2, n), np.float32)  # [1, C, N]
    boxes[0, 3] = _to_input(SRC_BOX)
    scores[0, :, 3] = [0.1, 0.8]
    boxes[0, 4] = _to_input(SRC_BOX) + 1
    scores[0, :, 4] = [0.1, 0.6]
    model = _const_model(tmp_path / "v3.onnx", {"boxes": boxes, "scores": scores})
    prof = _profile(tmp_path, name="v3", model=str(model), decoder="yolov3", labels=["vest", "no-vest"])
    _check(build_detector(load_profile(str(prof))).detect(_frame()), [(SRC_BOX, "no-vest", 0.8)])


def test_yolov3_model_zoo_layout(tmp_path):
    """onnx-model-zoo yolov3-tiny: yxyx boxes, scores [1,C,N], NMS indexes, an image_shape input."""
    n = 20
    boxes = np.zeros((1, n, 4), np.float32)
    scores = np.zeros((1, 2, n), np.float32)
    a, b = _to_input(SRC_BOX), _to_input(SRC_BOX2)
    boxes[0, 2] = a[[1, 0, 3, 2]]
    boxes[0, 5] = b[[1, 0, 3, 2]]
    scores[0, 0, 2], scores[0, 1, 5] = 0.9, 0.75
    indices = np.array([[0, 0, 2], [0, 1, 5]], np.float32)
    model = _const_model(
        tmp_path / "zoo.onnx",
        {"boxes": boxes, "scores": scores, "indices": indices},
        extra_inputs=[("image_shape", (1, 2))],
        out_types={"indices": TensorProto.INT32},
    )
    prof = _profile(
        tmp_path,
        name="zoo",
        model=str(model),
        decoder="yolov3",
        labels=["vest", "no-vest"],
        decoder_options={"box_format": "yxyx"},
    )
    det = build_detector(load_profile(str(prof)))
    assert not det.decoder.needs_nms
    _check(det.detect(_frame()), [(SRC_BOX, "vest", 0.9), (SRC_BOX2, "no-vest", 0.75)])


@pytest.mark.parametrize("width", [6, 7, "7flat"])
def test_end_to_end_layouts(tmp_path, width):
    a, b = _to_input(SRC_BOX, False), _to_input(SRC_BOX2, False)
    if width == 6:
        d = np.zeros((1, 10, 6), np.float32)
        d[0, 0], d[0, 1] = [*a, 0.9, 1], [*b, 0.5, 0]
    elif width == 7:
        d = np.zeros((1, 10, 7), np.float32)
        d[0, 0], d[0, 1] = [0, *a, 1, 0.9], [0, *b, 0, 0.5]
    else:  # YOLOv7 end2end ONNX: [N, 7] over the batch; a row of image 1 must be ignored
        d = np.array([[0, *a, 1, 0.9], [0, *b, 0, 0.5], [1, *a, 0, 0.99]], np.float32)
    model = _const_model(tmp_path / "e2e.onnx", {"det": d})
    prof = _profile(
        tmp_path, name="e2e", model=str(model), decoder="auto", labels=["smoke", "fire"], input={"resize": "resize"}
    )
    det = build_detector(load_profile(str(prof)))
    assert det.decoder.name == "end2end"
    _check(det.detect(_frame()), [(SRC_BOX, "fire", 0.9), (SRC_BOX2, "smoke", 0.5)])


def test_pipeline_class_gets_options(tmp_path, monkeypatch):
    (tmp_path / "my_pipeline.py").write_text(
        "import numpy as np\n"
        "from nano_vision_ros.core.detection.types import Detections\n"
        "class Two:\n"
        "    def __init__(self, face_model, min_size=10):\n"
        "        self.face_model, self.min_size, self.labels = face_model, min_size, ['mask', 'no_mask']\n"
        "    def detect(self, image_bgr):\n"
        "        return Detections([[1, 2, 3, 4]], [0.9], [1], self.labels)\n"
        "    def close(self):\n"
        "        pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    prof = _profile(
        tmp_path, name="mask2", pipeline="my_pipeline:Two", options={"face_model": "f.onnx", "min_size": 24}
    )
    det = build_detector(load_profile(str(prof)))
    assert (det.face_model, det.min_size) == ("f.onnx", 24)
    assert det.detect(_frame()).label_of(0) == "no_mask"
    bad = _profile(tmp_path, name="bad", pipeline="my_pipeline:Two", options={"nope": 1})
    with pytest.raises(ConfigError, match="bad options"):
        build_detector(load_profile(str(bad)))
    sys.modules.pop("my_pipeline", None)


def test_profile_errors(tmp_path):
    with pytest.raises(ConfigError, match="not found; known tasks:.*coco_objects"):
        load_profile("no_such_task")
    with pytest.raises(ConfigError, match="decoder"):
        load_profile(str(_profile(tmp_path, name="x", model="m.onnx", decoder="yolov99")))
    with pytest.raises(ModelError, match="model file not found"):
        build_detector(load_profile("helmet"))  # user-supplied model absent in a fresh checkout
    # labels that do not fit the model's class count
    rows = np.zeros((1, 5, 8), np.float32)
    model = _const_model(tmp_path / "v5.onnx", {"output0": rows})
    with pytest.raises(ModelError, match="labels name 2 classes but the model outputs 3"):
        build_detector(
            load_profile(str(_profile(tmp_path, name="y", model=str(model), decoder="yolov5", labels=["a", "b"])))
        )
    # decoder that does not fit the outputs
    with pytest.raises(ModelError, match="nanodet decoder"):
        build_detector(
            load_profile(str(_profile(tmp_path, name="z", model=str(model), decoder="nanodet", labels=["a", "b", "c"])))
        )


def test_nms_matches_numpy_and_is_class_aware():
    rng = np.random.default_rng(1)
    xy = rng.uniform(0, 200, (60, 2)).astype(np.float32)
    boxes = np.concatenate([xy, xy + rng.uniform(20, 80, (60, 2)).astype(np.float32)], 1)
    scores = rng.uniform(0, 1, 60).astype(np.float32)
    cls = rng.integers(0, 3, 60).astype(np.int32)
    a = nms(boxes, scores, cls, 0.5, 300)
    b = nms_numpy(boxes, scores, cls, 0.5)
    assert sorted(a.tolist()) == sorted(b.tolist())
    same = np.array([[0, 0, 10, 10], [0, 0, 10, 10]], np.float32)
    assert len(nms(same, np.array([0.9, 0.8], np.float32), np.array([0, 1], np.int32), 0.5)) == 2
    assert len(nms(same, np.array([0.9, 0.8], np.float32), np.array([0, 0], np.int32), 0.5)) == 1


def test_preprocessor_letterbox_and_layouts():
    img = np.zeros((100, 200, 3), np.uint8)
    img[:, :, 2] = 255  # red in BGR
    p = Preprocessor(64, 64, layout="nchw", resize="letterbox", channel_order="rgb", std=(255, 255, 255))
    t, tr = p(img)
    assert t.shape == (1, 3, 64, 64) and (tr.pad_x, tr.pad_y) == (0, 16)
    assert t[0, 0, 32, 32] == pytest.approx(1.0) and t[0, 2, 32, 32] == pytest.approx(0.0)
    assert t[0, 0, 2, 32] == pytest.approx(114 / 255)  # padding band
    q = Preprocessor(64, 32, layout="nhwc", resize="resize", channel_order="bgr", std=(1, 1, 1))
    t2, tr2 = q(img)
    assert t2.shape == (1, 32, 64, 3) and t2[0, 5, 5].tolist() == [0, 0, 255]
    np.testing.assert_allclose(tr2.to_source(np.array([[0, 0, 64, 32]], np.float32)), [[0, 0, 200, 100]])


def test_label_file_formats(tmp_path):
    from nano_vision_ros.core.detection.labels import labels_from_metadata, load_labels

    (tmp_path / "a.labels").write_text("# PPE\nhelmet\n\nhead\nperson\n")
    (tmp_path / "data.yaml").write_text("path: ppe\nnames:\n  0: helmet\n  1: head\n  2: person\n")
    (tmp_path / "b.json").write_text('["helmet", "head", "person"]')
    for f in ("a.labels", "data.yaml", "b.json"):
        assert load_labels(tmp_path / f) == ["helmet", "head", "person"], f
    (tmp_path / "gap.yaml").write_text("names: {0: a, 2: c}\n")
    with pytest.raises(ModelError, match="without gaps"):
        load_labels(tmp_path / "gap.yaml")
    with pytest.raises(ModelError, match="not found"):
        load_labels(tmp_path / "absent.txt")
    assert labels_from_metadata({"names": "{0: 'smoke', 1: 'fire'}"}) == ["smoke", "fire"]
    assert labels_from_metadata({}) is None
    assert len(load_labels("models/coco80.labels")) == 80


def test_class_filter_and_threshold_change(samples):
    prof = load_profile("coco_objects")
    prof = prof.model_copy(update={"classes": ["dog", "truck"]})
    det = build_detector(prof)
    img = cv2.imread(str(samples / "dog.jpg"))
    assert sorted(det.detect(img).label_of(i) for i in range(2)) == ["dog", "truck"]
    assert len(det.detect(img)) == 2
    det.score_threshold = 0.4  # truck (.36) drops out
    assert [det.detect(img).label_of(0)] == ["dog"] and len(det.detect(img)) == 1
    det.close()
    with pytest.raises(ModelError, match="not in the model's labels"):
        build_detector(prof.model_copy(update={"classes": ["unicorn"]}))


def test_device_preprocess_falls_back_to_cpu_where_unsupported(samples, caplog):
    prof = load_profile("coco_objects")
    prof = prof.model_copy(update={"input": prof.input.model_copy(update={"on_device": True})})
    det = build_detector(prof)  # ONNX Runtime has no device pre-processing: CPU, with a warning
    assert not det.device_preprocess
    assert "using the CPU" in caplog.text
    assert len(det.detect(cv2.imread(str(samples / "dog.jpg")))) >= 3
    det.close()


def test_overrides_merge_into_the_profile_by_one_rule():
    """ProfileOverrides: None = the profile's; a set value replaces it; the result is a valid profile."""
    from pydantic import ValidationError

    from nano_vision_ros.core.detection.profiles import ProfileOverrides, with_overrides

    prof = load_profile("coco_objects")
    assert with_overrides(prof, ProfileOverrides()) is prof
    merged = with_overrides(
        prof,
        ProfileOverrides(model="m.onnx", backend="opencv", device="cpu", score_threshold=0.6, threads=3),
    )
    assert (merged.model, merged.backend, merged.device, merged.score_threshold) == ("m.onnx", "opencv", "cpu", 0.6)
    assert merged.nms_threshold == prof.nms_threshold and merged.decoder == prof.decoder  # the rest: the profile's
    assert merged.backend_options.threads == 3 and prof.backend_options.threads is None  # the input is not changed
    for bad in ({"backend": "onnxrt"}, {"model": ""}, {"threads": 0}, {"score_threshold": 2.0}, {"modle": "x"}):
        with pytest.raises(ValidationError):
            ProfileOverrides(**bad)


def test_build_detector_names_a_bad_override():
    with pytest.raises(ConfigError, match="backend") as err:
        build_detector(load_profile("coco_objects"), backend="onnxrt")
    assert err.value.parameter == "backend"


def test_a_decoder_option_for_another_decoder_is_named(tmp_path):
    """decoder_options are checked per decoder: `anchors` (yolov5) under nanodet is an error, not ignored."""
    prof = load_profile("coco_objects").model_copy(deep=True)
    assert prof.decoder == "nanodet"
    prof.decoder_options.anchors = [[10.0, 13.0, 16.0, 30.0, 33.0, 23.0]]
    with pytest.raises(ConfigError, match=r"decoder nanodet: decoder_options anchors do not apply .*center_offset"):
        build_detector(prof)


def test_decoder_options_model_is_every_decoders_options():
    """The profile's DecoderOptions offers exactly what some decoder reads (no option that nothing reads)."""
    from nano_vision_ros.core.detection.decoders import DECODERS
    from nano_vision_ros.core.detection.profiles import DecoderOptions

    assert set().union(*(d.OPTIONS for d in DECODERS.values())) == set(DecoderOptions.model_fields)
