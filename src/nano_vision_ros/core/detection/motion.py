"""Motion-gated detection: a cheap motion detector decides whether the model runs on a frame.

Why: a camera watching a still scene does not need a neural network on every frame (what lets
Frigate serve many cameras on small boxes). Per frame: downscale to a small grey image, blur,
compare with a running-average background, threshold (``sensitivity``), drop ignore masks
(polygons in source pixels: trees, flags, timestamps), dilate, keep contours of at least
``min_area`` (share of the frame). The gate runs the model when there is motion, for ``hold``
seconds after the last motion, and at least every ``keepalive_period`` seconds otherwise, so
static objects and open tracks stay confirmed. ``max_rate`` (Hz, 0 = none) caps the model's rate,
motion or not: the per-camera detection target when a board cannot run the model on every frame of
every camera (several cameras on one board, issue 9); frames in between are gated. A near-global
change (lights, camera shake) resets the background and counts as motion. ROS-free: numpy +
OpenCV, ~0.6 ms CPU per 768x576 frame at 160 px (docs/performance/site_cost.md): the gate runs on
every frame, so its cost is the floor of a camera watching a still scene.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import cv2
import numpy as np

log = logging.getLogger(__name__)


@dataclass
class MotionConfig:
    enabled: bool = True
    width: int = 160  # the grey image is this wide (aspect kept)
    sensitivity: int = 25  # grey-level difference (0..255) that counts as a moving pixel
    min_area: float = 0.0005  # smallest motion box, share of the frame area
    alpha: float = 0.2  # background learning rate per frame (a stopped object fades in ~0.6 s at 10 fps)
    keepalive_period: float = 1.0  # s: the model runs at least this often without motion
    hold: float = 0.5  # s: keep running the model this long after the last motion
    global_change: float = 0.6  # moving share above this resets the background (lights, shake)
    masks: list[list[tuple[float, float]]] = field(default_factory=list)  # polygons, source pixels
    max_rate: float = 0.0  # Hz: the model runs at most this often, motion or not (0 = no cap)

    def __post_init__(self) -> None:
        if self.width < 16:
            raise ValueError(f"motion.width must be >= 16 (got {self.width})")
        if not 1 <= self.sensitivity <= 255:
            raise ValueError(f"motion.sensitivity must be within 1..255 (got {self.sensitivity})")
        if not 0.0 <= self.min_area < 1.0:
            raise ValueError(f"motion.min_area is a share of the frame, 0 <= min_area < 1 (got {self.min_area})")
        if not 0.0 < self.alpha <= 1.0:
            raise ValueError(f"motion.alpha must be within (0, 1] (got {self.alpha})")
        if self.max_rate < 0.0:
            raise ValueError(f"motion.max_rate is in Hz, >= 0 (0 = no cap; got {self.max_rate})")
        for i, poly in enumerate(self.masks):
            if len(poly) < 3 or any(len(p) != 2 for p in poly):
                raise ValueError(f"motion.masks[{i}]: a polygon needs >= 3 [x, y] points (got {poly!r})")


@dataclass
class Motion:
    """One frame's motion: boxes in source pixels (x1, y1, x2, y2) and the moving share of the frame."""

    boxes: np.ndarray
    share: float

    def __bool__(self) -> bool:
        return len(self.boxes) > 0


def parse_masks(value: object) -> list[list[tuple[float, float]]]:
    """Masks from YAML/JSON text or a list: ``[[[x, y], [x, y], [x, y]], ...]`` (source pixels)."""
    import yaml

    data = yaml.safe_load(value) if isinstance(value, str) else value
    if data in (None, ""):
        return []
    if not isinstance(data, list):
        raise ValueError("motion.masks: expected a list of polygons [[[x, y], ...], ...]")
    out = []
    for i, poly in enumerate(data):
        try:
            pts = [(float(p[0]), float(p[1])) for p in poly]
            if any(len(p) != 2 for p in poly):
                raise ValueError
        except (TypeError, ValueError, IndexError):
            raise ValueError(f"motion.masks[{i}]: not a list of [x, y] points: {poly!r}") from None
        if len(pts) < 3:
            raise ValueError(f"motion.masks[{i}]: a polygon needs at least 3 points")
        out.append(pts)
    return out


class MotionDetector:
    """Running-average background on a downscaled grey frame; ``detect(frame)`` -> ``Motion``."""

    def __init__(self, config: MotionConfig | None = None) -> None:
        self.config = config or MotionConfig()
        self._bg: np.ndarray | None = None
        self._shape: tuple[int, int] | None = None
        self._keep: np.ndarray | None = None  # 255 where motion counts, 0 inside masks
        self._scale = 1.0
        self._kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))

    def reset(self) -> None:
        self._bg = None

    def _setup(self, h: int, w: int) -> None:
        c = self.config
        sw = min(c.width, w)
        sh = max(1, int(round(h * sw / w)))
        self._scale = w / sw
        self._shape = (h, w)
        self._small = (sw, sh)
        self._keep = None
        if c.masks:
            keep = np.full((sh, sw), 255, np.uint8)
            for poly in c.masks:
                pts = np.round(np.asarray(poly, np.float64) / self._scale).astype(np.int32)
                cv2.fillPoly(keep, [pts], 0)
            self._keep = keep
        self._min_px = c.min_area * sw * sh
        self._bg = None

    def _downscale(self, frame: np.ndarray) -> np.ndarray:
        """The frame at the gate's size, averaged (not just sampled) so sensor noise does not count.

        Why two steps: INTER_AREA straight from a non-integer ratio (768 -> 160: 4.8x) is the
        slow general path, ~1.9 ms a frame and ~7.5 ms from 4K; bilinear to twice the size then a
        2x2 average (INTER_AREA's integer fast path) is ~0.2 ms at any source size, and each pixel
        still averages 16 source samples before the blur.
        """
        sw, sh = self._small
        if frame.shape[1] >= 4 * sw and frame.shape[0] >= 4 * sh:
            frame = cv2.resize(frame, (2 * sw, 2 * sh), interpolation=cv2.INTER_LINEAR)
        return cv2.resize(frame, (sw, sh), interpolation=cv2.INTER_AREA)

    def detect(self, frame_bgr: np.ndarray) -> Motion:
        h, w = frame_bgr.shape[:2]
        if self._shape != (h, w):
            self._setup(h, w)
        c = self.config
        small = self._downscale(frame_bgr)
        grey = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY) if small.ndim == 3 else small
        grey = cv2.GaussianBlur(grey, (5, 5), 0)
        if self._bg is None:
            self._bg = grey.astype(np.float32)
            return Motion(np.zeros((0, 4), np.float32), 0.0)
        diff = cv2.absdiff(grey, cv2.convertScaleAbs(self._bg))
        _, moving = cv2.threshold(diff, c.sensitivity, 255, cv2.THRESH_BINARY)
        if self._keep is not None:
            moving = cv2.bitwise_and(moving, self._keep)
        moving = cv2.dilate(moving, self._kernel, iterations=2)
        share = float(cv2.countNonZero(moving)) / moving.size
        if share > c.global_change:  # lights switched, camera moved: start a new background
            self._bg = grey.astype(np.float32)
            return Motion(np.array([[0, 0, w, h]], np.float32), share)
        cv2.accumulateWeighted(grey, self._bg, c.alpha)
        contours, _ = cv2.findContours(moving, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        boxes = []
        for cnt in contours:
            if cv2.contourArea(cnt) >= self._min_px or (self._min_px == 0 and len(cnt)):
                x, y, bw, bh = cv2.boundingRect(cnt)
                boxes.append((x, y, x + bw, y + bh))
        arr = np.asarray(boxes, np.float32).reshape(-1, 4) * self._scale
        return Motion(arr, share)


class MotionGate:
    """Decides per frame whether the model runs; counts model runs and gated frames."""

    def __init__(self, config: MotionConfig | None = None) -> None:
        self.config = config or MotionConfig()
        self.detector = MotionDetector(self.config)
        self._last_run = -1e18
        self._next_slot = -1e18  # max_rate: the earliest time of the next run
        self._last_motion = -1e18
        self._force = True
        self.frames = 0
        self.model_runs = 0
        self.last_motion: Motion | None = None

    @property
    def gated_share(self) -> float:
        """Share of frames on which the model did not run."""
        return 1.0 - self.model_runs / self.frames if self.frames else 0.0

    def _ran(self, now: float) -> None:
        self._force = False
        self._last_run = now
        self.model_runs += 1
        if self.config.max_rate > 0.0:
            # keep the slot grid while on time, so frame jitter does not lower the rate below the cap;
            # after a gap (no motion, clock jump) the grid restarts at this run
            interval = 1.0 / self.config.max_rate
            on_time = 0.0 <= now - self._next_slot < interval
            self._next_slot = (self._next_slot if on_time else now) + interval

    def force(self) -> None:
        """The next frame runs the model (thresholds changed, a new model)."""
        self._force = True

    def should_run(self, frame_bgr: np.ndarray, now: float) -> bool:
        """``now`` in seconds (frame time or monotonic). True -> run the model on this frame."""
        self.frames += 1
        c = self.config
        if c.max_rate > 0.0 and not self._force and self._last_run <= now < self._next_slot - 1e-3:
            if c.enabled:  # keep the background current, so the next allowed frame sees this motion
                motion = self.detector.detect(frame_bgr)
                self.last_motion = motion
                if motion:
                    self._last_motion = now
            return False
        if not c.enabled:
            self._ran(now)
            return True
        motion = self.detector.detect(frame_bgr)
        self.last_motion = motion
        if motion:
            self._last_motion = now
        run = (
            self._force
            or bool(motion)
            or now - self._last_motion < c.hold
            or now - self._last_run >= c.keepalive_period
            or now < self._last_run  # clock went back
        )
        if run:
            self._ran(now)
        return run
