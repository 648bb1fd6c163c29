"""One plate-reading system over bench/plates.py's frames, in its own process, pinned to one core.

    python bench/plate_systems.py SYSTEM MANIFEST.json OUT.json

SYSTEM: ours (finder.mode frame), ours_vehicles (finder.mode vehicles, the scene's vehicle box as a
COCO detector would give it), hyperlpr2, agentclpr (these two from the bench venv made by
bench/platebench_venv.sh). ``ours*`` import nano_vision_ros from PYTHONPATH: bench/plates.py
points it at the tree under test (this checkout, or a git ref extracted for the baseline).
Writes per frame: readings [{text, box, score}], the pass vote (ours) and the milliseconds.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

try:  # one core: ONNX Runtime (ours: threads = usable cores), OpenCV, BLAS all see one CPU
    os.sched_setaffinity(0, {max(os.sched_getaffinity(0))})
except (AttributeError, OSError):
    pass
os.environ.setdefault("OMP_NUM_THREADS", "1")

import cv2
import numpy as np

cv2.setNumThreads(1)


def _one_thread_ort() -> None:
    """Peers create their own onnxruntime sessions: force one intra-op thread on them."""
    import onnxruntime as ort

    real = ort.InferenceSession

    def session(path, sess_options=None, *a, **kw):
        so = sess_options or ort.SessionOptions()
        so.intra_op_num_threads, so.inter_op_num_threads = 1, 1
        return real(path, so, *a, **kw)

    ort.InferenceSession = session


class Ours:
    def __init__(self, vehicles: bool, reader: str = "default") -> None:
        """reader: default (the tree's defaults: PP-OCRv4 with the plate-trained CTC model as its
        second reader since that model shipped), ppocr (PP-OCRv4 alone) or crnn (the CTC model alone)."""
        from nano_vision_ros.core.recognition.plates import PlateReader, PlatesConfig, ReaderConfig

        self.vehicles = vehicles
        model = os.environ.get(
            "PLATE_READER_MODEL", str(Path(__file__).resolve().parents[1] / "models" / "plate_reader_crnn.onnx")
        )
        alone = {"second_model": None} if "second_model" in ReaderConfig.model_fields else {}
        reader_config = {
            "default": {},
            "ppocr": alone,
            "crnn": {"kind": "lprnet", "model": model, **alone},
        }[reader]
        self.reader = PlateReader(
            PlatesConfig(finder={"mode": "vehicles" if vehicles else "frame"}, reader=reader_config)
        )
        self.reader.warmup()
        self._group = None

    def _dets(self, frame: dict):
        if not self.vehicles or frame.get("vehicle") is None:
            return None
        from nano_vision_ros.core.detection.types import Detections

        return Detections(
            np.array([frame["vehicle"]], np.float32),
            np.array([0.9], np.float32),
            np.array([0]),
            ["truck"],
            np.array([max(0, frame.get("group", -1)) + 1]),
        )

    def __call__(self, img: np.ndarray, frame: dict) -> tuple[list[dict], str]:
        group = frame.get("group", -1)
        if group < 0:
            rs = self.reader.find_and_read(img, self._dets(frame))
            return [{"text": r.text, "box": [float(v) for v in r.box], "score": float(r.confidence)} for r in rs], ""
        if group != self._group:  # a new pass: a new vehicle, forget the last one's votes
            self._group = group
            from nano_vision_ros.core.recognition.tracker import make_tracker

            self.reader.tracker = make_tracker(0.2, 15)
            self.reader.voter = type(self.reader.voter)(self.reader.config.vote_window)
        d = self.reader.process(img, self._dets(frame))
        out = [
            {
                "text": a.get("frame_text", d.label_of(i)),
                "box": [float(v) for v in d.boxes[i]],
                "score": float(a.get("confidence", d.scores[i])),
            }
            for i, a in enumerate(d.attributes)
        ]
        voted = max(((d.label_of(i), d.scores[i]) for i in range(len(d))), key=lambda t: t[1], default=("", 0))[0]
        return out, voted


class HyperLpr2:
    def __init__(self) -> None:
        import hyperlpr2

        self.fn = hyperlpr2.HyperLPR_plate_recognition

    def __call__(self, img: np.ndarray, frame: dict) -> tuple[list[dict], str]:
        return [{"text": t, "box": [float(v) for v in box], "score": float(c)} for t, c, box in self.fn(img)], ""


class AgentClpr:
    def __init__(self) -> None:
        _one_thread_ort()
        from agentclpr import CLPSystem

        self.sys = CLPSystem()

    def __call__(self, img: np.ndarray, frame: dict) -> tuple[list[dict], str]:
        out = []
        for pts, (text, score) in self.sys(img):
            p = np.array(pts, np.float32)
            out.append({"text": text, "box": [*map(float, p.min(0)), *map(float, p.max(0))], "score": float(score)})
        return out, ""


def main() -> int:
    system, manifest, out_path = sys.argv[1:4]
    with open(manifest, encoding="utf-8") as fh:
        frames = json.load(fh)["frames"]
    make = {
        "ours": lambda: Ours(False),
        "ours_vehicles": lambda: Ours(True),
        "ours_ppocr": lambda: Ours(False, "ppocr"),
        "ours_vehicles_ppocr": lambda: Ours(True, "ppocr"),
        "ours_crnn": lambda: Ours(False, "crnn"),
        "ours_vehicles_crnn": lambda: Ours(True, "crnn"),
        "hyperlpr2": HyperLpr2,
        "agentclpr": AgentClpr,
    }[system]
    run = make()
    results = []
    for f in frames:
        img = cv2.imread(f["file"])
        t0 = time.perf_counter()
        try:
            readings, voted = run(img, f)
            err = ""
        except Exception as exc:  # noqa: BLE001 - a peer crashing on one frame is a miss, not the end of the run
            readings, voted, err = [], "", f"{type(exc).__name__}: {exc}"
        results.append({"readings": readings, "voted": voted, "ms": (time.perf_counter() - t0) * 1000, "error": err})
    with open(out_path, "w", encoding="utf-8") as fh:
        json.dump({"system": system, "results": results}, fh, ensure_ascii=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
