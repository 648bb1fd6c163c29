"""Plate reading on SYNTHETIC Chinese plates (rendered here, test/plates_synth.py), plate rules,
colour, CTC decoding, voting and lists."""

from __future__ import annotations

import numpy as np
import pytest
from plates_synth import dataset, render_plate

from nano_vision_ros.core.detection.types import Detections
from nano_vision_ros.core.recognition.ocr import ctc_greedy
from nano_vision_ros.core.recognition.plate_rules import (
    PROVINCES,
    clean_plate,
    fix_confusions,
    is_valid,
    plate_colour,
    plate_type,
)
from nano_vision_ros.core.recognition.plates import PlateReader, PlatesConfig

N_PLATES = 210


@pytest.fixture(scope="module")
def reader() -> PlateReader:
    r = PlateReader(PlatesConfig(finder={"mode": "frame"}))
    r.warmup()
    yield r
    r.close()


def test_rules() -> None:
    assert len(PROVINCES) == 31
    assert plate_type("京A12345") == "ordinary"
    assert plate_type("粤B1234学") == "ordinary"
    assert plate_type("沪AD12345") == "new_energy"
    assert plate_type("沪A12345F") == "new_energy"
    for bad in ("京A1234", "京AI2345", "京O12345", "AA12345", "沪AX12345", "京A123456"):
        assert not is_valid(bad), bad
    # positional fixes: O/I never appear after the province; the letter position takes letters
    assert fix_confusions("京AO1I23") == "京A01123"
    assert fix_confusions("京0B1234") == "京DB1234"
    assert clean_plate("苏E·C0D12")[0] == "苏EC0D12"
    assert clean_plate("粤U·639320") == ("粤U63932D", True)  # large new-energy: D/F last
    assert clean_plate("浙AD·1O234") == ("浙AD10234", True)
    assert clean_plate("x川A·12345y") == ("川A12345", True)  # frame text around the plate
    assert clean_plate("hello")[1] is False


@pytest.mark.parametrize("colour", ["blue", "yellow", "green"])
def test_colour_of_rendered_plates(colour: str) -> None:
    text = "京A12345" if colour != "green" else "京AD12345"
    assert plate_colour(render_plate(text, colour))[0] == colour


def test_colour_white_and_black() -> None:
    white = np.full((40, 120, 3), 235, np.uint8)
    white[10:30, 10:110:12] = 20  # dark characters
    black = np.full((40, 120, 3), 25, np.uint8)
    black[10:30, 10:110:12] = 240
    assert plate_colour(white)[0] == "white"
    assert plate_colour(black)[0] == "black"


def test_ctc_greedy_decoder_for_lprnet_style_output() -> None:
    alphabet = ["<blank>", "京", "A", "1", "2"]
    seq = [1, 1, 0, 2, 0, 3, 3, 0, 3, 4, 0]  # 京 京 - A - 1 1 - 1 2 -
    probs = np.full((1, len(seq), len(alphabet)), 0.01, np.float32)
    probs[0, np.arange(len(seq)), seq] = 0.96
    ((text, conf),) = ctc_greedy(probs, alphabet, blank=0)
    assert text == "京A112" and conf == pytest.approx(0.96)


def test_synthetic_plates_read_whole_plate_exact(reader: PlateReader) -> None:
    """>= 95 % whole-plate exactness on SYNTHETIC plates (all 31 provinces, 7 and 8 characters,
    blue / yellow / green, blur, perspective, noise), found by the text detector in the image."""
    data = dataset(N_PLATES, seed=11)
    assert len({t[0] for t in data}) == N_PLATES and {len(t[0]) for t in data} == {7, 8}
    assert {t[0][0] for t in data} == set(PROVINCES)
    exact, colour_ok, misses = 0, 0, []
    for text, colour, img, box in data:
        readings = reader.find_and_read(img)
        best = max(readings, key=lambda r: r.confidence) if readings else None
        if best is not None and best.text == text:
            exact += 1
            # the reading's box is on the plate
            cx, cy = (best.box[0] + best.box[2]) / 2, (best.box[1] + best.box[3]) / 2
            assert box[0] <= cx <= box[2] and box[1] <= cy <= box[3]
        else:
            misses.append((text, best.text if best else None))
        if best is not None and best.colour == colour:
            colour_ok += 1
    rate = exact / N_PLATES
    print(
        f"SYNTHETIC plates: {exact}/{N_PLATES} exact ({rate:.1%}), colour {colour_ok}/{N_PLATES}; misses {misses[:10]}"
    )
    assert rate >= 0.95, misses
    assert colour_ok / N_PLATES >= 0.95


def test_vehicle_boxes_voting_and_lists() -> None:
    data = dataset(3, seed=5)
    text, _, img, _box = data[0]
    cfg = PlatesConfig(allow_list=[text[:2] + "·" + text[2:]], deny_list=[data[1][0]])
    r = PlateReader(cfg)
    try:
        h, w = img.shape[:2]
        # a "person" box is ignored; the car box is searched
        vehicles = Detections(
            np.array([[0, 0, w, h], [0, 0, w, h]], np.float32),
            np.array([0.9, 0.8]),
            np.array([0, 1]),
            ["person", "car"],
            np.array([-1, 42]),
        )
        for i in range(3):
            d = r.process(img, vehicles)
            assert len(d) == 1
            a = d.attributes[0]
            assert d.label_of(0) == text and a["listed"] == "allow" and a["vehicle"] == 1
            assert a["votes"] == i + 1  # one track: the vehicle's track id
        only_person = vehicles.select(np.array([0]))
        assert len(r.process(img, only_person)) == 0
        d = r.process(data[1][2], None)
        assert d.attributes[0]["listed"] == "deny"
        r.set_lists([], [])
        assert r.process(data[1][2], None).attributes[0]["listed"] == "none"
    finally:
        r.close()


def _fixed_lprnet(path, alphabet: str, text: str, t_steps: int = 24):
    """A real ONNX model in LPRNet's (N, C, T) layout, blank last, whose logits spell `text`."""
    from onnx import TensorProto, helper, numpy_helper, save

    c = len(alphabet) + 1
    logits = np.full((1, c, t_steps), -4.0, np.float32)
    seq = []
    for ch in text:
        seq += [alphabet.index(ch), alphabet.index(ch), c - 1]  # repeats and blanks, as CTC emits
    seq += [c - 1] * (t_steps - len(seq))
    logits[0, seq, np.arange(t_steps)] = 4.0
    nodes = [
        helper.make_node("GlobalAveragePool", ["data"], ["p"]),
        helper.make_node("ReduceMean", ["p"], ["m"], axes=[1, 3], keepdims=0),  # (N, 1)
        helper.make_node("Unsqueeze", ["m", "ax"], ["u"]),  # (N, 1, 1)
        helper.make_node("Mul", ["u", "zero"], ["z"]),
        helper.make_node("Add", ["z", "logits"], ["out"]),
    ]
    g = helper.make_graph(
        nodes,
        "fixed_lprnet",
        [helper.make_tensor_value_info("data", TensorProto.FLOAT, ["N", 3, 24, 94])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["N", c, t_steps])],
        [
            numpy_helper.from_array(np.array([2], np.int64), "ax"),
            numpy_helper.from_array(np.zeros(1, np.float32), "zero"),
            numpy_helper.from_array(logits, "logits"),
        ],
    )
    save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    return path


def test_lprnet_reader_and_user_plate_detector(tmp_path) -> None:
    """reader.kind lprnet (CTC over the province alphabet, blank last, (N, C, T) output) and
    finder.mode detector with a user Detector class (here: one that knows the plate box)."""
    from nano_vision_ros.core.recognition.plate_rules import LPR_ALPHABET

    model = _fixed_lprnet(tmp_path / "lpr.onnx", LPR_ALPHABET, "皖A1B2C3")
    _text, _, img, box = dataset(1, seed=9)[0]
    cfg = PlatesConfig(
        finder={
            "mode": "detector",
            "pipeline": "plates_synth:KnownBoxDetector",
            "pipeline_options": f"{{box: [{', '.join(f'{v:.1f}' for v in box)}]}}",
        },
        reader={"kind": "lprnet", "model": str(model), "device": "cpu"},
    )
    r = PlateReader(cfg)
    try:
        d = r.process(img)
        assert [d.label_of(i) for i in range(len(d))] == ["皖A1B2C3"]
        assert np.allclose(d.boxes[0], box, atol=0.5)
        assert d.attributes[0]["plate_type"] == "ordinary" and d.scores[0] > 0.9
    finally:
        r.close()
    with pytest.raises(Exception, match="module:Class"):
        PlateReader(PlatesConfig(finder={"mode": "detector", "pipeline": "no_colon"}))


def test_synthetic_plates_on_a_real_car_photo(reader: PlateReader, samples) -> None:
    """SYNTHETIC plates pasted over the (unreadable) plate of a real, motion-blurred car photo:
    the text detector must find them among real clutter, and report nothing on the bare photo."""
    import random

    import cv2
    from plates_synth import random_text

    car = cv2.imread(str(samples / "licenseplate_motion.jpg"))
    assert reader.find_and_read(car) == []
    rng = random.Random(2)
    ok, n = 0, 12
    for i in range(n):
        colour = ("blue", "yellow", "green")[i % 3]
        text = random_text(rng, colour == "green")
        plate = render_plate(text, colour, height=70)
        h = int(plate.shape[0] * 150 / plate.shape[1])
        img = car.copy()
        img[238 : 238 + h, 220:370] = cv2.resize(plate, (150, h), interpolation=cv2.INTER_AREA)
        got = [r.text for r in reader.find_and_read(img)]
        ok += got == [text]
    assert ok >= n - 1, f"{ok}/{n}"


def test_plate_detector_from_a_task_profile(tmp_path, samples) -> None:
    """finder.task loads a detector task profile (model + decoder through core.detection) as the
    plate finder; here the shipped NanoDet profile stands in for a user's plate model: its boxes
    are read, and nothing plate-like in them means no plates (not an error)."""
    import cv2

    r = PlateReader(PlatesConfig(finder={"mode": "detector", "task": "coco_objects"}))
    try:
        assert r.plate_detector is not None and len(r.plate_detector.labels) == 80
        d = r.process(cv2.imread(str(samples / "dog.jpg")))
        assert isinstance(d, Detections) and len(d) == 0
    finally:
        r.close()
    with pytest.raises(Exception, match="not found"):
        PlateReader(PlatesConfig(finder={"mode": "detector", "task": str(tmp_path / "no_such_task.yaml")}))


def test_plate_voter_per_character_over_a_pass() -> None:
    """Each reading of the pass has one character wrong, each in another place: the whole-plate
    majority has no winner, the per-character vote recovers the plate; the best crop is kept."""
    from nano_vision_ros.core.recognition.plates import PlateVoter

    v = PlateVoter(10)
    reads = ["京A1Z345", "京A12B45", "京A12345", "京H12345", "京A12S45", "沪A12345"]
    for i, t in enumerate(reads):
        text, conf, n = v.add(7, t, 0.9, crop=f"crop{i}")
    assert (text, n) == ("京A12345", 6) and 0.4 < conf < 0.9
    assert v.best_crop(7) == "crop2"  # the one reading that was the voted plate
    w = PlateVoter(10)
    assert w.add(1, "京A12345", 0.9)[0] == "京A12345" and w.add(1, "京A1234", 0.95)[0] == "京A12345"  # length vote
    v.forget([7])
    assert v.best_crop(7) is None
