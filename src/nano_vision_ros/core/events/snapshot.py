"""JPEG snapshots of events: a small buffer of recent frames matched by stamp, boxes drawn."""

from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict, deque
from pathlib import Path
from typing import Any, Generic, TypeVar

import cv2
import numpy as np

from nano_vision_ros.core.events.schema import iso

log = logging.getLogger(__name__)
F = TypeVar("F")  # what a frame is kept as: an array, or the message it is decoded from when needed


class FrameBuffer(Generic[F]):
    """The newest `size` frames with their stamps (seconds); `nearest` picks the closest one."""

    def __init__(self, size: int = 8) -> None:
        self._frames: deque[tuple[float, F]] = deque(maxlen=max(1, size))
        self._lock = threading.Lock()

    def put(self, stamp: float, frame: F) -> None:
        with self._lock:
            self._frames.append((stamp, frame))

    def nearest(self, stamp: float, tolerance: float = 1.0) -> tuple[float, F] | None:
        with self._lock:
            if not self._frames:
                return None
            best = min(self._frames, key=lambda f: abs(f[0] - stamp))
        return best if abs(best[0] - stamp) <= tolerance else None

    def __len__(self) -> int:
        return len(self._frames)


class PlateCrops:
    """The newest best plate crop (JPEG) of each plate track, from plate_node's ``plate_crops``:
    a plate or gate event's snapshot is its plate, not the whole frame. Bounded (oldest dropped)."""

    def __init__(self, size: int = 256) -> None:
        self._crops: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self.size = max(1, size)

    def put(self, track: str, stamp: float, jpeg: bytes) -> None:
        self._crops[track] = (stamp, jpeg)
        self._crops.move_to_end(track)
        while len(self._crops) > self.size:
            self._crops.popitem(last=False)

    def get(self, track: str) -> tuple[float, bytes] | None:
        return self._crops.get(track)

    def __len__(self) -> int:
        return len(self._crops)


class SnapshotWriter:
    """Writes `<dir>/<camera>/<event_id>.jpg` with the event's boxes; keeps at most `max_files`."""

    def __init__(
        self, directory: str | os.PathLike[str], camera: str, quality: int = 85, max_files: int = 2000
    ) -> None:
        self.dir = Path(os.path.expanduser(str(directory))) / camera
        self.quality = int(quality)
        self.max_files = max_files
        self.written = 0
        self.failed = 0
        self._files: deque[Path] = deque()

    def write(
        self, event: dict[str, Any], frame: np.ndarray, frame_stamp: float, crop: bool = False
    ) -> dict[str, Any] | None:
        """`crop`: only the first box, padded (a PPE violation's snapshot is the person)."""
        img = frame.copy() if frame.ndim == 3 else cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
        if crop and event.get("boxes"):
            x1, y1, x2, y2 = event["boxes"][0]
            pad = 0.25 * max(x2 - x1, y2 - y1)
            H, W = img.shape[:2]
            cx1, cy1 = max(0, int(x1 - pad)), max(0, int(y1 - pad))
            cx2, cy2 = min(W, int(x2 + pad) + 1), min(H, int(y2 + pad) + 1)
            if cx2 - cx1 >= 8 and cy2 - cy1 >= 8:
                img = img[cy1:cy2, cx1:cx2].copy()
                event = {**event, "boxes": [[v - o for v, o in zip(b, (cx1, cy1, cx1, cy1))] for b in event["boxes"]]}
        h, w = img.shape[:2]
        for box, label in zip(event.get("boxes", []), event.get("labels", [])):
            x1, y1, x2, y2 = (int(round(v)) for v in box)
            cv2.rectangle(img, (x1, y1), (x2, y2), (0, 0, 255), 2)
            cv2.putText(
                img,
                f"{event['type']}:{label}"[:40],
                (x1, max(12, y1 - 4)),
                cv2.FONT_HERSHEY_SIMPLEX,
                0.5,
                (0, 0, 255),
                1,
                cv2.LINE_AA,
            )
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        return self._store(str(event["event_id"]), buf.tobytes() if ok else None, frame_stamp, w, h)

    def write_jpeg(self, event_id: str, jpeg: bytes, stamp: float) -> dict[str, Any] | None:
        """A JPEG made elsewhere (a plate crop) as the event's snapshot, stored as it came (no
        re-encoding); None if it does not decode (the caller falls back to the frame)."""
        img = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_GRAYSCALE) if jpeg else None
        if img is None or img.size == 0:
            log.warning("snapshot of %s: the given JPEG (%d bytes) does not decode", event_id, len(jpeg))
            return None
        return self._store(event_id, jpeg, stamp, img.shape[1], img.shape[0])

    def _store(self, event_id: str, jpeg: bytes | None, stamp: float, w: int, h: int) -> dict[str, Any] | None:
        path = self.dir / f"{event_id}.jpg"
        tmp = path.with_suffix(".jpg.tmp")
        try:
            if jpeg is None:
                raise OSError("JPEG encoding failed")
            self.dir.mkdir(parents=True, exist_ok=True)
            tmp.write_bytes(jpeg)
            os.replace(tmp, path)
        except OSError as err:
            self.failed += 1
            try:
                tmp.unlink()  # a partial file on a full disk would keep it full
            except OSError:
                pass
            log.error("snapshot %s not written: %s", path, err)
            return None
        self.written += 1
        self._files.append(path)
        while len(self._files) > self.max_files:
            old = self._files.popleft()
            try:
                old.unlink()
            except OSError:
                pass
        return {"path": str(path), "stamp": iso(stamp), "width": int(w), "height": int(h)}
