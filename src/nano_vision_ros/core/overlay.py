"""What the rules see, as shapes: boxes, zones with counts, violators in red with the rule name, a legend.

One module decides what a live view shows (``scene``: plain data), and two renderers use it: the
OpenCV one here (``draw``: ``image_annotated``, hence the RTMP stream) and the Foxglove node's
ImageAnnotations (nodes/foxglove_node.py). The events node feeds it: it knows the zones (its
rules) and which tracks are in an active event (``Violations``, from the events it publishes).
Everything is computed only while someone watches; a scene of ~20 objects draws in ~1 ms at 768x576.
"""

from __future__ import annotations

import threading
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from nano_vision_ros.core.detection.types import Detections

#: BGR colours (OpenCV order); ``rgb()`` turns them around for Foxglove
RED = (0, 0, 255)
ZONE = (255, 255, 255)  # white: no class has it (class colours are saturated)
WHITE = (255, 255, 255)
BLACK = (0, 0, 0)
PANEL = (40, 40, 40)


def class_color(i: int) -> tuple[int, int, int]:
    """A stable colour per integer, BGR; hues 50..310 degrees: never red, which marks violations."""
    h = 25 + (i * 47) % 130
    b, g, r = cv2.cvtColor(np.array([[[h, 200, 255]]], np.uint8), cv2.COLOR_HSV2BGR)[0, 0]
    return int(b), int(g), int(r)


def rgb(bgr: tuple[int, int, int]) -> tuple[float, float, float]:
    """BGR 0..255 -> RGB 0..1 (Foxglove colours)."""
    return bgr[2] / 255.0, bgr[1] / 255.0, bgr[0] / 255.0


@dataclass(frozen=True)
class ZoneShape:
    """A rule's zone: name, polygon in source pixels, and which point of a box must be inside."""

    name: str
    polygon: tuple[tuple[float, float], ...]
    anchor: str = "bottom_center"

    def inside(self, box: np.ndarray) -> bool:
        x = float(box[0] + box[2]) / 2.0
        y = float(box[3]) if self.anchor == "bottom_center" else float(box[1] + box[3]) / 2.0
        poly = np.asarray(self.polygon, np.float32).reshape(-1, 1, 2)
        return cv2.pointPolygonTest(poly, (x, y), False) >= 0


def zones_of(rules: Iterable[Any]) -> list[ZoneShape]:
    """The distinct zones of a camera's rules (rules without a zone have none), in rule order."""
    out: dict[str, ZoneShape] = {}
    for r in rules:
        z = getattr(r, "zone", None)
        if z is not None and z.name not in out:
            out[z.name] = ZoneShape(
                z.name, tuple((float(x), float(y)) for x, y in z.polygon), getattr(z, "anchor", "bottom_center")
            )
    return list(out.values())


@dataclass(frozen=True)
class LineShape:
    """A rule's line (a gate): two points in source pixels, crossed from its left to its right = `entry`."""

    name: str
    p1: tuple[float, float]
    p2: tuple[float, float]
    direction: str = "any"  # entry | exit | any

    def arrows(self, length: float = 30.0) -> list[tuple[tuple[float, float], tuple[float, float]]]:
        """From the midpoint towards the side a counted crossing goes to (both sides for `any`)."""
        (x1, y1), (x2, y2) = self.p1, self.p2
        d = max(1e-6, float(np.hypot(x2 - x1, y2 - y1)))
        nx, ny = -(y2 - y1) / d, (x2 - x1) / d  # the right of p1 -> p2 in image coordinates (y down)
        mx, my = (x1 + x2) / 2.0, (y1 + y2) / 2.0
        signs = {"entry": (1.0,), "exit": (-1.0,)}.get(self.direction, (1.0, -1.0))
        return [((mx, my), (mx + s * length * nx, my + s * length * ny)) for s in signs]


def lines_of(rules: Iterable[Any]) -> list[LineShape]:
    """The lines of a camera's rules (a gate rule's `line`), named by the gate."""
    out: list[LineShape] = []
    for r in rules:
        line = getattr(r, "line", None)
        if line is not None:
            (x1, y1), (x2, y2) = line
            out.append(
                LineShape(
                    str(getattr(r, "gate", "") or r.name),
                    (float(x1), float(y1)),
                    (float(x2), float(y2)),
                    str(getattr(r, "direction", "any")),
                )
            )
    return out


def zone_counts(dets: Detections, zones: list[ZoneShape]) -> dict[str, dict[str, int]]:
    """zone name -> label -> how many detections have their anchor inside."""
    counts: dict[str, dict[str, int]] = {z.name: {} for z in zones}
    for i in range(len(dets)):
        for z in zones:
            if z.inside(dets.boxes[i]):
                c = counts[z.name]
                label = dets.label_of(i)
                c[label] = c.get(label, 0) + 1
    return counts


class Violations:
    """Active events by track, kept from the events stream (new/update add, end removes).

    Thread-safe: the events thread updates it, the drawing worker reads copies.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._events: dict[str, tuple[str, tuple[int, ...]]] = {}

    def update(self, event_id: str, rule: str, state: str, track_ids: Iterable[int]) -> None:
        with self._lock:
            if state == "end":
                self._events.pop(event_id, None)
            else:
                self._events[event_id] = (rule, tuple(int(t) for t in track_ids))

    def clear(self) -> None:
        with self._lock:
            self._events.clear()

    def snapshot(self) -> tuple[dict[int, list[str]], list[str]]:
        """(track id -> rule names, rules active without a tracked object: smoke, fire, untracked)."""
        by_track: dict[int, list[str]] = {}
        untracked: list[str] = []
        with self._lock:
            items = list(self._events.values())
        for rule, tids in items:
            tracked = [t for t in tids if t >= 0]
            for t in tracked:
                names = by_track.setdefault(t, [])
                if rule not in names:
                    names.append(rule)
            if not tracked and rule not in untracked:
                untracked.append(rule)
        return by_track, sorted(untracked)


@dataclass
class Box:
    box: tuple[float, float, float, float]
    color: tuple[int, int, int]
    text: str
    violation: bool = False


@dataclass
class Polygon:
    points: tuple[tuple[float, float], ...]
    color: tuple[int, int, int]
    text: str


@dataclass
class Line:
    points: tuple[tuple[float, float], tuple[float, float]]
    arrows: list[tuple[tuple[float, float], tuple[float, float]]]
    color: tuple[int, int, int]
    text: str


@dataclass
class Text:
    position: tuple[float, float]  # top left
    text: str
    color: tuple[int, int, int]


@dataclass
class Scene:
    """Everything a live view shows for one frame, in source-image pixels (BGR colours)."""

    boxes: list[Box] = field(default_factory=list)
    polygons: list[Polygon] = field(default_factory=list)
    lines: list[Line] = field(default_factory=list)
    legend: list[Text] = field(default_factory=list)


def label_color(label: str) -> tuple[int, int, int]:
    """A stable colour per label name (the same across detectors and runs), BGR, never red."""
    return class_color(zlib.crc32(label.encode()) % 1000)


def scene(
    dets: Detections | Sequence[Detections],
    zones: list[ZoneShape] | None = None,
    violations: tuple[dict[int, list[str]], list[str]] | None = None,
    lines: list[LineShape] | None = None,
) -> Scene:
    """The shapes for one frame: label-coloured boxes (of one or several detectors), violators red
    with their rules, zones with counts, lines with the direction they count."""
    zones, lines = zones or [], lines or []
    groups = [dets] if isinstance(dets, Detections) else list(dets)
    by_track, untracked = violations or ({}, [])
    out = Scene()
    for g in groups:
        for i in range(len(g)):
            tid = int(g.track_ids[i])
            rules = by_track.get(tid, []) if tid >= 0 else []
            label = g.label_of(i)
            text = f"{label} {g.scores[i]:.2f}" + (f" #{tid}" if tid >= 0 else "")
            attrs = g.attributes[i].get("attributes") or {}
            text += "".join(f" {v['value']}" for v in attrs.values() if v.get("value"))  # voted attributes (PPE)
            if rules:
                text += " " + ",".join(rules)
            x1, y1, x2, y2 = (float(v) for v in g.boxes[i])
            out.boxes.append(Box((x1, y1, x2, y2), RED if rules else label_color(label), text, bool(rules)))
    if zones:
        counts: dict[str, dict[str, int]] = {z.name: {} for z in zones}
        for g in groups:
            for name, c in zone_counts(g, zones).items():
                for label, k in c.items():
                    counts[name][label] = counts[name].get(label, 0) + k
        for z in zones:
            c = counts[z.name]
            n = ", ".join(f"{k} {v}" for k, v in sorted(c.items())) or "empty"
            out.polygons.append(Polygon(z.polygon, ZONE, f"{z.name}: {n}"))
    for ln in lines:
        out.lines.append(Line((ln.p1, ln.p2), ln.arrows(), ZONE, f"{ln.name} ({ln.direction})"))
    if zones or lines or violations is not None:  # the detector's boxes-only view has no legend
        rows = [("boxes: colour by label, #track id", WHITE)]
        if zones:
            rows.append(("zones: white, objects inside", ZONE))
        if lines:
            rows.append(("lines: white, arrow = counted crossing", ZONE))
        n_viol = sum(1 for b in out.boxes if b.violation)
        rows.append((f"red: in violation ({n_viol})", RED))
        if untracked:
            rows.append(("active: " + ", ".join(untracked), RED))
        out.legend = [Text((6.0, 6.0 + 18.0 * k), t, c) for k, (t, c) in enumerate(rows)]
    return out


def _label(img: np.ndarray, text: str, x: int, y: int, color: tuple[int, int, int], fg: tuple[int, int, int]) -> None:
    (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.5, 1)
    cv2.rectangle(img, (x, max(0, y - th - 4)), (x + tw + 2, y), color, -1)
    cv2.putText(img, text, (x + 1, max(th, y - 3)), cv2.FONT_HERSHEY_SIMPLEX, 0.5, fg, 1, cv2.LINE_AA)


def draw(image: np.ndarray, sc: Scene) -> np.ndarray:
    """The scene drawn on a copy of the frame (BGR)."""
    out = image.copy()
    for p in sc.polygons:
        pts = np.asarray(p.points, np.float32).round().astype(np.int32).reshape(-1, 1, 2)
        cv2.polylines(out, [pts], True, p.color, 2, cv2.LINE_AA)
        x, y = pts[:, 0, 0].min(), pts[:, 0, 1].min()
        _label(out, p.text, int(x) + 2, int(y) + 18, p.color, BLACK)
    for ln in sc.lines:
        (ax, ay), (bx, by) = ((round(x), round(y)) for x, y in ln.points)
        cv2.line(out, (ax, ay), (bx, by), ln.color, 2, cv2.LINE_AA)
        for (sx, sy), (ex, ey) in ln.arrows:
            cv2.arrowedLine(
                out, (round(sx), round(sy)), (round(ex), round(ey)), ln.color, 2, cv2.LINE_AA, tipLength=0.35
            )
        _label(
            out, ln.text, min(ax, bx) + 2, min(ay, by) - 4 if min(ay, by) > 20 else max(ay, by) + 18, ln.color, BLACK
        )
    for b in sc.boxes:
        x1, y1, x2, y2 = (round(v) for v in b.box)
        cv2.rectangle(out, (x1, y1), (x2, y2), b.color, 3 if b.violation else 2)
        _label(out, b.text, x1, y1, b.color, WHITE if b.violation else BLACK)
    if sc.legend:
        width = max(cv2.getTextSize(t.text, cv2.FONT_HERSHEY_SIMPLEX, 0.45, 1)[0][0] for t in sc.legend) + 12
        y0, y1 = int(sc.legend[0].position[1]) - 4, int(sc.legend[-1].position[1]) + 18
        cv2.rectangle(out, (2, y0), (2 + width, y1), PANEL, -1)
        for t in sc.legend:
            cv2.putText(
                out,
                t.text,
                (int(t.position[0]), int(t.position[1]) + 13),
                cv2.FONT_HERSHEY_SIMPLEX,
                0.45,
                t.color,
                1,
                cv2.LINE_AA,
            )
    return out
