"""What the rules see, drawn: core.overlay on a real frame, and events_node publishing image_annotated
(zones with counts, the violator red with the rule name) only while someone subscribes."""

from __future__ import annotations

import numpy as np
from conftest import FrameFeeder, sample_frame, wait_for

from nano_vision_ros.core import overlay
from nano_vision_ros.core.detection.types import Detections
from nano_vision_ros.core.events import parse_rules

RULES = """
rules:
  - name: pit
    type: intrusion
    labels: [person]
    zone: {name: pit, polygon: [[100, 300], [500, 300], [500, 560], [100, 560]]}
    cooldown: 0
  - {name: crowd, type: count, thresholds: {person: 9}}
"""
PERSON = (200.0, 250.0, 300.0, 500.0)  # bottom centre (250, 500) is inside the pit
WALKER = (600.0, 100.0, 660.0, 250.0)  # outside


def _dets() -> Detections:
    return Detections(np.array([PERSON, WALKER]), np.array([0.9, 0.8]), np.array([0, 0]), ["person"], np.array([7, 8]))


def _red_share(img: np.ndarray, box: tuple[float, float, float, float]) -> float:
    """Share of pure-red pixels on the box's left edge."""
    x1, y1, _, y2 = (int(v) for v in box)
    edge = img[y1 + 20 : y2 - 5, x1 - 1 : x1 + 2].reshape(-1, 3).astype(int)
    return float(np.mean((edge[:, 2] > 200) & (edge[:, 1] < 60) & (edge[:, 0] < 60)))


def test_scene_and_drawing_on_a_real_frame():
    rules = parse_rules(RULES, "cam0")
    zones = overlay.zones_of(rules)
    assert [z.name for z in zones] == ["pit"]
    dets = _dets()
    assert overlay.zone_counts(dets, zones) == {"pit": {"person": 1}}
    v = overlay.Violations()
    v.update("e1", "pit", "new", [7])
    v.update("e2", "smoke", "new", [])
    assert v.snapshot() == ({7: ["pit"]}, ["smoke"])
    sc = overlay.scene(dets, zones, v.snapshot())
    person, walker = sc.boxes
    assert person.violation and person.color == overlay.RED and person.text.endswith("#7 pit")
    assert not walker.violation and walker.color != overlay.RED
    assert sc.polygons[0].text == "pit: person 1"
    assert any("smoke" in t.text for t in sc.legend)
    img = sample_frame()
    out = overlay.draw(img, sc)
    assert out.shape == img.shape and not np.array_equal(out, img)
    assert _red_share(out, PERSON) > 0.9 and _red_share(out, WALKER) < 0.1
    assert (out[300, 320:480] == 255).all(), "the zone's top edge is drawn white"
    v.update("e1", "pit", "end", [7])
    assert overlay.scene(dets, zones, v.snapshot()).boxes[0].color != overlay.RED
    # two detectors of one camera: both boxes, counted together in the zone
    helmet = Detections(
        np.array([[210.0, 450.0, 240.0, 480.0]]), np.array([0.7]), np.array([0]), ["helmet"], np.array([3])
    )
    both = overlay.scene([dets, helmet], zones, ({}, []))
    assert [b.text.split()[0] for b in both.boxes] == ["person", "person", "helmet"]
    assert both.polygons[0].text == "pit: helmet 1, person 1"
    # the detector's boxes-only view: same boxes, no zones, no legend
    plain = overlay.scene(dets)
    assert not plain.polygons and not plain.legend and len(plain.boxes) == 2


def test_a_gate_line_is_drawn_with_its_counted_direction():
    rules = parse_rules(
        "rules: [{name: gate, type: gate, gate: main, line: [[100, 200], [600, 200]], direction: entry}]", "cam0"
    )
    lines = overlay.lines_of(rules)
    assert [(ln.name, ln.p1, ln.p2, ln.direction) for ln in lines] == [
        ("main", (100.0, 200.0), (600.0, 200.0), "entry")
    ]
    # entry = from the line's left to its right (p1 -> p2 left to right: moving down the image)
    assert lines[0].arrows() == [((350.0, 200.0), (350.0, 230.0))]
    sc = overlay.scene(_dets(), [], ({}, []), lines)
    assert sc.lines[0].text == "main (entry)" and any("lines:" in t.text for t in sc.legend)
    out = overlay.draw(sample_frame(), sc)
    assert (out[200, 400:590] == 255).all() and (out[215, 349:352] == 255).any(), "line and arrow drawn white"


def test_events_node_draws_zones_and_violations_while_watched(start_node, ros_node, tmp_path):
    from diagnostic_msgs.msg import DiagnosticArray
    from sensor_msgs.msg import Image

    from nano_vision_ros.ros import qos
    from nano_vision_ros.ros.image import to_bgr

    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    start_node(
        "events_node",
        "-r",
        "__ns:=/cam0",
        "-p",
        f"rules:={rules}",
        "-p",
        "snapshots:=false",
        "-p",
        "annotated_topic:=image_annotated",
        "-p",
        "diagnostics_period:=0.2",
        name="events",
    )
    n = ros_node("overlay_tester")
    published: list[int] = []
    n.create_subscription(
        DiagnosticArray,
        "/diagnostics",
        lambda m: published.extend(
            int(kv.value)
            for st in m.status
            if "events_node" in st.name
            for kv in st.values
            if kv.key == "annotated_published"
        ),
        10,
    )
    frame = sample_frame()
    feeder = FrameFeeder(n, "/cam0", frame, _dets())
    wait_for(feeder.subscribed, 30, what="events_node subscribed to image_raw and detections")
    feeder.start()
    try:
        wait_for(lambda: len(published) >= 5, 20, what="events_node diagnostics")
        assert set(published) == {0}, "nothing drawn while nobody watches"
        got: list[Image] = []
        n.create_subscription(Image, "/cam0/image_annotated", got.append, qos.SENSOR)

        def red_frame():
            for m in got.copy():  # appended to by the executor thread
                out = to_bgr(m)
                if _red_share(out, PERSON) > 0.9:
                    return [out]
            return None

        out = wait_for(red_frame, 20, what="an annotated frame with the intruder in red")[0]
    finally:
        feeder.stop()
    assert out.shape == frame.shape
    assert _red_share(out, WALKER) < 0.1
    assert (out[300, 320:480] == 255).all(), "the pit zone is drawn"
    assert not np.array_equal(out[:40, :150], frame[:40, :150]), "the legend is drawn"
