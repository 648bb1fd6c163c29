#!/usr/bin/env python3
"""Recognition throughput: faces (720p, 1 and 5 faces, 1,000-identity gallery), plates per
vehicle (SYNTHETIC plates), two-stage mask pipeline. Prints one line per figure.

    .venv/bin/python bench/recognition.py [--frames 30] [--samples ../shared/samples] [--refs main~3,...]

``--refs`` runs the face figures of this project at those git refs too (their src/ and models/
extracted with git archive, run in a child process), in the same run, for a before/after table.

Seed system (Jetson Nano): faces MTCNN + FaceNet 3 FPS at 1080p; plates LPDNet + LPRNet 9 FPS.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "test"))  # plates_synth


def frame_with_faces(astronaut: np.ndarray, n: int, size=(1280, 720)) -> np.ndarray:
    """A 720p frame with `n` copies of the astronaut's head (face ~90-110 px), spread out."""
    w, h = size
    frame = np.full((h, w, 3), 90, np.uint8)
    cv2.rectangle(frame, (0, h // 2), (w, h), (60, 80, 70), -1)
    head = astronaut[20:260, 120:330]
    for i in range(n):
        s = 0.9 + 0.1 * (i % 3)
        hd = cv2.resize(cv2.flip(head, 1) if i % 2 else head, None, fx=s, fy=s)
        x = 40 + i * (w - 80 - hd.shape[1]) // max(1, n - 1) if n > 1 else (w - hd.shape[1]) // 2
        y = 120 + (i % 2) * 200
        frame[y : y + hd.shape[0], x : x + hd.shape[1]] = hd
    return frame


def timed(fn, frames: int) -> float:
    fn()  # warm
    t0 = time.perf_counter()
    for _ in range(frames):
        fn()
    return frames / (time.perf_counter() - t0)


POLICIES = {  # embedding policies: every frame; every 5th (the old default); the default (new tracks
    # first, settled tracks every 30th, at most 2 embeddings a frame)
    "every": ("every frame", {"reembed_interval": 1, "stable_interval": 1, "max_embeds_per_frame": 0}),
    "every5": ("every 5th", {"reembed_interval": 5, "stable_interval": 5, "max_embeds_per_frame": 0}),
    "default": ("default", {}),
}


def bench_faces(
    samples: Path,
    frames: int,
    label: str = "",
    detectors: tuple[str, ...] = ("mtcnn", "centerface"),
    policies: tuple[str, ...] = tuple(POLICIES),
) -> None:
    from nano_vision_ros.core.recognition.faces import FaceRecognizer, FacesConfig
    from nano_vision_ros.core.recognition.gallery import Gallery

    astronaut = cv2.imread(str(samples / "astronaut.png"))
    with tempfile.TemporaryDirectory() as tmp:
        g = Gallery(Path(tmp) / "bench.db")
        rng = np.random.default_rng(0)
        for i in range(1000):  # 1,000 identities x 3 vectors, dlib-like scale (norm ~1.45)
            v = rng.normal(0, 1, (3, 128)).astype(np.float32)
            g.add(f"person{i:04d}", 1.45 * v / np.linalg.norm(v, axis=1, keepdims=True), "dlib_resnet_v1")
        for det in detectors:
            for every, match in (POLICIES[p] for p in policies):
                cfg = FacesConfig(
                    gallery=str(Path(tmp) / "bench.db"), detector={"kind": det, "min_face_size": 40}, match=match
                )
                rec = FaceRecognizer(cfg, gallery=g)
                if "astronaut" not in g.names():
                    rec.enroll("astronaut", [("astronaut.png", astronaut)])
                rec.warmup()
                for n in (1, 5):
                    frame = frame_with_faces(astronaut, n)
                    rec.reset_tracks()
                    found = rec.process(frame)
                    named = sum(found.label_of(i) == "astronaut" for i in range(len(found)))
                    # first: the `frames` frames after the faces arrive (new tracks, embedded most);
                    # steady: the `frames` frames after those (tracks settled)
                    fps = timed(lambda rec=rec, frame=frame: rec.process(frame), frames)
                    steady = timed(lambda rec=rec, frame=frame: rec.process(frame), frames)
                    print(
                        f"faces{label} detector={det:<10} faces={n} (found {len(found)}, named {named}) "
                        f"gallery=1000+1 ids embed {every}: {fps:6.2f} FPS first {frames} frames, "
                        f"{steady:6.2f} FPS steady, at 1280x720"
                    )
                rec.detector.close()
                rec.embedder.close()
            # where a frame's time goes: the detector alone, the embedding alone (5 faces)
            rec = FaceRecognizer(cfg, gallery=g)
            frame = frame_with_faces(astronaut, 5)
            faces = rec.detect(frame)
            ms_det = 1000.0 / timed(lambda rec=rec, frame=frame: rec.detect(frame), frames)
            one = faces.select(np.arange(1))
            emb = rec.embedder
            ms_one = 1000.0 / timed(lambda e=emb, f=frame, o=one: e.embed(f, o.boxes, o.landmarks), max(3, frames // 3))
            ms_all = 1000.0 / timed(
                lambda e=emb, f=frame, o=faces: e.embed(f, o.boxes, o.landmarks), max(3, frames // 6)
            )
            print(
                f"faces{label} detector={det:<10} alone {ms_det:6.1f} ms a 1280x720 frame; embedding "
                f"{getattr(rec.embedder, 'net', 'dlib')}: 1 face {ms_one:6.1f} ms, 5 faces {ms_all:6.1f} ms"
            )
            rec.detector.close()
            rec.embedder.close()
        mat_q = rng.normal(0, 1, (5, 128)).astype(np.float32)
        t = timed(lambda: g.match(mat_q, "dlib_resnet_v1", "l2", 0.6), 200)
        print(f"faces{label} gallery match of 5 faces against 3,003 vectors: {1000.0 / t:.3f} ms")
        g.close()


def bench_plates(frames: int) -> None:
    from plates_synth import dataset

    from nano_vision_ros.core.detection.types import Detections
    from nano_vision_ros.core.recognition.plates import PlateReader, PlatesConfig

    data = dataset(24, seed=21)
    canvas = np.full((720, 1280, 3), 100, np.uint8)
    scenes = []
    for text, _, img, _ in data:
        f = canvas.copy()
        f[300 : 300 + img.shape[0], 500 : 500 + img.shape[1]] = img
        veh = Detections(
            np.array([[500, 300, 500 + img.shape[1], 300 + img.shape[0]]], np.float32),
            np.array([0.9]),
            np.array([0]),
            ["car"],
        )
        scenes.append((text, f, veh))
    # the default (corner detector + text boxes where it reads nothing valid) and text boxes only (the old path)
    for name, finder in (("corners+text (default)", {}), ("text boxes only", {"corner_model": ""})):
        r = PlateReader(PlatesConfig(finder=finder))
        r.warmup()
        # per-scene reading (process() would vote across scenes at one spot)
        ok = sum(len(rs) == 1 and rs[0].text == t for t, f, v in scenes for rs in [r.find_and_read(f, v)])
        i = [0]

        def one(r=r, i=i):
            _, f, v = scenes[i[0] % len(scenes)]
            i[0] += 1
            r.process(f, v)

        fps = timed(one, max(frames, len(scenes)))
        print(
            f"plates {name} in the vehicle box + PP-OCRv4 rec, 1 vehicle per 1280x720 frame: {fps:6.2f} vehicles/s "
            f"(SYNTHETIC plates, {ok}/{len(scenes)} read exactly)"
        )
    crops = [cv2.resize(img, (160, 48)) for _, _, img, _ in data[:8]]
    fps = timed(lambda: r.recognizer.read(crops[:1]), frames)
    print(f"plates PP-OCRv4 recognition alone, one plate crop: {fps:6.1f} reads/s")
    r.close()


def bench_mask(samples: Path, frames: int) -> None:
    import yaml

    from nano_vision_ros.core.recognition.mask import TwoStageMaskDetector

    opts = yaml.safe_load((REPO / "config/tasks/mask.yaml").read_text())["options"]
    m = TwoStageMaskDetector(**opts)
    astronaut = cv2.imread(str(samples / "astronaut.png"))
    for n in (1, 5):
        frame = frame_with_faces(astronaut, n)
        d = m.detect(frame)
        fps = timed(lambda frame=frame: m.detect(frame), frames)
        faces = m.faces.detect(frame)
        crops = [frame[int(b[1]) : int(b[3]), int(b[0]) : int(b[2])] for b in faces.boxes]
        batched = timed(lambda crops=crops: m.classify(crops), frames)
        single = timed(lambda crops=crops: [m.classify([c]) for c in crops], frames)
        print(
            f"mask   centerface+mobilenetv2 faces={n} (found {len(d)}: {sorted({d.label_of(i) for i in range(len(d))})}): "
            f"{fps:6.2f} FPS at 1280x720; classifier batched {batched:6.1f}/s vs per-face {single:6.1f}/s"
        )
    m.close()


def run_ref(ref: str, frames: int, samples: Path, detector: str, policies: str) -> None:
    """The face figures of this project at git `ref` (its src/ and models/), in a child process."""
    with tempfile.TemporaryDirectory(prefix="recogbench-") as td:
        arch = subprocess.run(
            ["git", "-C", str(REPO), "archive", ref, "src", "models"], check=True, capture_output=True
        )
        subprocess.run(["tar", "-x", "-C", td], input=arch.stdout, check=True)
        env = dict(os.environ, PYTHONPATH=str(Path(td) / "src"))
        cmd = [sys.executable, __file__, "--only", "faces", "--frames", str(frames), "--samples", str(samples)]
        cmd += ["--detectors", detector, "--policies", policies]
        subprocess.run([*cmd, "--label", ref], env=env, check=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=30)
    ap.add_argument("--samples", default=str(REPO.parent / "shared" / "samples"))
    ap.add_argument("--only", choices=["faces", "plates", "mask"])
    ap.add_argument("--refs", default="", help="git refs, comma-separated: face figures of those too")
    ap.add_argument("--detectors", default="mtcnn,centerface", help="face detectors, comma-separated")
    ap.add_argument("--policies", default=",".join(POLICIES), help=f"embedding policies of {', '.join(POLICIES)}")
    ap.add_argument("--label", default="", help=argparse.SUPPRESS)  # set for a ref's child run
    a = ap.parse_args()
    samples = Path(a.samples)
    if not a.label:
        print(
            f"# {platform.machine()} {os.cpu_count()} CPU(s), python {platform.python_version()}, "
            f"onnxruntime CPU, opencv {cv2.__version__}, load {os.getloadavg()[0]:.1f}"
        )
    if a.label:
        import nano_vision_ros

        print(f"# @{a.label}: nano_vision_ros from {Path(nano_vision_ros.__file__).parent}")
    if a.only in (None, "faces"):
        policies = tuple(p for p in a.policies.split(",") if p)
        for det in (d for d in a.detectors.split(",") if d):  # refs and this tree in turn, per detector
            for ref in (r for r in a.refs.split(",") if r):
                run_ref(ref, a.frames, samples, det, a.policies)
            bench_faces(samples, a.frames, f"@{a.label}" if a.label else "", (det,), policies)
    if a.only in (None, "plates"):
        bench_plates(a.frames)
    if a.only in (None, "mask"):
        bench_mask(samples, a.frames)
    return 0


if __name__ == "__main__":
    sys.exit(main())
