"""Output decoders: raw model outputs -> boxes (model-input pixels), scores, class indexes.

One class per output layout, chosen by name in a task profile (``decoder:``) or guessed from the
output shapes (``auto``). ``bind`` checks the model's outputs once at load time, so a model that
does not fit its decoder is a ``ModelError`` at configure time, not a crash on the first frame.
Each decoder also names the pre-processing its model family is usually trained with (``preset``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from nano_vision_ros.core.errors import ConfigError, ModelError
from nano_vision_ros.core.inference.base import TensorInfo

Decoded = tuple[np.ndarray, np.ndarray, np.ndarray]

YOLO_PRESET = {"resize": "letterbox", "channel_order": "rgb", "mean": [0.0, 0.0, 0.0], "std": [255.0, 255.0, 255.0]}


def _empty() -> Decoded:
    return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int32)


def _dim(shape: Sequence[Any], i: int) -> int | None:
    try:
        d = shape[i]
    except IndexError:
        return None
    return d if isinstance(d, int) and d > 0 else None


def cxcywh_to_xyxy(b: np.ndarray) -> np.ndarray:
    out = np.empty_like(b, dtype=np.float32)
    half = b[:, 2:4] / 2
    out[:, :2] = b[:, :2] - half
    out[:, 2:] = b[:, :2] + half
    return out


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


class Decoder:
    """Base: subclasses set ``name``, ``preset`` and implement ``bind`` and ``__call__``."""

    name = ""
    #: the pipeline runs class-aware NMS on the result (False for models with NMS inside)
    needs_nms = True
    preset: ClassVar[dict[str, Any]] = YOLO_PRESET
    #: the decoder_options this decoder reads: another one set is an error naming it, not ignored
    OPTIONS: ClassVar[frozenset[str]] = frozenset()
    num_classes: int | None = None

    def __init__(self, **options: Any) -> None:
        unknown = sorted(set(options) - self.OPTIONS)
        if unknown:
            known = ", ".join(sorted(self.OPTIONS)) or "none"
            raise ConfigError(
                f"decoder {self.name}: decoder_options {', '.join(unknown)} do not apply to it (its options: {known})",
                "task",
            )
        self.options = options
        self.input_w = self.input_h = 0

    def bind(self, inputs: list[TensorInfo], outputs: list[TensorInfo], input_w: int, input_h: int) -> None:
        """Check the model's outputs fit; remember sizes. Raises ModelError naming the mismatch."""
        self.input_w, self.input_h = input_w, input_h

    def extra_feeds(self, inputs: list[TensorInfo]) -> dict[str, np.ndarray]:
        """Feeds for inputs beyond the image (e.g. an ``image_shape`` input); none by default."""
        return {}

    def __call__(self, outputs: list[np.ndarray], score_threshold: float) -> Decoded:
        raise NotImplementedError


class YoloV5Decoder(Decoder):
    """YOLOv5/v7 layouts: ``[1, N, 5+C]`` (cx, cy, w, h, objectness, class scores) with the Detect
    layer's grid decoding inside the export, or the raw heads ``[1, 3, H, W, 5+C]`` (one per stride),
    decoded here with the anchor grid (``anchors`` option, YOLOv5 P3-P5 defaults)."""

    name = "yolov5"
    OPTIONS = frozenset({"anchors"})
    DEFAULT_ANCHORS: ClassVar[list[list[int]]] = [
        [10, 13, 16, 30, 33, 23],
        [30, 61, 62, 45, 59, 119],
        [116, 90, 156, 198, 373, 326],
    ]

    def bind(self, inputs: list[TensorInfo], outputs: list[TensorInfo], input_w: int, input_h: int) -> None:
        super().bind(inputs, outputs, input_w, input_h)
        self.raw = len(outputs[0].shape) == 5
        if self.raw:
            for o in outputs:
                if len(o.shape) != 5 or _dim(o.shape, 1) not in (None, 3):
                    raise ModelError(
                        f"yolov5 decoder: raw head outputs must be [1,3,H,W,5+C], got {o.name} {list(o.shape)}"
                    )
            self._grids: dict[tuple[int, int, int], tuple[np.ndarray, np.ndarray]] = {}
            self.anchors = np.asarray(self.options.get("anchors", self.DEFAULT_ANCHORS), np.float32).reshape(
                len(outputs), -1, 2
            )
        elif len(outputs[0].shape) != 3:
            raise ModelError(
                f"yolov5 decoder: expected output [1,N,5+C], got {outputs[0].name} {list(outputs[0].shape)}"
            )
        last = _dim(outputs[0].shape, -1)
        if last is not None:
            if last < 6:
                raise ModelError(f"yolov5 decoder: last output axis is {last}, expected 5 + number of classes")
            self.num_classes = last - 5

    def _flatten_raw(self, outputs: list[np.ndarray]) -> np.ndarray:
        parts = []
        for level, out in enumerate(outputs):
            _, na, gh, gw, no = out.shape
            stride = self.input_h / gh
            key = (level, gh, gw)
            if key not in self._grids:
                yv, xv = np.meshgrid(np.arange(gh, dtype=np.float32), np.arange(gw, dtype=np.float32), indexing="ij")
                grid = np.stack((xv, yv), -1)[None]  # 1, gh, gw, 2
                anchor = self.anchors[level].reshape(na, 1, 1, 2)
                self._grids[key] = (grid, anchor)
            grid, anchor = self._grids[key]
            y = _sigmoid(out[0].astype(np.float32))
            xy = (y[..., :2] * 2 - 0.5 + grid) * stride
            wh = (y[..., 2:4] * 2) ** 2 * anchor
            parts.append(np.concatenate((xy, wh, y[..., 4:]), -1).reshape(-1, no))
        return np.concatenate(parts, 0)

    def __call__(self, outputs, score_threshold):
        pred = self._flatten_raw(outputs) if self.raw else outputs[0][0]
        obj = pred[:, 4]
        cand = obj > score_threshold
        if not cand.any():
            return _empty()
        p = pred[cand]
        cls_scores = p[:, 5:] * p[:, 4:5]
        cls = cls_scores.argmax(1)
        scores = cls_scores[np.arange(len(p)), cls]
        keep = scores > score_threshold
        return cxcywh_to_xyxy(p[keep, :4]), scores[keep].astype(np.float32), cls[keep].astype(np.int32)


class YoloV8Decoder(Decoder):
    """YOLOv8 / YOLO11 (Ultralytics) ``[1, 4+C, N]``: cx, cy, w, h then class scores, no objectness.
    ``[1, N, 4+C]`` (transposed exports) is recognised when N > 4+C."""

    name = "yolov8"

    def bind(self, inputs: list[TensorInfo], outputs: list[TensorInfo], input_w: int, input_h: int) -> None:
        super().bind(inputs, outputs, input_w, input_h)
        shape = outputs[0].shape
        if len(shape) != 3:
            raise ModelError(f"yolov8 decoder: expected output [1,4+C,N], got {outputs[0].name} {list(shape)}")
        a, b = _dim(shape, 1), _dim(shape, 2)
        self.transposed = a is not None and b is not None and a > b
        ch = b if self.transposed else a
        if ch is not None:
            if ch < 5:
                raise ModelError(f"yolov8 decoder: channel axis is {ch}, expected 4 + number of classes")
            self.num_classes = ch - 4

    def __call__(self, outputs, score_threshold):
        out = outputs[0][0]
        pred = out if self.transposed else out.T  # N, 4+C (a view)
        cls_scores = pred[:, 4:]
        scores = cls_scores.max(1)
        cand = scores > score_threshold
        if not cand.any():
            return _empty()
        p = pred[cand]
        cls = p[:, 4:].argmax(1)
        return cxcywh_to_xyxy(p[:, :4]), scores[cand].astype(np.float32), cls.astype(np.int32)


class YoloV3Decoder(Decoder):
    """Darknet-style YOLOv3 / YOLOv3-tiny ONNX exports with separate outputs: boxes ``[1, N, 4]`` and
    scores ``[1, N, C]`` or ``[1, C, N]`` (PINTO-style), optionally a third output of selected
    ``(batch, class, box)`` indexes ``[M, 3]`` / ``[1, M, 3]`` when NMS is inside (onnx-model-zoo
    yolov3-tiny, whose ``image_shape`` input is fed the network input size so boxes stay in
    network pixels). Options: ``box_format`` xyxy | yxyx | cxcywh, ``normalized`` (0..1 boxes)."""

    name = "yolov3"
    OPTIONS = frozenset({"box_format", "normalized"})

    def bind(self, inputs: list[TensorInfo], outputs: list[TensorInfo], input_w: int, input_h: int) -> None:
        super().bind(inputs, outputs, input_w, input_h)
        self.box_format = self.options.get("box_format", "xyxy")
        if self.box_format not in ("xyxy", "yxyx", "cxcywh"):
            raise ModelError(f"yolov3 decoder: box_format must be xyxy, yxyx or cxcywh, not {self.box_format!r}")
        self.normalized = bool(self.options.get("normalized", False))
        self.i_boxes = self.i_scores = self.i_index = None
        for i, o in enumerate(outputs):
            shape = o.shape
            if len(shape) == 3 and _dim(shape, 2) == 4 and self.i_boxes is None:
                self.i_boxes = i
            elif (len(shape) in (2, 3)) and _dim(shape, -1) == 3 and np.issubdtype(o.dtype, np.integer):
                self.i_index = i
            elif len(shape) == 3 and self.i_scores is None:
                self.i_scores = i
        if self.i_boxes is None or self.i_scores is None:
            raise ModelError(
                "yolov3 decoder: needs a boxes output [1,N,4] and a scores output [1,N,C] or [1,C,N]; "
                f"got {[(o.name, list(o.shape)) for o in outputs]}"
            )
        bs = outputs[self.i_boxes].shape
        ss = outputs[self.i_scores].shape
        n = _dim(bs, 1)
        self.scores_cn = n is not None and _dim(ss, 2) == n and _dim(ss, 1) != n
        c = _dim(ss, 1) if self.scores_cn else _dim(ss, 2)
        self.num_classes = c
        self.needs_nms = self.i_index is None

    def extra_feeds(self, inputs):
        feeds = {}
        for t in inputs[1:]:
            if len(t.shape) == 2 and _dim(t.shape, 1) == 2:
                feeds[t.name] = np.array([[self.input_h, self.input_w]], dtype=t.dtype)
        return feeds

    def _boxes(self, b: np.ndarray) -> np.ndarray:
        b = b.astype(np.float32)
        if self.box_format == "yxyx":
            b = b[:, [1, 0, 3, 2]]
        elif self.box_format == "cxcywh":
            b = cxcywh_to_xyxy(b)
        if self.normalized:
            b = b * np.array([self.input_w, self.input_h, self.input_w, self.input_h], np.float32)
        return b

    def __call__(self, outputs, score_threshold):
        boxes = outputs[self.i_boxes][0]
        scores = outputs[self.i_scores][0]
        if self.scores_cn:
            scores = scores.T
        if self.i_index is not None:
            idx = outputs[self.i_index].reshape(-1, 3).astype(np.int64)
            idx = idx[(idx[:, 0] == 0) & (idx[:, 2] >= 0)]
            cls, bi = idx[:, 1], idx[:, 2]
            sc = scores[bi, cls]
            keep = sc > score_threshold
            return self._boxes(boxes[bi[keep]]), sc[keep].astype(np.float32), cls[keep].astype(np.int32)
        best = scores.max(1)
        cand = best > score_threshold
        if not cand.any():
            return _empty()
        cls = scores[cand].argmax(1)
        return self._boxes(boxes[cand]), best[cand].astype(np.float32), cls.astype(np.int32)


class NanoDetDecoder(Decoder):
    """NanoDet (GFL head): per stride a class-score map ``[1, HW, C]`` (already 0..1) and a box
    distribution map ``[1, HW, 4*(reg_max+1)]``; softmax over the bins, expectation x stride =
    distance from the cell centre to each edge. Options: ``strides`` (8, 16, 32), ``reg_max`` (10),
    ``center_offset`` (0.5: NanoDet-m's cell centres; 0 for NanoDet-Plus)."""

    name = "nanodet"
    OPTIONS = frozenset({"strides", "reg_max", "center_offset"})
    preset: ClassVar[dict[str, Any]] = {
        "resize": "resize",
        "channel_order": "bgr",
        "mean": [103.53, 116.28, 123.675],
        "std": [57.375, 57.12, 58.395],
    }

    def bind(self, inputs: list[TensorInfo], outputs: list[TensorInfo], input_w: int, input_h: int) -> None:
        super().bind(inputs, outputs, input_w, input_h)
        self.strides = [int(s) for s in self.options.get("strides", (8, 16, 32))]
        self.reg_max = int(self.options.get("reg_max", 10))
        offset = float(self.options.get("center_offset", 0.5))
        bins = 4 * (self.reg_max + 1)
        cells = {}
        for s in self.strides:
            gh, gw = math.ceil(input_h / s), math.ceil(input_w / s)
            cells[gh * gw] = (s, gh, gw)
        cls_out: dict[int, int] = {}
        reg_out: dict[int, int] = {}
        ncls = None
        for i, o in enumerate(outputs):
            if len(o.shape) != 3:
                continue
            n, last = _dim(o.shape, 1), _dim(o.shape, 2)
            if n not in cells:
                continue
            if last == bins:
                reg_out[n] = i
            else:
                cls_out[n] = i
                ncls = last
        missing = [cells[n][0] for n in cells if n not in cls_out or n not in reg_out]
        if missing:
            raise ModelError(
                f"nanodet decoder: for input {input_w}x{input_h} expected score and box maps for strides "
                f"{self.strides} ({sorted(cells)} cells, box maps of {bins} = 4x(reg_max+1) bins); missing for "
                f"strides {missing}; outputs {[(o.name, list(o.shape)) for o in outputs]}"
            )
        self.num_classes = ncls
        self.levels = []
        for n, (s, gh, gw) in cells.items():
            yv, xv = np.meshgrid(np.arange(gh, dtype=np.float32), np.arange(gw, dtype=np.float32), indexing="ij")
            centers = np.stack(((xv.ravel() + offset) * s, (yv.ravel() + offset) * s), 1)
            self.levels.append((cls_out[n], reg_out[n], float(s), centers))
        self._proj = np.arange(self.reg_max + 1, dtype=np.float32)

    def __call__(self, outputs, score_threshold):
        all_b, all_s, all_c = [], [], []
        for ci, ri, stride, centers in self.levels:
            cls_map = outputs[ci][0]
            best = cls_map.max(1)
            cand = np.flatnonzero(best > score_threshold)
            if cand.size == 0:
                continue
            cls = cls_map[cand].argmax(1)
            reg = outputs[ri][0][cand].reshape(-1, 4, self.reg_max + 1).astype(np.float32)
            reg = np.exp(reg - reg.max(2, keepdims=True))
            dist = (reg / reg.sum(2, keepdims=True)) @ self._proj * stride  # k, 4: l, t, r, b
            c = centers[cand]
            all_b.append(np.concatenate((c - dist[:, :2], c + dist[:, 2:]), 1))
            all_s.append(best[cand])
            all_c.append(cls)
        if not all_b:
            return _empty()
        return (
            np.concatenate(all_b).astype(np.float32),
            np.concatenate(all_s).astype(np.float32),
            np.concatenate(all_c).astype(np.int32),
        )


class EndToEndDecoder(Decoder):
    """Models with NMS inside. Layouts (``layout`` option, guessed from the shape):
    ``[1, N, 6]`` x1, y1, x2, y2, score, class (YOLOv10 / Ultralytics ``nms=True`` / CenterNet here);
    ``[1, N, 7]`` or ``[N, 7]`` batch, x1, y1, x2, y2, class, score (YOLOv7 end2end ONNX);
    four outputs num_dets ``[1,1]``, boxes ``[1,N,4]``, scores ``[1,N]``, classes ``[1,N]``
    (TensorRT EfficientNMS). ``normalized: true`` for 0..1 boxes."""

    name = "end2end"
    OPTIONS = frozenset({"normalized", "layout"})
    needs_nms = False

    def bind(self, inputs: list[TensorInfo], outputs: list[TensorInfo], input_w: int, input_h: int) -> None:
        super().bind(inputs, outputs, input_w, input_h)
        self.normalized = bool(self.options.get("normalized", False))
        self.mode = None
        for i, o in enumerate(outputs):
            if (len(o.shape) == 3 and _dim(o.shape, 2) in (6, 7)) or (len(o.shape) == 2 and _dim(o.shape, 1) == 7):
                self.mode, self.index = _dim(o.shape, -1), i
                break
        if self.mode is None and len(outputs) >= 4:
            shapes = [o.shape for o in outputs]
            if len(shapes[1]) == 3 and _dim(shapes[1], 2) == 4:
                self.mode = 4
        if self.mode is None:
            raise ModelError(
                "end2end decoder: expected an output [1,N,6] / [1,N,7] or EfficientNMS's four outputs; "
                f"got {[(o.name, list(o.shape)) for o in outputs]}"
            )
        self.layout = (
            self.options.get("layout")
            or {6: "xyxy_score_class", 7: "batch_xyxy_class_score", 4: "efficient_nms"}[self.mode]
        )

    def __call__(self, outputs, score_threshold):
        if self.mode == 4:
            n = int(np.asarray(outputs[0]).reshape(-1)[0])
            boxes = outputs[1][0][:n].astype(np.float32)
            scores = outputs[2][0][:n].astype(np.float32)
            cls = outputs[3][0][:n].astype(np.int32)
        else:
            d = outputs[self.index]
            d = d[d[:, 0] == 0] if d.ndim == 2 else d[0]  # YOLOv7 end2end ONNX: [N,7] rows of all images
            if self.layout == "batch_xyxy_class_score":
                boxes, cls, scores = d[:, 1:5], d[:, 5], d[:, 6]
            elif self.layout == "xyxy_class_score":
                boxes, cls, scores = d[:, 0:4], d[:, 4], d[:, 5]
            else:
                boxes, scores, cls = d[:, 0:4], d[:, 4], d[:, 5]
        keep = scores > score_threshold
        boxes = boxes[keep].astype(np.float32)
        if self.normalized:
            boxes = boxes * np.array([self.input_w, self.input_h, self.input_w, self.input_h], np.float32)
        return boxes, scores[keep].astype(np.float32), np.asarray(cls[keep]).astype(np.int32)


class CenterNetDecoder(EndToEndDecoder):
    """The shared MobileNetV3 CenterNet: NHWC RGB 0..255, detections ``[1, 100, 6]`` in input pixels."""

    name = "centernet"
    preset: ClassVar[dict[str, Any]] = {
        "resize": "resize",
        "channel_order": "rgb",
        "mean": [0.0, 0.0, 0.0],
        "std": [1.0, 1.0, 1.0],
    }


DECODERS: dict[str, type[Decoder]] = {
    "yolov5": YoloV5Decoder,
    "yolov7": YoloV5Decoder,
    "yolov8": YoloV8Decoder,
    "yolo11": YoloV8Decoder,
    "yolov3": YoloV3Decoder,
    "yolov3_tiny": YoloV3Decoder,
    "nanodet": NanoDetDecoder,
    "end2end": EndToEndDecoder,
    "centernet": CenterNetDecoder,
}


def guess_decoder(outputs: list[TensorInfo]) -> str:
    """Name the decoder that fits the output shapes (used for ``decoder: auto``)."""
    shapes = [tuple(o.shape) for o in outputs]
    if len(shapes) == 1 and len(shapes[0]) == 2 and _dim(shapes[0], 1) == 7:
        return "end2end"
    if any(len(s) == 3 and _dim(s, 2) in (6, 7) for s in shapes) and not (
        len(shapes) == 1 and _dim(shapes[0], 1) in (6, 7)
    ):
        return "end2end"
    if len(shapes) >= 4 and len(shapes[1]) == 3 and _dim(shapes[1], 2) == 4 and len(shapes[0]) == 2:
        return "end2end"
    if len(shapes) >= 6 and all(len(s) == 3 for s in shapes):
        return "nanodet"
    if all(len(s) == 5 for s in shapes):
        return "yolov5"
    if len(shapes) >= 2 and any(len(s) == 3 and _dim(s, 2) == 4 for s in shapes):
        return "yolov3"
    if len(shapes) == 1 and len(shapes[0]) == 3:
        a, b = _dim(shapes[0], 1), _dim(shapes[0], 2)
        if a is not None and b is not None:
            return "yolov8" if a < b else "yolov5"
        if b is None:
            return "yolov8"
        return "yolov5"
    raise ModelError(
        f"cannot guess the decoder from outputs {[list(s) for s in shapes]}; set 'decoder' in the task profile"
    )


def make_decoder(name: str, outputs: list[TensorInfo], **options: Any) -> Decoder:
    if name == "auto":
        name = guess_decoder(outputs)
    if name not in DECODERS:
        raise ModelError(f"unknown decoder {name!r}; choose one of auto, {', '.join(DECODERS)}")
    return DECODERS[name](**options)
