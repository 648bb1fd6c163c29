"""The one conversion between the event / clip models of the core and nano_vision_msgs.

``event_to_msg`` / ``event_from_msg``: `core.events.model.Event` <-> ``nano_vision_msgs/Event``;
``clip_to_msg`` / ``clip_from_msg``: `ClipNotice` <-> ``Clip``; ``status_to_msg`` /
``status_from_msg``: `ClipStatusNotice` <-> ``ClipStatus``. Lossless for everything the JSON
carries: times to the microsecond (integer arithmetic, not floats), scores to the model's 4 decimals,
boxes (centre + size on the wire) to its 0.1 px. "Not set" on the wire is a zero time, an empty
string, a negative number or a ``has_*`` flag, as each message field documents. ``from_msg`` raises
ValueError (pydantic's ValidationError) for a message the model refuses. The PPE rules' `evidence`
(no message field of its own) travels as ``evidence.<field>`` entries of ``Event.extra``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, get_args

from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import KeyValue
from vision_msgs.msg import BoundingBox2D

from nano_vision_msgs.msg import Clip, ClipRef, ClipStatus
from nano_vision_msgs.msg import Event as EventMsg
from nano_vision_ros.core.events.clips import ClipNotice, ClipStatusNotice
from nano_vision_ros.core.events.model import (
    ClipInfo,
    Event,
    Evidence,
    FaceInfo,
    PlateInfo,
    SnapshotRef,
)
from nano_vision_ros.ros.services import from_time, to_time

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
_US = dt.timedelta(microseconds=1)
_STATES = ("new", "update", "end")
_PLATE_LISTS = ("none", "allow", "deny")
_UPLOAD = ("pending", "queued", "uploading", "done", "failed")
_STATUS = ("queued", "uploading", "done", "failed")
_EVIDENCE = "evidence."  # prefix of the PPE evidence fields in Event.extra


def _const(prefix: str, name: str) -> int:
    return int(getattr(EventMsg, f"{prefix}_{name.upper()}"))


_TYPE_BY_CODE = {v: k for k, v in ((t, _const("TYPE", t)) for t in get_args(Event.model_fields["type"].annotation))}


# -- times ------------------------------------------------------------------------------------------
def iso_to_time(value: str | None) -> Time:
    """ISO-8601 -> Time, exact to the microsecond; None -> the zero time ("not set")."""
    if value is None:
        return Time()
    t = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    us = (t - _EPOCH) // _US
    return Time(sec=us // 1_000_000, nanosec=(us % 1_000_000) * 1000)


def time_to_iso(t: Time) -> str | None:
    """Time -> ISO-8601 UTC with microseconds and a Z (the engine's form); the zero time -> None."""
    if t.sec == 0 and t.nanosec == 0:
        return None
    when = _EPOCH + dt.timedelta(microseconds=t.sec * 1_000_000 + t.nanosec // 1000)
    return when.isoformat(timespec="microseconds").replace("+00:00", "Z")


def _required(t: Time, name: str) -> str:
    value = time_to_iso(t)
    if value is None:
        raise ValueError(f"event field {name}: time not set")
    return value


def _opt(value: str) -> str | None:
    return value or None


def _neg(value: float) -> float | None:
    return None if value < 0 else float(value)


# -- events -----------------------------------------------------------------------------------------
def event_to_msg(ev: Event) -> EventMsg:
    m = EventMsg()
    m.schema_version, m.event_id, m.sequence = ev.schema_version, ev.event_id, ev.sequence
    m.site_id, m.device_id, m.camera, m.rule = ev.site_id, ev.device_id, ev.camera, ev.rule
    m.type, m.state, m.reason = _const("TYPE", ev.type), _const("STATE", ev.state), ev.reason or ""
    m.stamp, m.start, m.end = iso_to_time(ev.stamp), iso_to_time(ev.start), iso_to_time(ev.end)
    m.updated, m.published = iso_to_time(ev.updated), iso_to_time(ev.published)
    m.track_ids, m.labels, m.scores = list(ev.track_ids), list(ev.labels), [float(s) for s in ev.scores]
    m.boxes = [_box(b) for b in ev.boxes]
    m.zone = ev.zone or ""
    m.dwell = -1.0 if ev.dwell_s is None else float(ev.dwell_s)
    m.count = -1 if ev.count is None else int(ev.count)
    m.has_threshold, m.threshold = ev.threshold is not None, float(ev.threshold or 0.0)
    if ev.face is not None:
        m.has_face, m.face_identity, m.face_known = True, ev.face.identity, ev.face.known
        m.face_watchlist, m.face_score = ev.face.watchlist, -1.0 if ev.face.score is None else ev.face.score
    if ev.plate is not None:
        m.has_plate, m.plate_text = True, ev.plate.text
        m.plate_list = _const("PLATE_LIST", ev.plate.list)
        m.plate_score = -1.0 if ev.plate.score is None else ev.plate.score
    if ev.snapshot is not None:
        m.snapshot_path, m.snapshot_stamp = ev.snapshot.path, iso_to_time(ev.snapshot.stamp)
        m.snapshot_width, m.snapshot_height = ev.snapshot.width, ev.snapshot.height
    if ev.clip is not None:
        c = ev.clip
        m.clips = [
            ClipRef(
                path=c.path,
                duration=-1.0 if c.duration is None else c.duration,
                size=-1 if c.size is None else c.size,
                sha256=c.sha256 or "",
                upload_state=_UPLOAD.index(c.upload_state),
                remote=c.remote or "",
                error=c.error or "",
            )
        ]
    m.message = ev.message or ""
    if ev.evidence is not None:  # rule-specific detail: the open-ended `extra` key/values
        m.extra = [
            KeyValue(key=f"{_EVIDENCE}{k}", value=str(v)) for k, v in ev.evidence.model_dump().items() if v is not None
        ]
    return m


def event_from_msg(m: EventMsg) -> Event:
    """The event model of a message (ValueError when the model refuses it)."""
    if m.type not in _TYPE_BY_CODE or m.state >= len(_STATES):
        raise ValueError(f"event {m.event_id!r}: unknown type {m.type} or state {m.state}")
    fields: dict[str, Any] = {
        "schema_version": m.schema_version,
        "event_id": m.event_id,
        "sequence": m.sequence,
        "site_id": m.site_id,
        "device_id": m.device_id,
        "camera": m.camera,
        "type": _TYPE_BY_CODE[m.type],
        "rule": m.rule,
        "state": _STATES[m.state],
        "reason": _opt(m.reason),
        "stamp": _required(m.stamp, "stamp"),
        "start": _required(m.start, "start"),
        "end": time_to_iso(m.end),
        "updated": time_to_iso(m.updated),
        "zone": _opt(m.zone),
        "dwell_s": _neg(m.dwell),
        "count": None if m.count < 0 else m.count,
        "threshold": m.threshold if m.has_threshold else None,
        "face": FaceInfo(
            identity=m.face_identity, known=m.face_known, watchlist=m.face_watchlist, score=_neg(m.face_score)
        )
        if m.has_face
        else None,
        "plate": PlateInfo(
            text=m.plate_text, list=_PLATE_LISTS[m.plate_list] if m.plate_list < 3 else "?", score=_neg(m.plate_score)
        )
        if m.has_plate
        else None,
        "snapshot": SnapshotRef(
            path=m.snapshot_path, stamp=time_to_iso(m.snapshot_stamp), width=m.snapshot_width, height=m.snapshot_height
        )
        if m.snapshot_path
        else None,
        "clip": _clip_info(m.clips[-1]) if m.clips else None,
        "track_ids": list(m.track_ids),
        "labels": list(m.labels),
        "scores": [round(float(s), 4) for s in m.scores],
        "boxes": [_corners(b) for b in m.boxes],
        "evidence": _evidence(m.extra),
        "message": _opt(m.message),
        "published": _required(m.published, "published"),
    }
    return Event.model_validate(fields)


def _evidence(extra: list[KeyValue]) -> Evidence | None:
    """`evidence.<field>` entries of `extra` -> the PPE evidence (pydantic parses the strings back)."""
    fields = {kv.key[len(_EVIDENCE) :]: kv.value for kv in extra if kv.key.startswith(_EVIDENCE)}
    return Evidence.model_validate(fields) if fields else None


def _box(b: tuple[float, float, float, float]) -> BoundingBox2D:
    box = BoundingBox2D()
    box.center.position.x, box.center.position.y = (b[0] + b[2]) / 2.0, (b[1] + b[3]) / 2.0
    box.size_x, box.size_y = b[2] - b[0], b[3] - b[1]
    return box


def _corners(box: BoundingBox2D) -> tuple[float, float, float, float]:
    cx, cy, w, h = box.center.position.x, box.center.position.y, box.size_x, box.size_y
    return (round(cx - w / 2.0, 1), round(cy - h / 2.0, 1), round(cx + w / 2.0, 1), round(cy + h / 2.0, 1))


def _clip_info(c: ClipRef) -> ClipInfo:
    if c.upload_state >= len(_UPLOAD):
        raise ValueError(f"clip {c.path!r}: unknown upload_state {c.upload_state}")
    return ClipInfo(
        path=c.path,
        duration=_neg(c.duration),
        size=None if c.size < 0 else c.size,
        sha256=_opt(c.sha256),
        upload_state=_UPLOAD[c.upload_state],
        remote=_opt(c.remote),
        error=_opt(c.error),
    )


# -- clips --------------------------------------------------------------------------------------------
def clip_to_msg(c: ClipNotice) -> Clip:
    return Clip(
        path=c.path,
        camera=c.camera,
        start=to_time(c.start) if c.start else Time(),
        end=to_time(c.end) if c.end else Time(),
        duration=float(c.duration or 0.0),
        size=int(c.size or 0),
        sha256=c.sha256 or "",
        event_ids=list(c.event_ids),
    )


def clip_from_msg(m: Clip) -> ClipNotice:
    start, end = from_time(m.start), from_time(m.end)
    return ClipNotice(
        path=m.path,
        camera=m.camera,
        start=start or None,
        end=end or None,
        duration=m.duration,
        size=m.size,
        sha256=_opt(m.sha256),
        event_ids=list(m.event_ids),
    )


def status_to_msg(s: ClipStatusNotice) -> ClipStatus:
    return ClipStatus(
        path=s.path,
        sha256=s.sha256 or "",
        state=_STATUS.index(s.state),
        remote=s.remote or "",
        error=s.error or "",
        event_ids=list(s.event_ids),
    )


def status_from_msg(m: ClipStatus) -> ClipStatusNotice:
    if m.state >= len(_STATUS):
        raise ValueError(f"clip status {m.path!r}: unknown state {m.state}")
    return ClipStatusNotice(
        path=m.path,
        sha256=_opt(m.sha256),
        state=_STATUS[m.state],
        remote=_opt(m.remote),
        error=_opt(m.error),
        event_ids=list(m.event_ids),
    )
