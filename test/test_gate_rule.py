"""Gate rule (core, no ROS): plates crossing a line in a direction or dwelling in a zone; allow ->
gate_open, deny / unknown -> gate_alarm or nothing as configured; one event per passage."""

from __future__ import annotations

import numpy as np
import pytest

from nano_vision_ros.core.detection.types import Detections
from nano_vision_ros.core.events import EventEngine, validate_event
from nano_vision_ros.core.events.config import parse_rule

T0 = 1_700_000_000.0
LINE = {
    "name": "gate1",
    "type": "gate",
    "gate": "north",
    "line": [[0, 300], [640, 300]],
    "allow": ["京A·12345"],
    "deny": ["沪B99999"],
    "end_after": 1.0,
}


def plate(text: str, cy: float, tid: int = 5) -> Detections:
    return Detections(
        np.array([[280, cy - 15, 360, cy + 15]], np.float32), np.array([0.9]), np.array([0]), [text], np.array([tid])
    )


def drive(eng: EventEngine, text: str, ys, tid: int = 5, dt: float = 0.2) -> list[dict]:
    out = []
    for k, y in enumerate(ys):
        out += [e.to_json() for e in eng.process("plates", plate(text, y, tid), T0 + k * dt)]
    out += [e.to_json() for e in eng.tick(T0 + len(ys) * dt + 5)]
    for e in out:
        validate_event(e)
    return out


def eng(**over) -> EventEngine:
    return EventEngine([parse_rule({**LINE, **over})], "s", "d", "cam0", clock=lambda: T0)


def test_allowed_plate_crossing_the_line_inwards_opens_the_gate_once() -> None:
    evs = drive(eng(), "京A12345", range(240, 380, 10))
    assert [(e["type"], e["state"]) for e in evs] == [("gate_open", "new"), ("gate_open", "end")]
    new = evs[0]
    assert new["zone"] == "north" and new["plate"] == {"text": "京A12345", "list": "allow", "score": pytest.approx(0.9)}
    assert new["boxes"][0][1] + 15 >= 300  # raised on the frame where the plate crossed


def test_direction_deny_unknown_and_ignore() -> None:
    assert drive(eng(), "京A12345", range(380, 240, -10)) == []  # leaving, the rule watches entries
    assert [e["type"] for e in drive(eng(direction="exit"), "京A12345", range(380, 240, -10))][:1] == ["gate_open"]
    assert [e["plate"]["list"] for e in drive(eng(), "沪B99999", range(240, 380, 10))][:1] == ["deny"]
    unknown = drive(eng(), "粤C11111", range(240, 380, 10))
    assert unknown[0]["type"] == "gate_alarm" and unknown[0]["plate"]["list"] == "none"
    assert drive(eng(on_unknown="ignore"), "粤C11111", range(240, 380, 10)) == []
    assert drive(eng(), "京A12345", range(200, 290, 10)) == []  # never reaches the line


def test_zone_gate_with_dwell() -> None:
    zone = {"name": "gate_zone", "polygon": [[200, 250], [440, 250], [440, 400], [200, 400]], "anchor": "center"}
    e = eng(line=None, zone=zone, dwell=1.0)
    evs = drive(e, "京A12345", [320] * 4)  # 0.6 s at the gate: not yet
    assert evs == []
    evs = drive(eng(line=None, zone=zone, dwell=1.0), "京A12345", [320] * 8)
    assert evs[0]["type"] == "gate_open" and evs[0]["dwell_s"] >= 1.0 and evs[-1]["state"] == "end"


def test_gate_needs_exactly_one_of_line_and_zone() -> None:
    with pytest.raises(Exception, match="line or a zone"):
        parse_rule({**LINE, "line": None})
    with pytest.raises(Exception, match="same"):
        parse_rule({**LINE, "line": [[1, 1], [1, 1]]})
