"""Face recognition core: detectors, alignment, dlib embeddings, gallery, enrollment gates, CLI."""

from __future__ import annotations

import argparse
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from nano_vision_ros.core.errors import ConfigError, RuntimeMissingError
from nano_vision_ros.core.recognition.embedding import ARCFACE_TEMPLATE_112, similarity_transform
from nano_vision_ros.core.recognition.face_detect import CenterFaceDetector, MtcnnDetector
from nano_vision_ros.core.recognition.faces import EnrollmentRefused, FaceRecognizer, FacesConfig
from nano_vision_ros.core.recognition.faces_cli import load_faces_config
from nano_vision_ros.core.recognition.gallery import Gallery
from nano_vision_ros.core.recognition.tracker import TrackVoter, make_tracker

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def astronaut(samples: Path) -> np.ndarray:
    return cv2.imread(str(samples / "astronaut.png"))


@pytest.fixture(scope="module")
def recognizer(tmp_path_factory: pytest.TempPathFactory) -> FaceRecognizer:
    db = tmp_path_factory.mktemp("faces") / "gallery.db"
    rec = FaceRecognizer(FacesConfig(gallery=str(db), detector={"kind": "mtcnn", "min_face_size": 20}))
    yield rec
    rec.close()


def transforms(img: np.ndarray) -> dict[str, np.ndarray]:
    h, w = img.shape[:2]
    return {
        "flip": cv2.flip(img, 1),
        "scale_half": cv2.resize(img, (w // 2, h // 2), interpolation=cv2.INTER_AREA),
        "scale_up": cv2.resize(img, (w * 3 // 2, h * 3 // 2)),
        "brighter": cv2.convertScaleAbs(img, alpha=1.0, beta=40),
        "darker": cv2.convertScaleAbs(img, alpha=0.6, beta=0),
        "crop": img[30:300, 100:400].copy(),
        "rotate_8deg": cv2.warpAffine(img, cv2.getRotationMatrix2D((w / 2, h / 2), 8, 1.0), (w, h)),
    }


def test_detectors_find_the_sample_faces(samples: Path, astronaut: np.ndarray) -> None:
    for det in (MtcnnDetector(min_face_size=20), CenterFaceDetector(input_width=0)):
        f = det.detect(astronaut)
        assert len(f) == 1, type(det).__name__
        x1, y1, x2, y2 = f.boxes[0]
        assert 150 < (x1 + x2) / 2 < 300 and 60 < (y1 + y2) / 2 < 180  # her face, upper middle
        lm = f.landmarks[0]
        assert lm[0, 0] < lm[1, 0] and lm[2, 1] > lm[0, 1] and lm[3, 1] > lm[2, 1]  # eyes, nose, mouth order
        assert len(det.detect(cv2.imread(str(samples / "messi5.jpg")))) == 1
        det.close()


def test_similarity_transform_puts_landmarks_on_the_template() -> None:
    rng = np.random.default_rng(1)
    ang, s, t = 0.3, 2.5, np.array([40.0, -7.0])
    r = np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]])
    src = (ARCFACE_TEMPLATE_112 - t) @ np.linalg.inv(s * r).T  # points that map exactly onto the template
    m = similarity_transform(src + rng.normal(0, 1e-4, src.shape), ARCFACE_TEMPLATE_112)
    mapped = np.c_[src, np.ones(5)] @ m.T
    assert np.abs(mapped - ARCFACE_TEMPLATE_112).max() < 0.01


def test_enroll_then_recognise_transformed_copies(recognizer: FaceRecognizer, astronaut: np.ndarray) -> None:
    res = recognizer.enroll("astronaut", [("astronaut.png", astronaut)])
    assert res.added == 1 and res.total >= 1
    for name, img in transforms(astronaut).items():
        faces = recognizer.detect(img)
        assert len(faces) == 1, name
        ((ident, _sim, dist),) = recognizer.identify(img, faces)
        assert ident == "astronaut", f"{name}: distance {dist:.3f}"
        assert dist < recognizer.config.match.threshold


def test_strangers_are_unknown(recognizer: FaceRecognizer, samples: Path, astronaut: np.ndarray) -> None:
    if "astronaut" not in recognizer.gallery.names():
        recognizer.enroll("astronaut", [("astronaut.png", astronaut)])
    seen = 0
    for f in ("messi5.jpg", "basketball1.png"):
        img = cv2.imread(str(samples / f))
        dets = recognizer.process(img)
        assert len(dets) >= 1, f
        seen += len(dets)
        assert all(dets.label_of(i) == "unknown" for i in range(len(dets))), (f, dets.attributes)
    assert seen >= 2


def test_enrollment_refusals(recognizer: FaceRecognizer, samples: Path, astronaut: np.ndarray) -> None:
    before = recognizer.gallery.list()
    with pytest.raises(EnrollmentRefused, match="no face"):
        recognizer.enroll("nobody", [("dog.jpg", cv2.imread(str(samples / "dog.jpg")))])
    two = np.hstack([astronaut, cv2.flip(astronaut, 1)])
    with pytest.raises(EnrollmentRefused, match="2 faces"):
        recognizer.enroll("twins", [("two.png", two)])
    small = cv2.resize(astronaut, (160, 160), interpolation=cv2.INTER_AREA)
    with pytest.raises(EnrollmentRefused, match="too small"):
        recognizer.enroll("tiny", [("small.png", small)])
    blurred = cv2.GaussianBlur(astronaut, (0, 0), 6)
    with pytest.raises(EnrollmentRefused, match="blurred"):
        recognizer.enroll("blurry", [("blurred.png", blurred)])
    # all-or-nothing: a good image followed by a bad one stores nothing
    with pytest.raises(EnrollmentRefused):
        recognizer.enroll("half", [("good", astronaut), ("bad", two)])
    with pytest.raises(ValueError, match="reserved"):
        recognizer.enroll("unknown", [("a", astronaut)])
    assert [i.as_dict() for i in recognizer.gallery.list()] == [i.as_dict() for i in before]


def test_tracks_vote(recognizer: FaceRecognizer, astronaut: np.ndarray) -> None:
    if "astronaut" not in recognizer.gallery.names():
        recognizer.enroll("astronaut", [("astronaut.png", astronaut)])
    recognizer.reset_tracks()
    ids = set()
    for _ in range(6):
        d = recognizer.process(astronaut)
        assert len(d) == 1 and d.label_of(0) == "astronaut"
        ids.add(int(d.track_ids[0]))
    assert len(ids) == 1  # one track, the same id every frame
    assert d.attributes[0]["votes"] >= 2
    v = TrackVoter(window=5)
    for lbl in ["a", "a", None, "a", "b"]:
        v.add(1, lbl, 0.9)
    assert v.result(1)[0] == "a"
    t = make_tracker()
    a = t.update(np.array([[0, 0, 10, 10], [50, 50, 60, 60]], np.float32))
    b = t.update(np.array([[51, 50, 61, 60], [1, 0, 11, 10]], np.float32))
    assert list(b) == [a[1], a[0]]


def test_gallery_delete_leaves_no_trace(tmp_path: Path, astronaut: np.ndarray, recognizer: FaceRecognizer) -> None:
    db = tmp_path / "g.db"
    g = Gallery(db)
    assert stat.S_IMODE(os.stat(db).st_mode) == 0o600
    faces = recognizer.detect(astronaut)
    vec = recognizer.embedder.embed(astronaut, faces.boxes, faces.landmarks)
    thumb = cv2.imencode(".jpg", astronaut[60:180, 180:270])[1].tobytes()
    name = "Zelda-Secret-Person-7f3a"
    g.add(name, np.vstack([vec, vec * 0.99]), recognizer.model_name, thumb)
    g.add("keeper", vec * 1.01, recognizer.model_name)
    data = db.read_bytes()
    assert name.encode() in data and vec.astype("<f4").tobytes()[:64] in data and thumb[100:164] in data
    assert g.delete(name)
    assert not g.delete(name)
    g.close()
    data = db.read_bytes()
    assert name.encode() not in data
    assert vec.astype("<f4").tobytes()[:64] not in data  # the deleted vectors' bytes are gone
    assert (vec * 0.99).astype("<f4").tobytes()[:64] not in data
    assert thumb[100:164] not in data  # and the thumbnail's
    assert stat.S_IMODE(os.stat(db).st_mode) == 0o600
    assert not any(p.name.startswith("g.db-") for p in tmp_path.iterdir())  # no journal left behind
    g = Gallery(db)
    assert g.names() == ["keeper"]
    g.close()


def test_dlib_missing_is_a_clear_error() -> None:
    code = (
        "import sys; sys.modules['dlib'] = None\n"
        "import nano_vision_ros.core.recognition.faces as f\n"  # importing the package must not need dlib
        "from nano_vision_ros.core.recognition.embedding import DlibEmbedder\n"
        "DlibEmbedder()\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode != 0
    assert "RuntimeMissingError" in r.stderr and "pip install dlib-bin face_recognition_models" in r.stderr
    assert RuntimeMissingError.__name__ == "RuntimeMissingError"


def test_dlib_net_in_onnx_gives_dlibs_vectors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, samples: Path, astronaut: np.ndarray
) -> None:
    """The converted network must give dlib's own vectors (galleries stay valid), batched too."""
    from nano_vision_ros.core.recognition.embedding import DlibEmbedder

    monkeypatch.setenv("NANO_VISION_ENGINE_CACHE", str(tmp_path / "cache"))
    fast, own = DlibEmbedder(net="onnx", device="cpu"), DlibEmbedder(net="dlib")
    assert (fast.net, own.net) == ("onnx", "dlib")
    assert len(list((tmp_path / "cache").glob("dlib_face_recognition_resnet_model_v1.*.onnx"))) == 1
    det = MtcnnDetector(min_face_size=20)
    messi = cv2.imread(str(samples / "messi5.jpg"))
    two = np.hstack([astronaut, cv2.flip(astronaut, 1)])  # two faces: one batch of two chips
    for img in (astronaut, messi, two):
        f = det.detect(img)
        a, b = fast.embed(img, f.boxes, f.landmarks), own.embed(img, f.boxes, f.landmarks)
        assert a.shape == b.shape == (len(f), 128) and len(f) >= 1
        assert float(np.abs(a - b).max()) < 1e-4
    assert float(np.linalg.norm(a[0] - a[1])) < 0.3  # the flipped copy is the same person
    fast.close()
    own.close()
    det.close()


def test_dlib_conversion_refuses_other_files(tmp_path: Path) -> None:
    from nano_vision_ros.core.errors import ModelError
    from nano_vision_ros.core.recognition.dlib_onnx import convert

    bad = tmp_path / "x.dat"
    bad.write_bytes(b"\x01\x01not a dlib net" * 100)
    with pytest.raises(ModelError, match="not a dlib face recognition network"):
        convert(bad, tmp_path / "x.onnx")
    assert not (tmp_path / "x.onnx").exists()


def _cli(*args: str) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).parent / "nano-vision"
    return subprocess.run(
        [str(exe), "faces", *args], capture_output=True, text=True, timeout=120, cwd=REPO, check=False
    )


def test_cli_enroll_list_export_import_delete(tmp_path: Path, samples: Path) -> None:
    db = str(tmp_path / "cli.db")
    r = _cli("--gallery", db, "enroll", "--name", "Astro", str(samples / "astronaut.png"))
    assert r.returncode == 0, r.stderr
    assert "enrolled Astro" in r.stdout
    r = _cli("--gallery", db, "enroll", "--name", "Nobody", str(samples / "dog.jpg"))
    assert r.returncode == 1 and "no face found" in r.stderr
    r = _cli("--gallery", db, "list", "--json")
    items = json.loads(r.stdout)
    assert [i["name"] for i in items] == ["Astro"] and items[0]["embeddings"] == 1 and items[0]["thumbnail"]
    exp = tmp_path / "faces.json"
    assert _cli("--gallery", db, "export", str(exp)).returncode == 0
    assert stat.S_IMODE(os.stat(exp).st_mode) == 0o600
    db2 = str(tmp_path / "other.db")
    r = _cli("--gallery", db2, "import", str(exp))
    assert r.returncode == 0, r.stderr
    assert json.loads(_cli("--gallery", db2, "list", "--json").stdout)[0]["name"] == "Astro"
    assert _cli("--gallery", db, "delete", "Astro").returncode == 0
    assert _cli("--gallery", db, "delete", "Astro").returncode == 1
    assert json.loads(_cli("--gallery", db, "list", "--json").stdout) == []
    assert b"Astro" not in Path(db).read_bytes()


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("- face_node\n", "not a ROS 2 parameters file"),
        ("face_node:\n  ros__parameters: 5\n", "not a ROS 2 parameters file"),
        ("face_node:\n  ros__parameters:\n    faces: 3\n", "faces: expected a mapping"),
    ],
)
def test_cli_params_file_of_the_wrong_shape_is_a_clear_error(tmp_path: Path, text: str, problem: str) -> None:
    """A params file that is YAML but not a node's parameters: a ConfigError naming it (the CLI prints
    it as one line, exit 2), not an AttributeError traceback."""
    cfg = tmp_path / "face.yaml"
    cfg.write_text(text)
    args = argparse.Namespace(config=str(cfg), gallery=None, detector=None, embedder=None, embedding_model=None)
    with pytest.raises(ConfigError, match=problem):
        load_faces_config(args)
    cfg.write_text("")  # an empty file is no parameters: the defaults
    assert load_faces_config(args) == FacesConfig()


def _tiny_embedding_model(path: Path) -> Path:
    """A real ONNX model (global average colour -> 3-d vector): exercises the ONNX embedder's
    alignment, normalisation, batching and matching without a trained network."""
    from onnx import TensorProto, helper, save

    g = helper.make_graph(
        [
            helper.make_node("GlobalAveragePool", ["data"], ["pooled"]),
            helper.make_node("Flatten", ["pooled"], ["embedding"]),
        ],
        "tiny_embedder",
        [helper.make_tensor_value_info("data", TensorProto.FLOAT, ["N", 3, 112, 112])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["N", 3])],
    )
    save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    return path


def test_onnx_embedder_path(tmp_path: Path, astronaut: np.ndarray) -> None:
    model = _tiny_embedding_model(tmp_path / "tiny.onnx")
    cfg = FacesConfig(
        gallery=str(tmp_path / "onnx.db"),
        detector={"kind": "centerface"},
        embedding={"kind": "onnx", "model": str(model), "input_size": 112, "device": "cpu"},
        match={"metric": "cosine", "threshold": 0.99},
    )
    rec = FaceRecognizer(cfg)
    try:
        assert rec.model_name == "onnx:tiny.onnx"
        rec.enroll("astro", [("a", astronaut)])
        two = np.hstack([astronaut, cv2.flip(astronaut, 1)])
        faces = rec.detect(two)
        vecs = rec.embedder.embed(two, faces.boxes, faces.landmarks)  # one batched call
        assert vecs.shape == (2, 3) and np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
        assert [r[0] for r in rec.identify(two, faces)] == ["astro", "astro"]
        # vectors of another model never match these
        assert rec.gallery.match(np.ones((1, 3), np.float32), "dlib_resnet_v1")[0].name is None
    finally:
        rec.close()
