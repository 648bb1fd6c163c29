"""The rule types: one pydantic model per `type`, with only its own fields and its own `evaluate`.

A rule turns one frame's detections into *hits* (keys whose condition holds now); the engine owns
the lifecycle (debounce, end, cooldown) that is the same for every type. To add a rule type, write
one class here (a `type: Literal[...]` tag, its fields, `event_types`, `evaluate`) and list it in
`RULE_TYPES`; the rules file, its error messages and the engine pick it up from there.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property
from typing import Annotated, Any, ClassVar, Literal, Union, get_args

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from nano_vision_ros.core.attributes.compliance import ComplianceTally, Schedule
from nano_vision_ros.core.detection.types import Detections

Source = Literal["detections", "faces", "plates"]

_PLATE_NORM = re.compile(r"[\s\-·•.]+")


def norm_plate(text: str) -> str:
    """Plate text as compared and reported: upper case, no spaces, dashes or dots."""
    return _PLATE_NORM.sub("", text).upper()


@dataclass
class Hit:
    """A rule's condition holding for one key in one frame."""

    key: str
    type: str
    idx: list[int]
    extra: dict[str, Any] = field(default_factory=dict)


class _Hits:
    """Hits of one evaluation by key; a second detection of a key joins the first hit."""

    def __init__(self) -> None:
        self.by_key: dict[str, Hit] = {}

    def add(self, key: str, typ: str, i: int, **extra: Any) -> Hit:
        h = self.by_key.get(key)
        if h is None:
            h = self.by_key[key] = Hit(key, typ, [i], dict(extra))
        else:
            h.idx.append(i)
        return h

    def all(self) -> list[Hit]:
        return list(self.by_key.values())


def _key(dets: Detections, i: int, prefix: str = "t") -> str:
    tid = int(dets.track_ids[i])
    return f"{prefix}{tid}" if tid >= 0 else f"untracked:{dets.label_of(i)}"


def _box_overlap(box: np.ndarray, region: np.ndarray) -> float:
    """Share of `box`'s area inside `region` (both x1, y1, x2, y2)."""
    ix = max(0.0, min(box[2], region[2]) - max(box[0], region[0]))
    iy = max(0.0, min(box[3], region[3]) - max(box[1], region[1]))
    area = max(1e-6, (box[2] - box[0]) * (box[3] - box[1]))
    return float(ix * iy / area)


class Zone(BaseModel):
    """A polygon in image pixels; a detection is inside when its anchor point is."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=128)
    polygon: list[tuple[float, float]] = Field(min_length=3, max_length=256)
    anchor: Literal["bottom_center", "center"] = "bottom_center"

    @cached_property
    def _poly(self) -> np.ndarray:
        return np.asarray(self.polygon, np.float32).reshape(-1, 1, 2)

    def inside(self, box: np.ndarray) -> bool:
        x = float(box[0] + box[2]) / 2.0
        y = float(box[3]) if self.anchor == "bottom_center" else float(box[1] + box[3]) / 2.0
        return cv2.pointPolygonTest(self._poly, (x, y), False) >= 0


class RuleBase(BaseModel):
    """Fields every rule has. Times are in seconds of frame stamps (not wall clock)."""

    model_config = ConfigDict(extra="forbid")
    #: the event types this rule can raise (the event schema's `type` enum is their union)
    event_types: ClassVar[tuple[str, ...]] = ()
    name: str = Field(min_length=1, max_length=128)
    source: Source = Field("detections", description="the input topic the rule is evaluated on")
    min_score: float = Field(0.0, ge=0.0, le=1.0)
    min_duration: float = Field(0.0, ge=0.0, description="debounce: condition must hold this long before `new`")
    min_frames: int = Field(1, ge=1, description="debounce: and be seen in this many frames")
    end_after: float = Field(1.0, gt=0.0, description="condition absent this long -> `end`")
    cooldown: float = Field(10.0, ge=0.0, description="after `end`, the same rule+track stays quiet this long")
    update_interval: float = Field(0.0, ge=0.0, description="periodic `update` while active (0 = none)")

    @property
    def debounce(self) -> float:
        """Seconds the condition must hold before `new`."""
        return self.min_duration

    def evaluate(self, dets: Detections) -> list[Hit]:
        """The hits of this rule on one frame's detections."""
        raise NotImplementedError

    def evaluate_at(self, dets: Detections, stamp: float) -> list[Hit]:
        """`evaluate` for the frame at `stamp` (rules with a schedule override it)."""
        return self.evaluate(dets)

    def progress(self, first: float, last: float) -> dict[str, Any]:
        """Event fields that follow the key's time in the condition (first/last frame stamp)."""
        return {}

    def _ok(self, dets: Detections) -> np.ndarray:
        return dets.scores >= self.min_score

    def _labelled(self, dets: Detections, labels: list[str]) -> list[int]:
        """Indices of detections scoring >= min_score whose label is one of `labels`."""
        ok = self._ok(dets)
        wanted = set(labels)
        return [i for i in range(len(dets)) if ok[i] and dets.label_of(i) in wanted]


class _PpeRule(RuleBase):
    """A person without the PPE: by PPE-detector boxes (none in the right part of the box, or an
    explicit violation box), or by an attribute classifier's per-track vote (core/attributes).

    With `attribute` set, the vote decides (a verdict needs the vote, never one frame) and PPE
    boxes still count: an explicit violation box is a violation, a missing PPE box is not. `zone`:
    the PPE is required only there; `schedule`: only in these hours. People checked and the
    compliant share per zone are tallied (`compliance()`, the events node's stats)."""

    person_labels: list[str] = Field(default_factory=lambda: ["person"])
    ppe_labels: list[str]
    violation_labels: list[str]
    region: tuple[float, float] = Field(description="top/bottom of the person box (fractions) where the PPE must be")
    min_overlap: float = Field(0.3, gt=0.0, le=1.0, description="share of the PPE box inside the region")
    require_ppe: bool = Field(True, description="boxes: a person with no PPE box in the region is in violation")
    attribute: str | None = Field(
        None,
        min_length=1,
        max_length=64,
        description="attribute classifier name (`nano-vision attributes train --name`)",
    )
    violation_values: list[str] = Field(description="attribute classes that are a violation")
    zone: Zone | None = Field(None, description="PPE required only for people inside this zone")
    schedule: list[Schedule] = Field(default_factory=list, description="active only in these hours; [] = always")
    _tally: ComplianceTally = PrivateAttr(default_factory=ComplianceTally)

    @model_validator(mode="after")
    def _region(self) -> _PpeRule:
        top, bottom = self.region
        if not 0.0 <= top < bottom <= 1.0:
            raise ValueError(f"rule {self.name}: region must be 0 <= top < bottom <= 1")
        if self.attribute and not self.violation_values:
            raise ValueError(
                f"rule {self.name}: attribute {self.attribute!r} needs violation_values (its classes "
                "that are a violation)"
            )
        return self

    def evaluate_at(self, dets: Detections, stamp: float) -> list[Hit]:
        if self.schedule and not any(s.active(stamp) for s in self.schedule):
            return []
        return self.evaluate(dets)

    def compliance(self) -> dict[str, dict[str, float]]:
        """zone (or `all`) -> people checked, violators, compliant share."""
        return self._tally.summary()

    def evaluate(self, dets: Detections) -> list[Hit]:
        typ = self.event_types[0]
        top, bottom = self.region
        zname = self.zone.name if self.zone is not None else "all"
        persons = [
            p for p in self._labelled(dets, self.person_labels) if self.zone is None or self.zone.inside(dets.boxes[p])
        ]
        ppe = self._labelled(dets, self.ppe_labels)
        bad = self._labelled(dets, self.violation_labels)
        bad = [j for j in bad if self.zone is None or self.zone.inside(dets.boxes[j])]
        hits = _Hits()
        used_bad: set[int] = set()
        for p in persons:
            b = dets.boxes[p]
            h = b[3] - b[1]
            region = np.array([b[0], b[1] + top * h, b[2], b[1] + bottom * h], np.float32)
            viol = [j for j in bad if _box_overlap(dets.boxes[j], region) >= self.min_overlap]
            used_bad.update(viol)
            evidence: dict[str, Any] | None = None
            if self.attribute:
                vote = (dets.attributes[p].get("attributes") or {}).get(self.attribute)
                judged = bool(vote and vote.get("value")) or bool(viol)
                if vote and vote.get("value") in self.violation_values:
                    evidence = {
                        "source": "attribute",
                        **{k: vote.get(k) for k in ("classifier", "version", "value", "votes", "attempts", "score")},
                    }
            else:
                judged = True
                has_ppe = any(_box_overlap(dets.boxes[j], region) >= self.min_overlap for j in ppe)
                if not viol and self.require_ppe and not has_ppe:
                    evidence = {"source": "boxes"}
            if viol and evidence is None:
                evidence = {"source": "boxes"}
            if judged:
                self._tally.see(zname, int(dets.track_ids[p]), evidence is not None)
            if evidence is not None:
                extra: dict[str, Any] = {"evidence": evidence}
                if self.zone is not None:
                    extra["zone"] = self.zone.name
                hits.add(_key(dets, p), typ, p, **extra).idx.extend(viol)
        for j in bad:  # a bare head / no-vest box with no person around it is a violation on its own
            if j not in used_bad:
                hits.add(
                    _key(dets, j, "v"),
                    typ,
                    j,
                    evidence={"source": "boxes"},
                    **({"zone": self.zone.name} if self.zone is not None else {}),
                )
        return hits.all()


class NoHardhatRule(_PpeRule):
    event_types: ClassVar[tuple[str, ...]] = ("no_hardhat",)
    type: Literal["no_hardhat"]
    ppe_labels: list[str] = Field(default_factory=lambda: ["helmet", "hardhat", "hard_hat", "hard-hat"])
    violation_labels: list[str] = Field(
        default_factory=lambda: ["head", "no_helmet", "no-helmet", "no_hardhat", "no-hardhat"]
    )
    region: tuple[float, float] = Field((0.0, 0.35), description="top/bottom of the person box (fractions): the head")
    violation_values: list[str] = Field(
        default_factory=lambda: ["no_helmet", "no_hardhat", "head", "bare_head"],
        description="attribute classes that are a violation",
    )


class NoVestRule(_PpeRule):
    event_types: ClassVar[tuple[str, ...]] = ("no_vest",)
    type: Literal["no_vest"]
    ppe_labels: list[str] = Field(default_factory=lambda: ["vest", "reflective_vest", "safety_vest"])
    violation_labels: list[str] = Field(default_factory=lambda: ["no-vest", "no_vest", "no-safety-vest"])
    region: tuple[float, float] = Field((0.15, 0.75), description="top/bottom of the person box (fractions): the torso")
    violation_values: list[str] = Field(
        default_factory=lambda: ["no_vest", "no-vest"], description="attribute classes that are a violation"
    )


class _PresenceRule(RuleBase):
    """Any `labels` box, one event per track."""

    labels: list[str]

    def evaluate(self, dets: Detections) -> list[Hit]:
        hits = _Hits()
        for i in self._labelled(dets, self.labels):
            hits.add(_key(dets, i), self.event_types[0], i)
        return hits.all()


class NoMaskRule(_PresenceRule):
    event_types: ClassVar[tuple[str, ...]] = ("no_mask",)
    type: Literal["no_mask"]
    labels: list[str] = Field(default_factory=lambda: ["no_mask", "no-mask", "without_mask"])


class ObjectRule(_PresenceRule):
    event_types: ClassVar[tuple[str, ...]] = ("object",)
    type: Literal["object"]
    labels: list[str] = Field(min_length=1, description="the classes whose presence is an event")


class _CameraWideRule(RuleBase):
    """A `labels` box that persists, one event per label for the whole camera."""

    labels: list[str]
    min_frames: int = Field(3, ge=1, description="debounce: seen in this many frames")

    def evaluate(self, dets: Detections) -> list[Hit]:
        hits = _Hits()
        for i in self._labelled(dets, self.labels):
            hits.add(f"label:{dets.label_of(i)}", self.event_types[0], i)
        return hits.all()


class SmokeRule(_CameraWideRule):
    event_types: ClassVar[tuple[str, ...]] = ("smoke",)
    type: Literal["smoke"]
    labels: list[str] = Field(default_factory=lambda: ["smoke"])


class FireRule(_CameraWideRule):
    event_types: ClassVar[tuple[str, ...]] = ("fire",)
    type: Literal["fire"]
    labels: list[str] = Field(default_factory=lambda: ["fire", "flame"])


class IntrusionRule(RuleBase):
    """A `labels` box whose anchor point is inside the zone."""

    event_types: ClassVar[tuple[str, ...]] = ("intrusion",)
    type: Literal["intrusion"]
    labels: list[str] = Field(default_factory=lambda: ["person"])
    zone: Zone

    def evaluate(self, dets: Detections) -> list[Hit]:
        hits = _Hits()
        for i in self._labelled(dets, self.labels):
            if self.zone.inside(dets.boxes[i]):
                hits.add(_key(dets, i), self.event_types[0], i, zone=self.zone.name)
        return hits.all()


class LoiteringRule(IntrusionRule):
    """As intrusion, for `dwell` seconds; the event reports the time in the zone."""

    event_types: ClassVar[tuple[str, ...]] = ("loitering",)
    type: Literal["loitering"]  # type: ignore[assignment]
    dwell: float = Field(gt=0.0, description="seconds in the zone before the event")

    @property
    def debounce(self) -> float:
        return max(self.min_duration, self.dwell)

    def progress(self, first: float, last: float) -> dict[str, Any]:
        return {"dwell_s": round(last - first, 3)}


class CountRule(RuleBase):
    """The number of boxes of a class (in `zone` if given) reaches its threshold."""

    event_types: ClassVar[tuple[str, ...]] = ("count",)
    type: Literal["count"]
    thresholds: dict[str, Annotated[int, Field(ge=1)]] = Field(min_length=1, description="label -> minimum count")
    zone: Zone | None = None

    def evaluate(self, dets: Detections) -> list[Hit]:
        out = []
        for label, threshold in self.thresholds.items():
            idx = [i for i in self._labelled(dets, [label]) if self.zone is None or self.zone.inside(dets.boxes[i])]
            if len(idx) >= threshold:
                out.append(
                    Hit(
                        f"count:{label}",
                        "count",
                        idx,
                        {
                            "count": len(idx),
                            "threshold": float(threshold),
                            "zone": self.zone.name if self.zone else None,
                        },
                    )
                )
        return out


class FaceRule(RuleBase):
    """Face identities (class_id = identity or `unknown`): watchlist, known, unknown."""

    event_types: ClassVar[tuple[str, ...]] = ("face_known", "face_unknown", "face_watchlist")
    type: Literal["face"]
    source: Source = "faces"
    watchlist: list[str] = Field(default_factory=list)
    report_known: bool = True
    report_unknown: bool = True
    unknown_label: str = "unknown"

    def evaluate(self, dets: Detections) -> list[Hit]:
        watch = set(self.watchlist)
        ok = self._ok(dets)
        hits = _Hits()
        for i in range(len(dets)):
            if not ok[i]:
                continue
            ident = dets.label_of(i) or self.unknown_label
            known = ident != self.unknown_label
            on_list = ident in watch
            typ = "face_watchlist" if on_list else ("face_known" if known else "face_unknown")
            if (typ == "face_known" and not self.report_known) or (typ == "face_unknown" and not self.report_unknown):
                continue
            key = _key(dets, i) if int(dets.track_ids[i]) >= 0 else f"id:{ident}"
            hits.add(
                key,
                typ,
                i,
                face={"identity": ident, "known": known, "watchlist": on_list, "score": float(dets.scores[i])},
            )
        return hits.all()


class _PlateListRule(RuleBase):
    """Plate reads (class_id = plate text) looked up in allow / deny lists."""

    source: Source = "plates"
    allow: list[str] = Field(default_factory=list)
    deny: list[str] = Field(default_factory=list)

    def _plates(self, dets: Detections) -> list[tuple[int, str, str]]:
        """(index, normalised text, allow | deny | none) of the reads scoring >= min_score."""
        allow = {norm_plate(p) for p in self.allow}
        deny = {norm_plate(p) for p in self.deny}
        ok = self._ok(dets)
        out = []
        for i in range(len(dets)):
            text = norm_plate(dets.label_of(i))
            if ok[i] and text:
                out.append((i, text, "deny" if text in deny else ("allow" if text in allow else "none")))
        return out


class PlateRule(_PlateListRule):
    """Plate reads (class_id = plate text) against allow / deny lists."""

    event_types: ClassVar[tuple[str, ...]] = ("plate_read", "plate_allowed", "plate_denied")
    type: Literal["plate"]
    report_unlisted: bool = True

    def evaluate(self, dets: Detections) -> list[Hit]:
        hits = _Hits()
        for i, text, lst in self._plates(dets):
            if lst == "none" and not self.report_unlisted:
                continue
            typ = {"deny": "plate_denied", "allow": "plate_allowed"}.get(lst, "plate_read")
            hits.add(f"plate:{text}", typ, i, plate={"text": text[:32], "list": lst, "score": float(dets.scores[i])})
        return hits.all()


class GateRule(_PlateListRule):
    """A vehicle passing a site gate, by its plate (source `plates`: class_id = the voted plate text,
    the plate node's track per vehicle). The gate is a `line` crossed in `direction` or a `zone`
    held `dwell` seconds. The plate on `allow` -> `gate_open` (a gate controller acts on it, over
    ROS and MQTT), on `deny` or on no list -> `gate_alarm`, or nothing (`on_deny` / `on_unknown`:
    alarm | ignore). One event per passage: the key is the plate's track; the event stays active
    while the vehicle is seen and ends `end_after` seconds after it has gone.

    Line direction: `entry` is a crossing from the left of the line (looking from its first point
    to its second) to its right; drawn left to right across the image, that is moving down the
    image, towards a camera that watches vehicles come in. `exit` is the other way, `any` both.
    """

    event_types: ClassVar[tuple[str, ...]] = ("gate_open", "gate_alarm")
    type: Literal["gate"]
    gate: str = Field(min_length=1, max_length=128, description="the gate's name (the event's zone field)")
    line: tuple[tuple[float, float], tuple[float, float]] | None = Field(None, description="two points in pixels")
    zone: Zone | None = None
    direction: Literal["entry", "exit", "any"] = "entry"
    dwell: float = Field(0.0, ge=0.0, description="zone: seconds at the gate before the event")
    on_deny: Literal["alarm", "ignore"] = "alarm"
    on_unknown: Literal["alarm", "ignore"] = "alarm"
    end_after: float = Field(2.0, gt=0.0, description="vehicle unseen this long -> `end` of its passage")
    _side: dict[str, float] = PrivateAttr(default_factory=dict)  # key -> last side of the line
    _passed: dict[str, str] = PrivateAttr(default_factory=dict)  # key -> direction it crossed in

    @model_validator(mode="after")
    def _one_gate(self) -> GateRule:
        if (self.line is None) == (self.zone is None):
            raise ValueError(f"rule {self.name}: give the gate a line or a zone (exactly one)")
        if self.line is not None and self.line[0] == self.line[1]:
            raise ValueError(f"rule {self.name}: the line's two points are the same")
        return self

    @property
    def debounce(self) -> float:
        return max(self.min_duration, self.dwell if self.zone is not None else 0.0)

    def progress(self, first: float, last: float) -> dict[str, Any]:
        return {"dwell_s": round(last - first, 3)}

    def _crossed(self, key: str, box: np.ndarray) -> bool:
        """Whether the track `key` has crossed the line in the wanted direction (now or before)."""
        if key in self._passed:
            return True
        assert self.line is not None  # the validator: exactly one of line and zone, and zone is None here
        (x1, y1), (x2, y2) = self.line
        px, py = float(box[0] + box[2]) / 2, float(box[1] + box[3]) / 2
        side = (x2 - x1) * (py - y1) - (y2 - y1) * (px - x1)
        prev = self._side.pop(key, None)
        self._side[key] = side  # most recent last: the oldest go first when too many
        while len(self._side) > 4096:
            self._side.pop(next(iter(self._side)))
        if prev is None or (prev < 0) == (side < 0):
            return False
        way = "entry" if prev < 0 <= side else "exit"
        if self.direction not in (way, "any"):
            return False
        self._passed[key] = way
        while len(self._passed) > 4096:
            self._passed.pop(next(iter(self._passed)))
        return True

    def evaluate(self, dets: Detections) -> list[Hit]:
        hits = _Hits()
        for i, text, lst in self._plates(dets):
            key = _key(dets, i, "gate") if int(dets.track_ids[i]) >= 0 else f"plate:{text}"
            at_gate = self.zone.inside(dets.boxes[i]) if self.zone is not None else self._crossed(key, dets.boxes[i])
            if not at_gate:
                continue
            if (lst == "deny" and self.on_deny == "ignore") or (lst == "none" and self.on_unknown == "ignore"):
                continue
            typ = "gate_open" if lst == "allow" else "gate_alarm"
            hits.add(
                key, typ, i, zone=self.gate, plate={"text": text[:32], "list": lst, "score": float(dets.scores[i])}
            )
        return hits.all()


#: every rule type; a new one is a class above and an entry here
RULE_TYPES: tuple[type[RuleBase], ...] = (
    NoHardhatRule,
    NoVestRule,
    NoMaskRule,
    SmokeRule,
    FireRule,
    IntrusionRule,
    LoiteringRule,
    CountRule,
    FaceRule,
    PlateRule,
    ObjectRule,
    GateRule,
)

#: one rule of any type, chosen by its `type` field
Rule = Annotated[Union[RULE_TYPES], Field(discriminator="type")]  # type: ignore[valid-type]  # noqa: UP007 - a tuple of classes

#: the event types all rules together can raise, in rule order
EVENT_TYPES: tuple[str, ...] = tuple(t for cls in RULE_TYPES for t in cls.event_types)


def type_tag(cls: type[RuleBase]) -> str:
    """The `type` value that selects rule class `cls`."""
    return str(get_args(cls.model_fields["type"].annotation)[0])


def rule_class(type_name: str) -> type[RuleBase] | None:
    """The rule class whose `type` tag is `type_name` (None: no such type)."""
    return next((cls for cls in RULE_TYPES if type_tag(cls) == type_name), None)
