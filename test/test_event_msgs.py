"""Event model <-> nano_vision_msgs/Event <-> MQTT JSON <-> JSON Schema: every field survives each
step, and the clip / clip status notices survive their messages (ros/events.py)."""

from __future__ import annotations

import json
from typing import get_args

import pytest

from nano_vision_msgs.msg import ClipRef, ClipStatus
from nano_vision_msgs.msg import Event as EventMsg
from nano_vision_ros.core.events import validate_event
from nano_vision_ros.core.events.clips import ClipNotice, ClipStatusNotice
from nano_vision_ros.core.events.model import (
    ClipInfo,
    Event,
    Evidence,
    FaceInfo,
    PlateInfo,
    SnapshotRef,
)
from nano_vision_ros.ros import events as conv

FULL = Event(
    event_id="4f1c0b7e-6a0e-4c47-9a51-1b2a3c4d5e6f",
    sequence=7,
    site_id="yard",
    device_id="jetson1",
    camera="gate",
    type="plate_denied",
    rule="gate",
    state="update",
    reason="clip_status",
    stamp="2026-11-24T10:21:52.412001Z",
    start="2026-11-24T10:21:51.380000Z",
    end="2026-11-24T10:22:03.999999Z",
    updated="2026-11-24T10:22:40.000123Z",
    zone="entrance",
    dwell_s=12.345,
    count=3,
    threshold=2.0,
    face=FaceInfo(identity="mallory", known=True, watchlist=True, score=0.8999999761581421),
    plate=PlateInfo(text="沪B99999", list="deny", score=0.6600000262260437),
    evidence=Evidence(
        source="attribute",
        classifier="vest_mnv2",
        version="1.2",
        value="no_vest",
        votes=4,
        attempts=5,
        score=0.8123456789,
    ),
    snapshot=SnapshotRef(path="/snap/gate/x.jpg", stamp="2026-11-24T10:21:52.400000Z", width=1280, height=720),
    clip=ClipInfo(
        path="/clips/gate_1.mp4",
        duration=61.5,
        size=123456,
        sha256="ab" * 32,
        upload_state="failed",
        remote="nv://backend/gate/gate_1.mp4",
        error="connection refused",
    ),
    track_ids=[7, -1, 22],
    labels=["person", "head", "沪B99999"],
    scores=[0.9, 0.7712, 1.0],
    boxes=[(100.0, 100.5, 200.3, 400.9), (130.3, 100.0, 170.7, 150.1), (0.0, 0.0, 1919.9, 1079.9)],
    message="gate: plate denied (沪B99999) track 7,22 [update]",
    published="2026-11-24T10:22:40.001000Z",
)
MINIMAL = Event(
    event_id="00000000-0000-4000-8000-000000000001",
    sequence=0,
    site_id="s",
    device_id="d",
    camera="c",
    type="smoke",
    rule="smoke",
    state="new",
    stamp="2023-11-14T22:13:20.000000Z",
    start="2023-11-14T22:13:20.000000Z",
    end=None,
    track_ids=[],
    labels=[],
    scores=[],
    boxes=[],
    published="2023-11-14T22:13:20.100000Z",
)


@pytest.mark.parametrize("ev", [FULL, MINIMAL], ids=["every-field", "optional-fields-unset"])
def test_event_round_trips_message_model_json_schema(ev):
    assert all(getattr(FULL, name) is not None for name in Event.model_fields), "FULL must set every field"
    msg = conv.event_to_msg(ev)
    back = conv.event_from_msg(msg)
    assert back == ev
    text = back.to_json_text()
    data = json.loads(text)
    validate_event(data)  # the committed schema accepts it
    assert list(data) == list(Event.model_fields)  # every field present, in the model's order
    assert Event.model_validate(data) == ev
    # and the message survives a second trip unchanged
    assert conv.event_to_msg(Event.model_validate_json(text)) == msg


def test_message_encodings_of_unset_values():
    m = conv.event_to_msg(MINIMAL)
    assert (m.end.sec, m.end.nanosec, m.updated.sec) == (0, 0, 0)
    assert m.reason == "" and m.zone == "" and m.dwell < 0 and m.count < 0 and not m.has_threshold
    assert not m.has_face and not m.has_plate and m.snapshot_path == "" and m.clips == []
    f = conv.event_to_msg(FULL)
    assert f.type == EventMsg.TYPE_PLATE_DENIED and f.state == EventMsg.STATE_UPDATE
    assert f.plate_list == EventMsg.PLATE_LIST_DENY and f.clips[0].upload_state == ClipRef.UPLOAD_FAILED
    assert (f.stamp.sec, f.stamp.nanosec) == (1795515712, 412001000)  # exact, not via a float
    b = f.boxes[0]
    assert (b.center.position.x, b.size_x) == pytest.approx((150.15, 100.3))
    # the message's constants are the model's value lists, in the converter's order
    assert [
        getattr(ClipRef, f"UPLOAD_{s.upper()}") for s in get_args(ClipInfo.model_fields["upload_state"].annotation)
    ] == list(range(5))
    assert [getattr(EventMsg, f"PLATE_LIST_{s.upper()}") for s in conv._PLATE_LISTS] == [0, 1, 2]
    assert [getattr(EventMsg, f"STATE_{s.upper()}") for s in conv._STATES] == [0, 1, 2]
    assert [getattr(ClipStatus, f"STATE_{s.upper()}") for s in conv._STATUS] == [0, 1, 2, 3]


def test_bad_messages_are_refused_by_name():
    m = conv.event_to_msg(MINIMAL)
    m.type = 200
    with pytest.raises(ValueError, match="unknown type"):
        conv.event_from_msg(m)
    m = conv.event_to_msg(MINIMAL)
    m.event_id = "not-a-uuid"
    with pytest.raises(ValueError, match="event_id"):
        conv.event_from_msg(m)
    m = conv.event_to_msg(MINIMAL)
    m.stamp.sec = 0
    with pytest.raises(ValueError, match="stamp"):
        conv.event_from_msg(m)


def test_clip_and_status_notices_round_trip():
    clip = ClipNotice(
        path="/clips/cam0_1.mp4",
        camera="cam0",
        start=1_700_000_000.25,
        end=1_700_000_061.75,
        duration=61.5,
        size=999,
        sha256="cd" * 32,
        event_ids=["a", "b"],
    )
    assert conv.clip_from_msg(conv.clip_to_msg(clip)) == clip
    for st in (
        ClipStatusNotice(path="/clips/x.mp4", state="done", sha256="ef" * 32, remote="nv://r/x.mp4", event_ids=["a"]),
        ClipStatusNotice(path="/clips/x.mp4", state="failed", error="disk full"),
    ):
        assert conv.status_from_msg(conv.status_to_msg(st)) == st
    bad = conv.status_to_msg(ClipStatusNotice(path="/x", state="queued"))
    bad.state = 9
    with pytest.raises(ValueError, match="unknown state"):
        conv.status_from_msg(bad)
