"""JPEG snapshots of events: a small buffer of recent frames matched by stamp, boxes drawn."""

from __future__ import annotations

import logging
import os
import threading
from collections import deque
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from nano_vision_ros.core.events.schema import iso

log = logging.getLogger(__name__)


class FrameBuffer:
    """The newest `size` frames with their stamps (seconds); `nearest` picks the closest one."""

    def __init__(self, size: int = 8) -> None:
        self._frames: deque[tuple[float, np.ndarray]] = deque(maxlen=max(1, size))
        self._lock = threading.Lock()

    def put(self, stamp: float, frame: np.ndarray) -> None:
        with self._lock:
            self._frames.append((stamp, frame))

    def nearest(self, stamp: float, tolerance: float = 1.0) -> tuple[float, np.ndarray] | None:
        with self._lock:
            if not self._frames:
                return None
            best = min(self._frames, key=lambda f: abs(f[0] - stamp))
        return best if abs(best[0] - stamp) <= tolerance else None

    def __len__(self) -> int:
        return len(self._frames)


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
        path = self.dir / f"{event['event_id']}.jpg"
        tmp = path.with_suffix(".jpg.tmp")
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
            if not ok:
                raise OSError("JPEG encoding failed")
            tmp.write_bytes(buf.tobytes())
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
        return {"path": str(path), "stamp": iso(frame_stamp), "width": int(w), "height": int(h)}
