"""Core rule engine: debounce, cooldown, lifecycle, PPE association, zones, loitering, counts,
faces, plates, clip updates; every event validates against the schema."""

from __future__ import annotations

import uuid

import numpy as np
import pytest

from nano_vision_ros.core.detection.types import Detections
from nano_vision_ros.core.errors import ConfigError
from nano_vision_ros.core.events import EventEngine, parse_rules, validate_event
from nano_vision_ros.core.events.config import parse_rule
from nano_vision_ros.core.events.schema import EventSchemaError


def dets(*items):
    """items: (label, (x1, y1, x2, y2), track_id[, score])."""
    labels = []
    boxes, scores, cls, tids = [], [], [], []
    for it in items:
        label, box, tid = it[:3]
        if label not in labels:
            labels.append(label)
        cls.append(labels.index(label))
        boxes.append(box)
        scores.append(it[3] if len(it) > 3 else 0.9)
        tids.append(tid)
    if not items:
        return Detections.empty()
    return Detections(np.array(boxes, np.float32), np.array(scores, np.float32), np.array(cls), labels, np.array(tids))


def engine(*rules: dict) -> EventEngine:
    return EventEngine([parse_rule(r) for r in rules], "site1", "dev1", "cam0", clock=lambda: 1_700_000_000.0)


def js(events):
    """The engine's events (models) as their MQTT JSON dicts, each validated against the schema."""
    out = [ev.to_json() for ev in events]
    for ev in out:
        validate_event(ev)
    return out


def run(eng, frames, source="detections"):
    """frames: list of (stamp, Detections); returns all events as JSON dicts, each validated."""
    out = []
    for stamp, d in frames:
        out += js(eng.process(source, d, stamp))
    return out


T0 = 1_700_000_000.0
PERSON = ("person", (100, 100, 200, 400), 7)
HELMET_ON = ("helmet", (130, 95, 170, 140), 21)
HEAD_BARE = ("head", (130, 100, 170, 150), 22)


def test_debounce_min_duration_then_new_and_end_with_stable_id():
    eng = engine({"name": "hardhat", "type": "no_hardhat", "min_duration": 1.0, "end_after": 0.5, "cooldown": 5})
    frames = [(T0 + i * 0.1, dets(PERSON)) for i in range(15)]  # person without helmet for 1.4 s
    frames += [(T0 + 1.5 + i * 0.1, dets()) for i in range(10)]  # gone
    evs = run(eng, frames)
    assert [e["state"] for e in evs] == ["new", "end"]
    new, end = evs
    assert new["event_id"] == end["event_id"] and uuid.UUID(new["event_id"])
    assert (new["sequence"], end["sequence"]) == (0, 1)
    assert new["type"] == "no_hardhat" and new["track_ids"] == [7]
    # new only after 1 s of frames: the first frame with stamp - start >= 1.0
    assert new["stamp"].startswith("2023-11-14T22:13:21.0")
    assert new["start"].startswith("2023-11-14T22:13:20.0")
    assert end["end"] is not None and end["site_id"] == "site1" and end["device_id"] == "dev1"


def test_short_violation_is_debounced_away():
    eng = engine({"name": "hardhat", "type": "no_hardhat", "min_duration": 1.0, "end_after": 0.3})
    frames = [(T0 + i * 0.1, dets(PERSON)) for i in range(5)] + [(T0 + 1.0 + i * 0.1, dets()) for i in range(5)]
    assert run(eng, frames) == []


def test_helmet_in_head_region_means_no_event_and_bare_head_means_event():
    eng = engine({"name": "hardhat", "type": "no_hardhat"})
    assert run(eng, [(T0, dets(PERSON, HELMET_ON))]) == []
    # a helmet far from the head (held in the hand at hip height) does not count
    eng = engine({"name": "hardhat", "type": "no_hardhat"})
    evs = run(eng, [(T0, dets(PERSON, ("helmet", (190, 300, 230, 340), 23)))])
    assert [e["type"] for e in evs] == ["no_hardhat"]
    # require_ppe off: only explicit violation boxes count, associated to the person
    eng = engine({"name": "hardhat", "type": "no_hardhat", "require_ppe": False})
    assert run(eng, [(T0, dets(PERSON))]) == []
    evs = run(eng, [(T0 + 0.1, dets(PERSON, HEAD_BARE))])
    assert evs[0]["track_ids"] == [7, 22] and evs[0]["labels"] == ["person", "head"]


def test_violation_box_without_person_is_its_own_event():
    eng = engine({"name": "vest", "type": "no_vest"})
    evs = run(eng, [(T0, dets(("no-vest", (10, 10, 60, 90), 3)))])
    assert evs[0]["type"] == "no_vest" and evs[0]["track_ids"] == [3]


def test_vest_association_uses_torso_region():
    eng = engine({"name": "vest", "type": "no_vest"})
    torso_vest = ("vest", (110, 180, 190, 300), 30)
    assert run(eng, [(T0, dets(PERSON, torso_vest))]) == []
    eng = engine({"name": "vest", "type": "no_vest"})
    assert len(run(eng, [(T0, dets(PERSON, ("vest", (400, 180, 480, 300), 31)))])) == 1


def test_cooldown_per_rule_and_track():
    eng = engine({"name": "mask", "type": "no_mask", "end_after": 0.2, "cooldown": 5.0})
    nm = lambda tid: ("no_mask", (0, 0, 20, 20), tid)
    evs = run(
        eng,
        [
            (T0, dets(nm(1))),
            (T0 + 0.5, dets()),  # new + end at ~T0
            (T0 + 1.0, dets(nm(1), nm(2))),  # track 1 in cooldown, track 2 new
            (T0 + 1.5, dets()),
            (T0 + 6.0, dets(nm(1))),
        ],
    )  # cooldown over: track 1 again
    states = [(e["state"], e["track_ids"]) for e in evs]
    assert states == [("new", [1]), ("end", [1]), ("new", [2]), ("end", [2]), ("new", [1])]
    assert len({e["event_id"] for e in evs if e["state"] == "new"}) == 3


def test_smoke_must_persist_n_frames():
    eng = engine({"name": "smoke", "type": "smoke", "min_frames": 4, "end_after": 2.0})
    sm = ("smoke", (0, 0, 300, 200), -1, 0.6)
    evs = run(eng, [(T0 + i * 0.1, dets(sm)) for i in range(3)])
    assert evs == []
    evs = run(eng, [(T0 + 0.3, dets(sm))])
    assert [e["type"] for e in evs] == ["smoke"] and evs[0]["track_ids"] == [-1]


def test_intrusion_zone_uses_foot_point():
    zone = {"name": "pit", "polygon": [[0, 300], [300, 300], [300, 500], [0, 500]]}
    eng = engine({"name": "pit", "type": "intrusion", "zone": zone})
    assert run(eng, [(T0, dets(("person", (100, 50, 150, 250), 1)))]) == []  # feet at y=250: outside
    evs = run(eng, [(T0 + 0.1, dets(("person", (100, 150, 150, 350), 1)))])  # feet at y=350: inside
    assert evs[0]["type"] == "intrusion" and evs[0]["zone"] == "pit"
    # other labels do not intrude
    eng = engine({"name": "pit", "type": "intrusion", "zone": zone})
    assert run(eng, [(T0, dets(("car", (100, 150, 150, 350), 2)))]) == []


def test_loitering_after_dwell_with_dwell_time():
    zone = {"name": "gate", "polygon": [[0, 0], [640, 0], [640, 480], [0, 480]]}
    eng = engine(
        {"name": "loiter", "type": "loitering", "zone": zone, "dwell": 3.0, "end_after": 0.5, "update_interval": 1.0}
    )
    p = ("person", (10, 10, 50, 100), 4)
    evs = run(eng, [(T0 + i * 0.5, dets(p)) for i in range(11)] + [(T0 + 6.0, dets())])
    assert [e["state"] for e in evs] == ["new", "update", "update", "end"]
    assert evs[0]["dwell_s"] == pytest.approx(3.0)
    assert evs[-1]["dwell_s"] == pytest.approx(5.0)
    assert [e["sequence"] for e in evs] == [0, 1, 2, 3]
    assert all(e["reason"] == "progress" for e in evs[1:3])


def test_count_threshold_per_class():
    eng = engine({"name": "crowd", "type": "count", "thresholds": {"person": 3}, "end_after": 0.2})
    p = lambda i: ("person", (i * 10, 0, i * 10 + 5, 20), i)
    assert run(eng, [(T0, dets(p(1), p(2)))]) == []
    evs = run(eng, [(T0 + 0.1, dets(p(1), p(2), p(3), ("car", (0, 0, 5, 5), 9)))])
    assert evs[0]["count"] == 3 and evs[0]["threshold"] == 3 and sorted(evs[0]["track_ids"]) == [1, 2, 3]
    evs = run(eng, [(T0 + 0.5, dets(p(1)))])
    assert [e["state"] for e in evs] == ["end"]


def test_face_known_unknown_watchlist():
    eng = engine({"name": "faces", "type": "face", "watchlist": ["mallory"], "report_known": False})
    evs = run(
        eng,
        [(T0, dets(("alice", (0, 0, 10, 10), 1), ("unknown", (20, 0, 30, 10), 2), ("mallory", (40, 0, 50, 10), 3)))],
        source="faces",
    )
    by_type = {e["type"]: e for e in evs}
    assert set(by_type) == {"face_unknown", "face_watchlist"}
    assert by_type["face_watchlist"]["face"] == {
        "identity": "mallory",
        "known": True,
        "watchlist": True,
        "score": pytest.approx(0.9),
    }
    assert by_type["face_unknown"]["face"]["known"] is False
    # face rules ignore the detections topic
    assert run(eng, [(T0 + 0.1, dets(("mallory", (40, 0, 50, 10), 3)))], source="detections") == []


def test_plate_allow_deny_lists_normalised():
    eng = engine(
        {"name": "gate", "type": "plate", "allow": ["京A 12345"], "deny": ["沪B-99999"], "report_unlisted": False}
    )
    evs = run(
        eng,
        [
            (
                T0,
                dets(
                    ("京A12345", (0, 0, 10, 5), -1),
                    ("沪B99999", (0, 10, 10, 15), -1),
                    ("粤C11111", (0, 20, 10, 25), -1),
                ),
            )
        ],
        source="plates",
    )
    assert sorted((e["type"], e["plate"]["text"], e["plate"]["list"]) for e in evs) == [
        ("plate_allowed", "京A12345", "allow"),
        ("plate_denied", "沪B99999", "deny"),
    ]


def test_clip_and_upload_state_updates_after_end():
    eng = engine({"name": "fire", "type": "fire", "min_frames": 1, "end_after": 0.2})
    evs = run(eng, [(T0, dets(("fire", (0, 0, 5, 5), -1))), (T0 + 1, dets())])
    eid = evs[0]["event_id"]
    ups = js(
        eng.on_clip(
            {
                "event_ids": [eid, "someone-else"],
                "path": "/clips/a.mp4",
                "duration": 12.5,
                "size": 1000,
                "sha256": "ab" * 32,
            }
        )
    )
    assert len(ups) == 1 and ups[0]["reason"] == "clip" and ups[0]["clip"]["upload_state"] == "pending"
    assert ups[0]["state"] == "update" and ups[0]["end"] is not None and ups[0]["sequence"] == 2
    done = js(eng.on_clip_status({"path": "/clips/a.mp4", "state": "done", "remote": "nv://server/a.mp4"}))
    assert done[0]["clip"]["upload_state"] == "done" and done[0]["clip"]["remote"] == "nv://server/a.mp4"
    assert done[0]["sequence"] == 3
    for e in ups + done:
        validate_event(e)
    with pytest.raises(ValueError):
        eng.on_clip({"path": 3})
    with pytest.raises(ValueError):
        eng.on_clip_status({"path": "/clips/a.mp4", "state": "exploded"})


def test_untracked_detections_share_one_key_and_tick_ends_them():
    eng = engine({"name": "obj", "type": "object", "labels": ["dog"], "end_after": 1.0})
    evs = run(eng, [(T0, dets(("dog", (0, 0, 5, 5), -1), ("dog", (10, 0, 15, 5), -1)))])
    assert len(evs) == 1 and evs[0]["track_ids"] == [-1, -1]
    assert eng.tick(T0 + 0.5) == []
    ends = js(eng.tick(T0 + 2.0))
    assert [e["state"] for e in ends] == ["end"]


def test_schema_rejects_bad_events():
    eng = engine({"name": "obj", "type": "object", "labels": ["dog"]})
    ev = run(eng, [(T0, dets(("dog", (0, 0, 5, 5), 1)))])[0]
    for field, value in (
        ("state", "started"),
        ("event_id", "nope"),
        ("sequence", -1),
        ("boxes", [[1, 2, 3]]),
        ("scores", [1.5]),
    ):
        bad = dict(ev, **{field: value})
        with pytest.raises(EventSchemaError, match=field):
            validate_event(bad)
    with pytest.raises(EventSchemaError):
        validate_event({k: v for k, v in ev.items() if k != "camera"})
    with pytest.raises(EventSchemaError):
        validate_event(dict(ev, extra_field=1))


def test_rules_yaml_per_camera_and_errors(tmp_path):
    text = """
rules:
  - {name: hardhat, type: no_hardhat}
cameras:
  gate:
    rules:
      - {name: pit, type: intrusion, zone: {name: pit, polygon: [[0,0],[10,0],[10,10]]}}
"""
    assert [r.name for r in parse_rules(text, "cam0")] == ["hardhat"]
    assert [r.name for r in parse_rules(text, "gate")] == ["pit"]
    f = tmp_path / "rules.yaml"
    f.write_text(text)
    assert [r.name for r in parse_rules(str(f), "gate")] == ["pit"]
    assert parse_rules("", "cam0") == []
    for bad, msg in (
        ("rules: [{name: a, type: teleport}]", "type"),
        ("rules: [{name: a, type: intrusion}]", "key 'rules.0.zone' missing"),
        ("rules: [{name: a, type: loitering, zone: {name: z, polygon: [[0,0],[1,0],[1,1]]}}]", "dwell"),
        ("rules: [{name: a, type: count}]", "thresholds"),
        ("rules: [{name: a, type: smoke}, {name: a, type: fire}]", "used twice"),
        ("rules: [{name: a, type: smoke, cooldown: -1}]", "cooldown"),
        ("rules: [[", "YAML"),
        ("/nonexistent/rules.yaml", "not found"),
    ):
        with pytest.raises(ConfigError, match=msg):
            parse_rules(bad, "cam0")


def test_upload_status_that_overtakes_the_clip_notice_is_applied_after_it():
    eng = engine({"name": "fire", "type": "fire", "min_frames": 1})
    eid = run(eng, [(T0, dets(("fire", (0, 0, 5, 5), -1)))])[0]["event_id"]
    assert eng.on_clip_status({"path": "/clips/b.mp4", "state": "queued"}) == []
    ups = js(eng.on_clip({"event_ids": [eid], "path": "/clips/b.mp4", "size": 5}))
    assert [(e["reason"], e["clip"]["upload_state"]) for e in ups] == [("clip", "pending"), ("clip_status", "queued")]
    assert [e["sequence"] for e in ups] == [1, 2]


def test_unknown_rule_keys_are_refused_with_file_line_and_the_closest_name(tmp_path):
    f = tmp_path / "rules.yaml"
    f.write_text(
        "rules:\n"
        "  - {name: hardhat, type: no_hardhat}\n"
        "  - name: pit\n"
        "    type: intrusion\n"
        "    dwel: 3\n"  # line 5: not a key of intrusion (nor spelt right)
        "    zone: {name: pit, polgon: [[0,0],[10,0],[10,10]]}\n"
        "cameras:\n"
        "  gate:\n"
        "    rules:\n"
        "      - {name: g, type: plate, deny: [X1], dwell: 2}\n"  # line 10: loitering's key on a plate rule
        "      - {name: c, type: cuont}\n"
    )
    with pytest.raises(ConfigError) as err:
        parse_rules(str(f), "cam0")  # the whole file is checked, whichever camera asks
    msg = str(err.value)
    assert f"parameter 'rules': {f}:5: key 'dwel' in 'rules.1' unknown" in msg
    assert f"{f}:6: key 'polgon' in 'rules.1.zone' unknown (did you mean 'polygon'?)" in msg
    assert f"{f}:10: key 'dwell' in 'cameras.gate.rules.0' unknown" in msg
    assert f"{f}:11: 'cameras.gate.rules.1.type': unknown value 'cuont' (did you mean 'count'?" in msg
    # an inline rules string names its line
    with pytest.raises(
        ConfigError, match=r"parameter 'rules':2: key 'min_scor' in 'rules.0' unknown \(did you mean 'min_score'\?\)"
    ):
        parse_rules("rules:\n  - {name: a, type: object, labels: [x], min_scor: 0.3}\n", "cam0")
    with pytest.raises(ConfigError, match=r"key 'rulez' in 'cameras.gate' unknown \(did you mean 'rules'\?\)"):
        parse_rules("cameras: {gate: {rulez: []}}", "gate")


def test_each_rule_type_has_only_its_own_fields():
    from nano_vision_ros.core.events.rules import (
        RULE_TYPES,
        RuleBase,
        rule_class,
        type_tag,
    )

    assert len({type_tag(c) for c in RULE_TYPES}) == len(RULE_TYPES)
    assert rule_class("no_such") is None
    common = set(RuleBase.model_fields)
    own = {type_tag(c): set(c.model_fields) - common for c in RULE_TYPES}
    assert own["plate"] == {"type", "allow", "deny", "report_unlisted"}
    assert own["smoke"] == {"type", "labels"} and "dwell" in own["loitering"] and "dwell" not in own["intrusion"]
    assert parse_rule({"name": "s", "type": "smoke"}).min_frames == 3  # per-type default
    assert parse_rule({"name": "f", "type": "face"}).source == "faces"
    # the event types the rules can raise are exactly the schema's (a new rule type updates both)
    from nano_vision_ros.core.events import EVENT_TYPES, load_schema

    assert sorted(EVENT_TYPES) == sorted(load_schema()["properties"]["type"]["enum"])


def test_committed_schema_is_the_one_generated_from_the_event_model():
    """Regenerate with `scripts/event_schema.py --write` after changing core/events/model.py."""
    import json

    import pydantic

    from nano_vision_ros.core.events.model import SCHEMA_PATH, json_schema, schema_text

    if pydantic.VERSION.startswith("2.0"):
        # the oldest supported pydantic writes the schema in another form (the file is generated with
        # the project venv's pydantic; 2.0 also calls every serialized field required): the fields,
        # the required keys and the enums must still agree
        gen, com = json_schema(), json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
        assert set(gen["properties"]) == set(com["properties"]) and set(com["required"]) <= set(gen["required"])
        assert set(gen["$defs"]) == set(com["$defs"])
        assert gen["properties"]["type"]["enum"] == com["properties"]["type"]["enum"]
        return
    assert SCHEMA_PATH.read_text(encoding="utf-8") == schema_text(), "run scripts/event_schema.py --write"
