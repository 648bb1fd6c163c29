"""Detections <-> vision_msgs/Detection2DArray (class_id = label string, id = track id)."""
from __future__ import annotations

import numpy as np
from std_msgs.msg import Header
from vision_msgs.msg import Detection2D, Detection2DArray, LabelInfo, ObjectHypothesisWithPose, VisionClass

from nano_vision_ros.core.detection.types import Detections


def to_msg(dets: Detections, header: Header) -> Detection2DArray:
    out = Detection2DArray(header=header)
    for i in range(len(dets)):
        x1, y1, x2, y2 = (float(v) for v in dets.boxes[i])
        d = Detection2D(header=header)
        d.bbox.center.position.x = (x1 + x2) / 2.0
        d.bbox.center.position.y = (y1 + y2) / 2.0
        d.bbox.size_x = x2 - x1
        d.bbox.size_y = y2 - y1
        hyp = ObjectHypothesisWithPose()
        hyp.hypothesis.class_id = dets.attributes[i].get("class_id", dets.label_of(i))
        hyp.hypothesis.score = float(dets.scores[i])
        d.results = [hyp]
        tid = int(dets.track_ids[i])
        d.id = str(tid) if tid >= 0 else ""
        out.detections.append(d)
    return out


def from_msg(msg: Detection2DArray) -> Detections:
    """Back to arrays; labels are the distinct class_id strings in order of appearance."""
    labels: list[str] = []
    boxes, scores, cls, tids = [], [], [], []
    for d in msg.detections:
        cx, cy, w, h = d.bbox.center.position.x, d.bbox.center.position.y, d.bbox.size_x, d.bbox.size_y
        boxes.append((cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2))
        label, score = (d.results[0].hypothesis.class_id, d.results[0].hypothesis.score) if d.results else ("", 0.0)
        if label not in labels:
            labels.append(label)
        cls.append(labels.index(label))
        scores.append(score)
        tids.append(int(d.id) if d.id.lstrip("-").isdigit() else -1)
    return Detections(np.array(boxes, np.float32).reshape(-1, 4), np.array(scores, np.float32),
                      np.array(cls, np.int32), labels, np.array(tids, np.int64))


def label_info(labels: list[str], threshold: float, header: Header | None = None) -> LabelInfo:
    msg = LabelInfo(threshold=float(threshold))
    if header is not None:
        msg.header = header
    msg.class_map = [VisionClass(class_id=i, class_name=name) for i, name in enumerate(labels)]
    return msg
