"""A synthetic, moving test pattern whose pixels encode the frame index.

Every frame is a pure function of (index, width, height, rgb): scrolling colour bars over a
vertical ramp, a bouncing grey box, the index as 32 black/white blocks along the top and as text.
A receiver can read the index back (``decode_frame_index``) and regenerate the exact frame to
check every byte that crossed a transport. Rendering is one strided copy plus small fills, so
1080p frames cost about a millisecond.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from nano_vision_ros.core.capture.base import FrameSource

BITS = 32
# BGR colour bars (white, yellow, cyan, green, magenta, red, blue, black)
_BARS_BGR = np.array(
    [
        (235, 235, 235),
        (16, 235, 235),
        (235, 235, 16),
        (16, 235, 16),
        (235, 16, 235),
        (16, 16, 235),
        (235, 16, 16),
        (16, 16, 16),
    ],
    np.uint8,
)
_SCROLL_PX = 4  # horizontal scroll per frame


def block_size(width: int, height: int) -> int:
    """Side of one code block: 16 px at 1080p, smaller for small frames (>= 1)."""
    return max(1, min(16, width // (BITS + 2), height // 4))


@lru_cache(maxsize=4)
def _base(width: int, height: int, rgb: bool) -> np.ndarray:
    """Two frame widths of colour bars times a vertical ramp (read-only, shared)."""
    xs = (np.arange(width) * len(_BARS_BGR)) // width
    bars = _BARS_BGR[xs][:, ::-1] if rgb else _BARS_BGR[xs]  # (W, 3)
    ramp = (np.arange(height, dtype=np.int64) * 160 // max(1, height - 1) + 96).astype(np.uint16)  # 96..256
    img = (bars[None, :, :].astype(np.uint16) * ramp[:, None, None] >> 8).astype(np.uint8)
    base = np.ascontiguousarray(np.concatenate([img, img], axis=1))
    base.setflags(write=False)
    return base


def render_test_pattern(
    index: int, width: int, height: int, out: np.ndarray | None = None, rgb: bool = False
) -> np.ndarray:
    """Frame number `index` of the pattern, written into `out` when its shape fits."""
    if out is None or out.shape != (height, width, 3) or out.dtype != np.uint8:
        out = np.empty((height, width, 3), np.uint8)
    base = _base(width, height, rgb)
    off = (index * _SCROLL_PX) % width
    np.copyto(out, base[:, off : off + width])
    # bouncing box (integer triangle waves, so every process renders the same bytes)
    s = max(2, min(width, height) // 6)
    span_x, span_y = max(1, width - s), max(1, height - s)
    tx, ty = (index * 7) % (2 * span_x), (index * 5) % (2 * span_y)
    x = tx if tx < span_x else 2 * span_x - tx
    y = ty if ty < span_y else 2 * span_y - ty
    out[y : y + s, x : x + s] = 128
    # the index: black strip, then 32 blocks (MSB first), white = 1
    b = block_size(width, height)
    out[:b, : (BITS + 2) * b] = 0
    value = index & 0xFFFFFFFF
    for i in range(BITS):
        if value >> (BITS - 1 - i) & 1:
            out[:b, (i + 1) * b : (i + 2) * b] = 255
    if height >= 8 * b and b >= 4:
        import cv2

        scale = b / 16.0
        cv2.putText(
            out,
            f"#{index}",
            (b, 3 * b),
            cv2.FONT_HERSHEY_SIMPLEX,
            scale * 1.2,
            (255, 255, 255),
            max(1, int(2 * scale)),
            cv2.LINE_8,
        )
    return out


def decode_frame_index(frame: np.ndarray, rendered_size: tuple[int, int] | None = None) -> int:
    """The index a pattern frame carries (samples block centres, so mild compression is fine).

    ``rendered_size`` (width, height) is the size the pattern was rendered at, when the frame
    was resized since.
    """
    h, w = frame.shape[:2]
    rw, rh = rendered_size or (w, h)
    b = block_size(rw, rh)
    sx, sy = w / rw, h / rh
    y = int((b / 2) * sy)
    row = frame[y].astype(np.uint16).sum(axis=1) if frame.ndim == 3 else frame[y].astype(np.uint16) * 3
    value = 0
    for i in range(BITS):
        x = int(((i + 1) * b + b / 2) * sx)
        value = (value << 1) | int(row[x] > 3 * 127)
    return value


class TestPatternSource(FrameSource):
    """The pattern as a source: ``fps`` paces it (0 = as fast as it is read), index counts from 0."""

    __test__ = False  # not a pytest class
    live = False
    native_rgb = True

    def __init__(self, width: int = 640, height: int = 480, fps: float = 30.0, rgb: bool = False) -> None:
        super().__init__()
        self.width, self.height = width, height
        self.nominal_fps = fps
        self.rgb = rgb
        self.index = 0
        self.name = f"test_pattern {width}x{height}"

    def open(self) -> None:
        self.index = 0
        _base(self.width, self.height, self.rgb)  # render the base once, outside the frame loop

    def read(self, out: np.ndarray | None = None) -> np.ndarray:
        frame = render_test_pattern(self.index, self.width, self.height, out, self.rgb)
        self.index += 1
        return frame
