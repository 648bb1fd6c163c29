"""Detections <-> vision_msgs/Detection2DArray (class_id = label string, id = track id).

Attributes voted on a person track (core/attributes) ride as extra hypotheses after the first:
``class_id = "attr:<classifier>=<value>|<votes>/<attempts>|<version>"``, ``score`` = the mean score
of the votes; readers that take ``results[0]`` see the detection as before.
"""

from __future__ import annotations

import numpy as np
from std_msgs.msg import Header
from vision_msgs.msg import (
    Detection2D,
    Detection2DArray,
    LabelInfo,
    ObjectHypothesisWithPose,
    VisionClass,
)

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
        d.results = [hyp, *_attribute_hyps(dets.attributes[i].get("attributes"))]
        tid = int(dets.track_ids[i])
        d.id = str(tid) if tid >= 0 else ""
        out.detections.append(d)
    return out


ATTR_PREFIX = "attr:"


def _attribute_hyps(attrs: dict | None) -> list[ObjectHypothesisWithPose]:
    out = []
    for name, v in (attrs or {}).items():
        if not v.get("value"):
            continue  # undecided: nothing to act on or draw
        h = ObjectHypothesisWithPose()
        h.hypothesis.class_id = f"{ATTR_PREFIX}{name}={v['value']}|{v['votes']}/{v['attempts']}|{v.get('version', '')}"
        h.hypothesis.score = float(v["score"])
        out.append(h)
    return out


def parse_attribute(class_id: str, score: float) -> tuple[str, dict] | None:
    """(classifier name, vote dict) of an attribute hypothesis; None if it is not one (or malformed)."""
    if not class_id.startswith(ATTR_PREFIX):
        return None
    body = class_id[len(ATTR_PREFIX) :]
    name, sep, rest = body.partition("=")
    parts = rest.split("|")
    if not sep or not name or len(parts) != 3 or "/" not in parts[1]:
        return None
    votes, _, attempts = parts[1].partition("/")
    if not (votes.isdigit() and attempts.isdigit()):
        return None
    return name, {
        "value": parts[0],
        "score": round(float(score), 4),
        "votes": int(votes),
        "attempts": int(attempts),
        "classifier": name,
        "version": parts[2],
    }


def from_msg(msg: Detection2DArray) -> Detections:
    """Back to arrays; labels are the distinct class_id strings in order of appearance."""
    labels: list[str] = []
    boxes, scores, cls, tids, attrs = [], [], [], [], []
    for d in msg.detections:
        cx, cy, w, h = d.bbox.center.position.x, d.bbox.center.position.y, d.bbox.size_x, d.bbox.size_y
        boxes.append((cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2))
        label, score = (d.results[0].hypothesis.class_id, d.results[0].hypothesis.score) if d.results else ("", 0.0)
        if label not in labels:
            labels.append(label)
        cls.append(labels.index(label))
        scores.append(score)
        tids.append(int(d.id) if d.id.lstrip("-").isdigit() else -1)
        a = dict(p for p in (parse_attribute(r.hypothesis.class_id, r.hypothesis.score) for r in d.results[1:]) if p)
        attrs.append({"attributes": a} if a else {})
    return Detections(
        np.array(boxes, np.float32).reshape(-1, 4),
        np.array(scores, np.float32),
        np.array(cls, np.int32),
        labels,
        np.array(tids, np.int64),
        attrs,
    )


def label_info(labels: list[str], threshold: float, header: Header | None = None) -> LabelInfo:
    msg = LabelInfo(threshold=float(threshold))
    if header is not None:
        msg.header = header
    msg.class_map = [VisionClass(class_id=i, class_name=name) for i, name in enumerate(labels)]
    return msg
