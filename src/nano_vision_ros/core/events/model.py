"""The event, as one pydantic model: what the engine produces, what the MQTT JSON is made from.

The committed JSON Schema (``schemas/event.schema.json``) is generated from `Event` (run
``python -m nano_vision_ros.core.events.model --write``; a test fails when the file differs), and
``nano_vision_msgs/msg/Event.msg`` is its typed ROS form (conversions in ``ros/events.py``). The
three change together: `SCHEMA_VERSION` and the message definition move in one commit.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from nano_vision_ros.core.events.rules import EVENT_TYPES

#: changes when a field changes meaning or is removed (major) or is added (minor); see docs/EVENTS.md
SCHEMA_VERSION = "1.1"
SCHEMA_PATH = Path(__file__).resolve().parents[2] / "schemas" / "event.schema.json"

_ISO = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$"
#: an ISO-8601 UTC time string (the engine writes microseconds and a Z)
# (no `= Field(...)` on IsoTime fields: pydantic 2.0 refuses a second Field; descriptions are comments)
IsoTime = Annotated[str, Field(pattern=_ISO, json_schema_extra={"format": "date-time"})]
EventType = Literal[EVENT_TYPES]  # type: ignore[valid-type]
State = Literal["new", "update", "end"]
#: why an update was published: periodic while active, the recorder's clip, its upload state
Reason = Literal["progress", "clip", "clip_status"]
#: the updates that report on footage (the recorder's clip, the uploader's state of it), not on the scene
FOOTAGE_REPORTS: frozenset[Reason] = frozenset({"clip", "clip_status"})
UploadState = Literal["pending", "queued", "uploading", "done", "failed"]
PlateList = Literal["allow", "deny", "none"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FaceInfo(_Strict):
    """Who a face event is about."""

    identity: str = Field(max_length=128)
    known: bool
    watchlist: bool
    score: float | None = None


class PlateInfo(_Strict):
    """The plate a plate event is about (text normalised: upper case, no spaces/dashes/dots)."""

    text: str = Field(max_length=32)
    list: PlateList
    score: float | None = None


class Evidence(_Strict):
    """Why a PPE rule (no_hardhat / no_vest) found a violation: the attribute vote or the PPE boxes."""

    source: Literal["attribute", "boxes"]
    classifier: str | None = Field(None, max_length=64, description="attribute classifier name (source attribute)")
    version: str | None = Field(None, max_length=64, description="its version (the card's)")
    value: str | None = Field(None, max_length=64, description="the voted class")
    votes: int | None = Field(None, ge=0, description="attempts that voted for it")
    attempts: int | None = Field(None, ge=0, description="attempts in the vote window")
    score: float | None = Field(None, ge=0, le=1, description="mean score of its votes")


class SnapshotRef(_Strict):
    """The JPEG of the event's frame with its boxes drawn."""

    path: str
    stamp: IsoTime | None = None
    width: int = Field(ge=1)
    height: int = Field(ge=1)


class ClipInfo(_Strict):
    """The event's clip and where its upload stands."""

    path: str
    duration: float | None = Field(None, ge=0)
    size: int | None = Field(None, ge=0)
    sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")
    upload_state: UploadState
    remote: str | None = None
    error: str | None = Field(None, max_length=1000)


class Event(_Strict):
    """One publication of an event: `new`, then zero or more `update`s, then `end`, one event_id.

    Consumers deduplicate by (event_id, sequence). The field order is the JSON's.
    """

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "description": "One publication of an event: state new, then zero or more updates, then end, all with "
            "the same event_id and an increasing sequence. Consumers deduplicate by (event_id, "
            "sequence). Times are ISO-8601 UTC strings."
        },
    )

    schema_version: Literal[SCHEMA_VERSION] = SCHEMA_VERSION  # type: ignore[valid-type]
    event_id: str = Field(pattern=r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
    sequence: int = Field(ge=0, description="0 for new, +1 for each later publication of the same event")
    site_id: str = Field(min_length=1, max_length=128)
    device_id: str = Field(min_length=1, max_length=128)
    camera: str = Field(min_length=1, max_length=128)
    type: EventType
    rule: str = Field(min_length=1, max_length=128, description="name of the configured rule")
    state: State
    reason: Reason | None = Field(None, description="why an update was sent: progress, clip, clip_status")
    stamp: IsoTime  # of the frame that produced this publication (clip / clip_status updates: publication time)
    start: IsoTime  # first frame the condition held
    end: IsoTime | None  # last frame the condition held; null until the end
    updated: IsoTime | None = None  # time of the latest update
    zone: str | None = Field(None, max_length=128)
    dwell_s: float | None = Field(None, ge=0, description="loitering: seconds in the zone so far")
    count: int | None = Field(None, ge=0, description="count events: objects counted")
    threshold: float | None = Field(None, description="count events: the rule's threshold")
    face: FaceInfo | None = None
    plate: PlateInfo | None = None
    evidence: Evidence | None = Field(None, description="no_hardhat / no_vest: what the verdict rests on")
    snapshot: SnapshotRef | None = None
    clip: ClipInfo | None = None
    track_ids: list[int] = Field(max_length=256, description="track -1 = untracked")
    labels: list[Annotated[str, Field(max_length=128)]] = Field(max_length=256)
    scores: list[Annotated[float, Field(ge=0, le=1)]] = Field(max_length=256)
    boxes: list[tuple[float, float, float, float]] = Field(
        max_length=256, description="x1, y1, x2, y2 in source-image pixels"
    )
    message: str | None = Field(None, max_length=512, description="one human-readable line")
    published: IsoTime  # when the events node published it

    @property
    def asks_footage(self) -> bool:
        """Whether a recorder should cover this publication (`asks_footage`)."""
        return asks_footage(self.state, self.end, self.reason)

    def to_json(self) -> dict[str, Any]:
        """The MQTT payload as a dict (every field, null where unset, in the model's order)."""
        return self.model_dump(mode="json")

    def to_json_text(self) -> str:
        """The MQTT payload: compact JSON."""
        return json.dumps(self.to_json(), separators=(",", ":"))


def asks_footage(state: str, end: str | None, reason: str | None) -> bool:
    """The one rule for what a recorder covers: what the scene shows while an event is active, and its end.

    Not the publications after the end (a re-delivered history, late reports): they describe
    footage recorded already. Not the clip and upload-state reports (`FOOTAGE_REPORTS`), even of an
    active event: they are the recorder's own output coming back, so the recorder -> clips ->
    events -> recorder loop ends by what an update is about, not by how long the event lasts (an
    event active for an hour without progress updates would otherwise be recorded clip after clip,
    each one asked for by the last).
    """
    if state != "update":
        return True
    return end is None and reason not in FOOTAGE_REPORTS


def json_schema() -> dict[str, Any]:
    """The event JSON Schema (draft 2020-12) generated from `Event`."""
    body = Event.model_json_schema(mode="serialization")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"https://nano-vision-ros.example/schemas/event/{SCHEMA_VERSION}.json",
        **{k: v for k, v in body.items() if k != "title"},
        "title": "nano_vision_ros site-safety event",
    }


def schema_text() -> str:
    """The schema file's text exactly as committed."""
    return json.dumps(json_schema(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Write or check ``schemas/event.schema.json`` (generated from `Event`)."""
    ap = argparse.ArgumentParser(prog="python -m nano_vision_ros.core.events.model", description=main.__doc__)
    ap.add_argument("--write", action="store_true", help="regenerate the committed schema file")
    ap.add_argument("--check", action="store_true", help="exit 1 when the committed file differs")
    a = ap.parse_args(argv)
    text = schema_text()
    if a.write:
        SCHEMA_PATH.write_text(text, encoding="utf-8")
        print(f"wrote {SCHEMA_PATH}")
        return 0
    if a.check:
        same = SCHEMA_PATH.read_text(encoding="utf-8") == text
        print(f"{SCHEMA_PATH}: {'up to date' if same else 'differs from the model; run with --write'}")
        return 0 if same else 1
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
