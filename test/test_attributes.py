"""Attribute classifiers: regions, the per-track vote, training on real crops (the labelled proxy
of samples/vtest.mp4 in test/data/ppe_proxy), the composed ONNX, eval and bad model files."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from nano_vision_ros.core.attributes.backbone import FeatureExtractor
from nano_vision_ros.core.attributes.classifier import (
    AttributeClassifier,
    AttributeStage,
    TrackVoter,
    VoteConfig,
)
from nano_vision_ros.core.attributes.regions import region_box
from nano_vision_ros.core.attributes.train import (
    fit_head,
    group_folds,
    group_of,
    read_crops,
    train,
)
from nano_vision_ros.core.detection.types import Detections
from nano_vision_ros.core.errors import ModelError

REPO = Path(__file__).resolve().parent.parent
PROXY = REPO / "test/data/ppe_proxy"


def _proxy_rows() -> list[list[str]]:
    with open(PROXY / "labels.csv") as f:
        return list(csv.reader(f))[1:]


def make_class_dirs(root: Path, tracks_per_class: int = 4, per_track: int = 3, held_out: bool = False) -> Path:
    """red_top / no_red_top torso crops of a few tracks (held_out: other tracks) as class folders."""
    by: dict[tuple[str, str], list[str]] = {}
    for crop, red, _jeans in _proxy_rows():
        by.setdefault((red, crop.split("_t")[1].split("_")[0]), []).append(crop)
    for cls in ("red_top", "no_red_top"):
        tracks = sorted((t for (c, t) in by if c == cls), key=lambda t: -len(by[(cls, t)]))
        pick = tracks[tracks_per_class : tracks_per_class + 2] if held_out else tracks[:tracks_per_class]
        (root / cls).mkdir(parents=True, exist_ok=True)
        for t in pick:
            for crop in by[(cls, t)][:per_track]:
                os.symlink(PROXY / "torso" / f"{crop}_torso.jpg", root / cls / f"{crop}_torso.jpg")
    return root


def test_region_geometry_and_small_boxes():
    box = np.array([100, 50, 140, 250], np.float32)  # 40 x 200 person
    assert region_box(box, "head", (576, 768, 3), pad=0.0) == (100, 50, 140, 110)
    assert region_box(box, "torso", (576, 768, 3), pad=0.0) == (100, 80, 140, 180)
    assert region_box(np.array([0, 0, 8, 30], np.float32), "head", (576, 768, 3)) is None  # too small
    assert region_box(np.array([-20, -5, 30, 100], np.float32), "person", (90, 768, 3), pad=0.0) == (0, 0, 30, 90)


def test_vote_needs_attempts_agreement_and_score():
    v = TrackVoter(VoteConfig(min_attempts=3, agreement=0.6, min_score=0.8, period=1.0, recheck=5.0))
    assert v.add(1, "no_helmet", 0.95, 0.0).value is None  # one frame is not a verdict
    assert not v.due(1, 0.5) and v.due(1, 1.0)
    v.add(1, "helmet", 0.9, 1.0)
    v.add(1, "no_helmet", 0.9, 2.0)  # 2 of 3 attempts (67 % >= 60 %), mean score .925 >= .8
    assert v.get(1).value == "no_helmet" and v.get(1).votes == 2 and v.get(1).attempts == 3
    w = TrackVoter(VoteConfig(min_attempts=3, agreement=0.6, min_score=0.8))
    for k in range(3):
        last = w.add(7, "no_helmet", 0.7, float(k))
    assert last.value is None and last.score == pytest.approx(0.7)  # agreeing but unsure: no verdict
    for k in range(3, 6):
        last = w.add(7, "no_helmet", 0.99, float(k))
    assert last.value == "no_helmet"
    assert not w.due(7, 6.0) and w.due(7, 10.0)  # assigned: re-checked every `recheck` s only
    w.gc(100.0)
    assert w.get(7) is None


def test_vote_agreement_threshold():
    w = TrackVoter(VoteConfig(min_attempts=3, agreement=0.6, min_score=0.5))
    for k, lab in enumerate(["a", "b", "a", "b", "a"]):
        last = w.add(1, lab, 0.9, float(k))
    assert last.value == "a" and last.votes == 3 and last.attempts == 5  # 60 %
    last = w.add(1, "b", 0.9, 5.0)
    assert last.value is None  # 3 of 6 = 50 %


def test_group_folds_never_split_a_track():
    groups = [f"cam0:t{i // 3}" for i in range(30)]
    folds = group_folds(groups, np.zeros(30, int), 4)
    seen = set()
    for f in folds:
        gs = {groups[i] for i in f}
        assert not gs & seen
        seen |= gs
    assert sum(len(f) for f in folds) == 30
    assert group_of(Path("cam0_0000012.3_t17_torso.jpg")) == "cam0:t17"


def test_train_compose_eval_on_real_crops(tmp_path):
    data = make_class_dirs(tmp_path / "data", tracks_per_class=3)
    res = train(data, "red_top", tmp_path / "out", region="torso", folds=3, threads=2)
    assert res.model.is_file() and res.card.is_file() and res.confusion_png.is_file()
    assert res.cv.confusion.sum() == 18 and res.cv.groups == 6
    card = res.card.read_text()
    assert "split by track" in card and "sha256" in card and "red_top" in card
    clf = AttributeClassifier(str(res.model))
    assert clf.classes == ["no_red_top", "red_top"] and clf.region == "torso" and clf.name == "red_top"
    # the composed graph computes what the numpy head does on the backbone's features
    from nano_vision_ros.core.attributes.train import load_dataset

    ds = load_dataset(data)
    crops = read_crops(ds.files)
    x = FeatureExtractor.open("models/attr_backbone_mobilenetv2.onnx", 2).run(crops)
    head = fit_head(x, ds.y, 2)
    np.testing.assert_allclose(clf.predict(crops), head.proba(x), atol=2e-3)
    # eval on other tracks through the command line
    held = make_class_dirs(tmp_path / "held", tracks_per_class=3, held_out=True)
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    out = subprocess.run(
        [sys.executable, "-m", "nano_vision_ros.cli", "attributes", "eval", str(res.model), str(held)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert "accuracy" in out.stdout and "red_top" in out.stdout
    acc = float(out.stdout.split("accuracy ")[1].split("%")[0])
    assert acc >= 70.0, out.stdout  # a colour on the torso: other people's crops are still told apart


def test_stage_votes_on_tracks(tmp_path):
    data = make_class_dirs(tmp_path / "data", tracks_per_class=3, per_track=2)
    res = train(data, "red_top", tmp_path / "out", region="person", folds=2, threads=2)
    import cv2

    frame = np.full((400, 400, 3), 128, np.uint8)
    red = cv2.imread(str(min((data / "red_top").iterdir())))
    frame[100 : 100 + red.shape[0], 50 : 50 + red.shape[1]] = red
    box = [50, 100, 50 + red.shape[1], 100 + red.shape[0]]
    stage = AttributeStage([AttributeClassifier(str(res.model))], VoteConfig(min_score=0.5, period=1.0), min_height=8)
    for k in range(4):
        dets = Detections(np.array([box], np.float32), np.array([0.9]), np.array([0]), ["person"], np.array([5]))
        dets = stage.apply(frame, dets, float(k) * 0.5)
    att = dets.attributes[0]["attributes"]["red_top"]
    assert stage.runs == 2  # 2 s at a 1 s period: two attempts, not one per frame
    assert att["attempts"] == 2 and att["value"] is None and att["leading"] == "red_top"
    assert att["classifier"] == "red_top" and att["version"] == res.info["version"]


def test_bad_attribute_models(tmp_path):
    with pytest.raises(ModelError, match="file not found"):
        AttributeClassifier(str(tmp_path / "none.onnx"))
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(ModelError, match="bad.onnx"):
        AttributeClassifier(str(bad))
    with pytest.raises(ModelError, match="metadata"):
        AttributeClassifier("models/attr_backbone_mobilenetv2.onnx")  # a backbone, not a trained classifier


def _person(tid: int, vote: dict | None, box=(100, 100, 140, 220)) -> Detections:
    attrs = [{"attributes": {"vest": vote}} if vote else {}]
    return Detections(np.array([box], np.float32), np.array([0.9]), np.array([0]), ["person"], np.array([tid]), attrs)


def test_ppe_rule_acts_on_the_vote_in_zone_and_hours():
    import datetime as dt

    from nano_vision_ros.core.events.config import parse_rules
    from nano_vision_ros.core.events.engine import EventEngine

    rules = parse_rules(
        """
rules:
  - name: vest_road
    type: no_vest
    attribute: vest
    zone: {name: road, polygon: [[0, 0], [300, 0], [300, 300], [0, 300]]}
    schedule: [{days: [mon, tue, wed, thu, fri], start: "07:00", end: "18:00", timezone: UTC}]
    cooldown: 30
""",
        "cam0",
    )
    eng = EventEngine(rules, "site", "dev", "cam0")
    t0 = dt.datetime(2026, 12, 2, 9, 0, tzinfo=dt.timezone.utc).timestamp()  # a Wednesday, 09:00 UTC
    undecided = {
        "value": None,
        "leading": "no_vest",
        "score": 0.95,
        "votes": 2,
        "attempts": 2,
        "classifier": "vest",
        "version": "v1",
    }
    voted = {**undecided, "value": "no_vest", "votes": 3, "attempts": 3}
    assert eng.process("detections", _person(4, undecided), t0) == []  # one frame / no verdict: nothing
    evs = eng.process("detections", _person(4, voted), t0 + 1)
    assert len(evs) == 1 and evs[0].type == "no_vest" and evs[0].zone == "road" and evs[0].track_ids == [4]
    e = evs[0].evidence
    assert (e.source, e.classifier, e.version, e.value, e.votes, e.attempts) == (
        "attribute",
        "vest",
        "v1",
        "no_vest",
        3,
        3,
    )
    assert evs[0].to_json()["evidence"]["score"] == 0.95
    ok = {**voted, "value": "vest"}
    eng.process("detections", _person(5, ok, (150, 100, 190, 220)), t0 + 2)
    c = rules[0].compliance()["road"]
    assert c["people"] == 2 and c["violators"] == 1 and c["compliant_share"] == 0.5
    # outside the zone: no PPE required; outside working hours: rule off
    assert eng.process("detections", _person(6, voted, (400, 100, 440, 400)), t0 + 3) == []
    night = dt.datetime(2026, 12, 2, 20, 0, tzinfo=dt.timezone.utc).timestamp()
    assert [ev for ev in eng.process("detections", _person(7, voted), night) if ev.state == "new"] == []
    # boxes still count with an attribute rule: an explicit no-vest box is a violation without a vote
    dets = Detections(
        np.array([[100, 100, 140, 220], [102, 130, 138, 180]], np.float32),
        np.array([0.9, 0.8]),
        np.array([0, 1]),
        ["person", "no_vest"],
        np.array([8, 9]),
    )
    evs = eng.process("detections", dets, t0 + 10)
    assert any(ev.track_ids[0] == 8 and ev.evidence.source == "boxes" for ev in evs)


def test_ppe_rule_config_errors():
    from nano_vision_ros.core.errors import ConfigError
    from nano_vision_ros.core.events.config import parse_rules

    with pytest.raises(ConfigError, match="violation_values"):
        parse_rules("rules: [{name: h, type: no_hardhat, attribute: helmet, violation_values: []}]", "cam0")
    with pytest.raises(ConfigError, match="HH:MM"):
        parse_rules("rules: [{name: h, type: no_hardhat, schedule: [{start: '7am'}]}]", "cam0")
    with pytest.raises(ConfigError, match="timezone"):
        parse_rules("rules: [{name: h, type: no_hardhat, schedule: [{timezone: Mars/Base}]}]", "cam0")


def test_attribute_votes_cross_the_message():
    from std_msgs.msg import Header

    from nano_vision_ros.ros.detections import from_msg, to_msg

    vote = {
        "value": "no_vest",
        "leading": "no_vest",
        "score": 0.9123,
        "votes": 4,
        "attempts": 5,
        "classifier": "vest",
        "version": "20261202T2000Z",
    }
    msg = to_msg(_person(3, vote), Header())
    assert msg.detections[0].results[0].hypothesis.class_id == "person"  # readers of results[0] see no change
    back = from_msg(msg)
    assert back.labels == ["person"] and int(back.track_ids[0]) == 3
    assert back.attributes[0]["attributes"]["vest"] == {
        **{k: v for k, v in vote.items() if k != "leading"},
        "score": pytest.approx(0.9123, abs=1e-4),
    }
    assert from_msg(to_msg(_person(3, {**vote, "value": None}), Header())).attributes[0] == {}  # undecided: not sent
