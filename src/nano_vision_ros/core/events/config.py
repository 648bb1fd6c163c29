"""Rule configuration: one pydantic model per rule, read from a YAML string or file, per camera.

YAML forms accepted by `parse_rules`::

    rules: [ {name: hardhat, type: no_hardhat}, ... ]          # every camera
    cameras:
      gate: {rules: [ {name: pit, type: intrusion, zone: {...}} ]}   # this camera only (replaces `rules`)

or a bare list of rules.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from nano_vision_ros.core.errors import ConfigError

RuleType = Literal["no_hardhat", "no_vest", "no_mask", "smoke", "fire", "intrusion", "loitering", "count",
                   "face", "plate", "object"]

#: defaults by rule type: (source, labels, person_labels, ppe_labels, violation_labels, region, min_frames)
_DEFAULTS: dict[str, dict[str, Any]] = {
    "no_hardhat": {"labels": [], "ppe_labels": ["helmet", "hardhat", "hard_hat", "hard-hat"],
                   "violation_labels": ["head", "no_helmet", "no-helmet", "no_hardhat", "no-hardhat"], "region": (0.0, 0.35)},
    "no_vest": {"labels": [], "ppe_labels": ["vest", "reflective_vest", "safety_vest"],
                "violation_labels": ["no-vest", "no_vest", "no-safety-vest"], "region": (0.15, 0.75)},
    "no_mask": {"labels": ["no_mask", "no-mask", "without_mask"]},
    "smoke": {"labels": ["smoke"], "min_frames": 3},
    "fire": {"labels": ["fire", "flame"], "min_frames": 3},
    "intrusion": {"labels": ["person"]},
    "loitering": {"labels": ["person"]},
    "count": {"labels": []},
    "face": {"source": "faces"},
    "plate": {"source": "plates"},
    "object": {"labels": []},
}


class Zone(BaseModel):
    """A polygon in image pixels; a detection is inside when its anchor point is."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=128)
    polygon: list[tuple[float, float]] = Field(min_length=3, max_length=256)
    anchor: Literal["bottom_center", "center"] = "bottom_center"


class RuleConfig(BaseModel):
    """One rule. Times are in seconds of frame stamps (not wall clock)."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=128)
    type: RuleType
    source: Literal["detections", "faces", "plates"] | None = None
    labels: list[str] | None = None
    min_score: float = Field(0.0, ge=0.0, le=1.0)
    # PPE association (no_hardhat / no_vest)
    person_labels: list[str] = Field(default_factory=lambda: ["person"])
    ppe_labels: list[str] | None = None
    violation_labels: list[str] | None = None
    region: tuple[float, float] | None = Field(None, description="top/bottom of the person box (fractions) where the PPE must be")
    min_overlap: float = Field(0.3, gt=0.0, le=1.0, description="share of the PPE box inside the region")
    require_ppe: bool = Field(True, description="a person with no PPE box in the region is in violation")
    # zones, loitering, counts
    zone: Zone | None = None
    dwell: float = Field(0.0, ge=0.0, description="loitering: seconds in the zone before the event")
    thresholds: dict[str, int] = Field(default_factory=dict, description="count: label -> minimum count that raises the event")
    # faces, plates
    watchlist: list[str] = Field(default_factory=list)
    report_known: bool = True
    report_unknown: bool = True
    unknown_label: str = "unknown"
    allow: list[str] = Field(default_factory=list)
    deny: list[str] = Field(default_factory=list)
    report_unlisted: bool = True
    # lifecycle
    min_duration: float = Field(0.0, ge=0.0, description="debounce: condition must hold this long before `new`")
    min_frames: int | None = Field(None, ge=1, description="debounce: and be seen in this many frames")
    end_after: float = Field(1.0, gt=0.0, description="condition absent this long -> `end`")
    cooldown: float = Field(10.0, ge=0.0, description="after `end`, the same rule+track stays quiet this long")
    update_interval: float = Field(0.0, ge=0.0, description="periodic `update` while active (0 = none)")
    snapshot: bool = True

    @model_validator(mode="after")
    def _defaults(self) -> "RuleConfig":
        d = _DEFAULTS[self.type]
        if self.source is None:
            self.source = d.get("source", "detections")
        for key in ("labels", "ppe_labels", "violation_labels", "region"):
            if getattr(self, key) is None:
                setattr(self, key, d.get(key, [] if key != "region" else (0.0, 1.0)))
        if self.min_frames is None:
            self.min_frames = d.get("min_frames", 1)
        top, bottom = self.region  # type: ignore[misc]
        if not 0.0 <= top < bottom <= 1.0:
            raise ValueError(f"rule {self.name}: region must be 0 <= top < bottom <= 1")
        if self.type in ("intrusion", "loitering") and self.zone is None:
            raise ValueError(f"rule {self.name}: type {self.type} needs a zone")
        if self.type == "loitering" and self.dwell <= 0:
            raise ValueError(f"rule {self.name}: loitering needs dwell > 0 (seconds)")
        if self.type == "count" and not self.thresholds:
            raise ValueError(f"rule {self.name}: count needs thresholds {{label: n}}")
        if self.type == "object" and not self.labels:
            raise ValueError(f"rule {self.name}: object needs labels")
        if any(v < 1 for v in self.thresholds.values()):
            raise ValueError(f"rule {self.name}: thresholds must be >= 1")
        return self

    @property
    def debounce(self) -> float:
        return max(self.min_duration, self.dwell)


class CameraRules(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rules: list[RuleConfig] = Field(default_factory=list)

    @field_validator("rules")
    @classmethod
    def _unique(cls, v: list[RuleConfig]) -> list[RuleConfig]:
        names = [r.name for r in v]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"rule names used twice: {', '.join(dup)}")
        return v


class EventsConfig(CameraRules):
    cameras: dict[str, CameraRules] = Field(default_factory=dict)


def parse_rules(text_or_path: str, camera: str) -> list[RuleConfig]:
    """Rules for `camera` from a YAML string or a file path; ConfigError names what is wrong."""
    from nano_vision_ros.core import paths

    text = text_or_path
    stripped = text_or_path.strip()
    if stripped and "\n" not in stripped and stripped.endswith((".yaml", ".yml")):
        path = paths.resolve(stripped)
        if not Path(path).is_file():
            raise ConfigError(f"parameter 'rules': file not found: {stripped}", "rules")
        text = Path(path).read_text()
    try:
        data = yaml.safe_load(text) if text.strip() else {}
    except yaml.YAMLError as err:
        raise ConfigError(f"parameter 'rules': not valid YAML: {err}", "rules") from None
    if data is None:
        data = {}
    if isinstance(data, list):
        data = {"rules": data}
    if not isinstance(data, dict):
        raise ConfigError("parameter 'rules': expected a mapping with `rules`/`cameras` or a list of rules", "rules")
    try:
        cfg = EventsConfig.model_validate(data)
    except ValidationError as err:
        msgs = []
        for e in err.errors():
            loc = ".".join(str(p) for p in e["loc"])
            msgs.append(f"{loc}: {e['msg'].removeprefix('Value error, ')}")
        raise ConfigError("parameter 'rules': " + "; ".join(msgs)[:800], "rules") from None
    return list(cfg.cameras[camera].rules if camera in cfg.cameras else cfg.rules)
