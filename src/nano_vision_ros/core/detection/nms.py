"""Class-aware non-maximum suppression (OpenCV's batched NMS, numpy fallback)."""

from __future__ import annotations

import cv2
import numpy as np


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, M) IoU of x1, y1, x2, y2 boxes."""
    a = np.asarray(a, np.float32).reshape(-1, 4)
    b = np.asarray(b, np.float32).reshape(-1, 4)
    tl = np.maximum(a[:, None, :2], b[None, :, :2])
    br = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(br - tl, 0, None), axis=2)
    area_a = np.prod(np.clip(a[:, 2:] - a[:, :2], 0, None), axis=1)
    area_b = np.prod(np.clip(b[:, 2:] - b[:, :2], 0, None), axis=1)
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


def nms_numpy(boxes: np.ndarray, scores: np.ndarray, class_ids: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy class-aware NMS (boxes of different classes never suppress each other)."""
    if len(boxes) == 0:
        return np.zeros(0, np.int64)
    offset = class_ids.astype(np.float32)[:, None] * (float(boxes.max()) + 1.0)
    b = boxes + offset
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size:
        i = order[0]
        keep.append(i)
        if order.size == 1:
            break
        ious = iou_matrix(b[i : i + 1], b[order[1:]])[0]
        order = order[1:][ious <= iou_threshold]
    return np.asarray(keep, np.int64)


def nms(
    boxes: np.ndarray, scores: np.ndarray, class_ids: np.ndarray, iou_threshold: float, max_detections: int = 300
) -> np.ndarray:
    """Indexes kept, best score first. Uses cv2.dnn.NMSBoxesBatched (C++) where available."""
    n = len(boxes)
    if n == 0:
        return np.zeros(0, np.int64)
    if hasattr(cv2.dnn, "NMSBoxesBatched"):
        xywh = np.empty((n, 4), np.float32)
        xywh[:, :2] = boxes[:, :2]
        xywh[:, 2:] = boxes[:, 2:] - boxes[:, :2]
        sc, ci = scores.astype(np.float32), class_ids.astype(np.int32)
        kept = cv2.dnn.NMSBoxesBatched(xywh, sc, ci, 0.0, float(iou_threshold))  # type: ignore[arg-type]  # stub: Sequence only; the binding takes arrays without a copy
        idx = np.asarray(kept, np.int64).reshape(-1)
        idx = idx[np.argsort(-scores[idx], kind="stable")]
    else:  # pragma: no cover - very old OpenCV
        idx = nms_numpy(boxes, scores, class_ids, iou_threshold)
    return idx[:max_detections]
