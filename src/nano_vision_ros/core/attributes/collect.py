"""Collecting crops of tracked people to sort into class folders (``nano-vision attributes collect``).

At most one crop set per track every `every` seconds, and none that looks like the track's last
saved one (mean absolute difference of 16x16 grey thumbnails below `min_change`), so ten minutes
of a site give a few hundred distinct crops, not thousands of near-copies. File names carry the
camera, the stamp and the track (``cam0_000123.4_t17_torso.jpg``): `train` splits by track from them.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from nano_vision_ros.core.attributes.regions import REGIONS, crop
from nano_vision_ros.core.detection.types import Detections

log = logging.getLogger(__name__)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def _thumb(img: np.ndarray) -> np.ndarray:
    g = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY) if img.ndim == 3 else img
    return cv2.resize(g, (16, 16), interpolation=cv2.INTER_AREA).astype(np.float32)


@dataclass
class CollectConfig:
    regions: tuple[str, ...] = ("person", "head", "torso")
    person_labels: tuple[str, ...] = ("person",)
    every: float = 3.0  # s between two crops of one track
    min_score: float = 0.5
    min_height: int = 48  # person box height in pixels
    min_change: float = 6.0  # grey levels (0..255) of mean thumbnail change to keep a crop
    max_crops: int = 5000  # per run (disk bound)


@dataclass
class CropCollector:
    """Feeds of (frame, tracked detections, stamp) -> JPEG crops under `out` / region /."""

    out: Path
    camera: str = "cam0"
    config: CollectConfig = field(default_factory=CollectConfig)
    saved: int = 0
    skipped_similar: int = 0
    _last: dict[int, tuple[float, np.ndarray]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        for r in self.config.regions:
            if r not in REGIONS:
                raise ValueError(f"unknown region {r!r}; known: {', '.join(REGIONS)}")
            (self.out / r).mkdir(parents=True, exist_ok=True)

    def add(self, frame: np.ndarray, dets: Detections, stamp: float) -> int:
        """Save the crops due in this frame; returns how many files were written."""
        c = self.config
        n = 0
        for i in range(len(dets)):
            tid = int(dets.track_ids[i])
            if tid < 0 or dets.label_of(i) not in c.person_labels or dets.scores[i] < c.min_score:
                continue
            box = dets.boxes[i]
            if box[3] - box[1] < c.min_height or self.saved >= c.max_crops:
                continue
            last = self._last.get(tid)
            if last is not None and stamp - last[0] < c.every:
                continue
            person = crop(frame, box, "person", pad=0.0)
            if person is None:
                continue
            th = _thumb(person)
            if last is not None and float(np.abs(th - last[1]).mean()) < c.min_change:
                self.skipped_similar += 1
                self._last[tid] = (stamp, last[1])
                continue
            self._last[tid] = (stamp, th)
            for r in c.regions:
                img = person if r == "person" else crop(frame, box, r)
                if img is None:
                    continue
                name = f"{self.camera}_{stamp:09.1f}_t{tid}_{r}.jpg"
                cv2.imwrite(str(self.out / r / name), img, [cv2.IMWRITE_JPEG_QUALITY, 92])
                n += 1
            self.saved += 1
        return n


def image_files(folder: Path) -> list[Path]:
    return sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def contact_sheet(
    files: list[Path], out: Path, cell: tuple[int, int] = (72, 144), columns: int = 16, label: bool = True
) -> Path:
    """One image of many crops (each fitted into `cell`, numbered, file stem below) to sort quickly."""
    cw, ch = cell
    rows = max(1, math.ceil(len(files) / columns))
    text_h = 14 if label else 0
    sheet = np.full((rows * (ch + text_h), columns * cw, 3), 40, np.uint8)
    for k, f in enumerate(files):
        img = cv2.imread(str(f))
        if img is None:
            continue
        s = min(cw / img.shape[1], ch / img.shape[0])
        im = cv2.resize(
            img, (max(1, int(img.shape[1] * s)), max(1, int(img.shape[0] * s))), interpolation=cv2.INTER_AREA
        )
        r, col = divmod(k, columns)
        y0, x0 = r * (ch + text_h), col * cw
        sheet[y0 : y0 + im.shape[0], x0 : x0 + im.shape[1]] = im
        if label:
            cv2.putText(
                sheet, str(k), (x0 + 2, y0 + ch + 11), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA
            )
    out = Path(out)
    cv2.imwrite(str(out), sheet)
    return out


def collect_video(
    video: str,
    out: Path,
    *,
    camera: str = "cam0",
    task: str = "coco_objects",
    minutes: float = 0.0,
    config: CollectConfig | None = None,
    progress=None,
) -> CropCollector:
    """Run the project's detector + tracker on a video file and collect crops (offline `collect`)."""
    from nano_vision_ros.core.detection.profiles import build_detector, load_profile
    from nano_vision_ros.core.errors import ConfigError
    from nano_vision_ros.core.paths import resolve
    from nano_vision_ros.core.tracking import ByteTracker

    cap = cv2.VideoCapture(str(resolve(video)))
    if not cap.isOpened():
        raise ConfigError(f"cannot open video {video}", "video")
    fps = cap.get(cv2.CAP_PROP_FPS) or 10.0
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    limit = int(minutes * 60 * fps) if minutes > 0 else total
    det = build_detector(load_profile(task))
    tracker = ByteTracker()
    col = CropCollector(Path(out), camera, config or CollectConfig())
    bar = progress(total=limit or None, unit="frame") if progress else None
    frame_no = 0
    try:
        while not limit or frame_no < limit:
            ok, frame = cap.read()
            if not ok:
                break
            dets = tracker.update(det.detect(frame))
            col.add(frame, dets, frame_no / fps)
            frame_no += 1
            if bar is not None:
                bar.update(1)
    finally:
        cap.release()
        det.close()
        if bar is not None:
            bar.close()
    return col
