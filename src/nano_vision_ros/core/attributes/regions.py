"""Where on a person box an attribute is looked for: head (hard hat), torso (vest), whole person.

Fractions of the box height from its top; the same geometry for collecting, training and running,
so a classifier sees at run time the kind of crop it was trained on.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

Region = Literal["person", "head", "torso"]
#: region -> (top, bottom) as fractions of the person box height; full box width
REGIONS: dict[str, tuple[float, float]] = {"person": (0.0, 1.0), "head": (0.0, 0.3), "torso": (0.15, 0.65)}
#: smallest crop side in source pixels worth classifying (smaller crops are skipped)
MIN_SIDE = 12


def region_box(
    box: np.ndarray, region: str, shape: tuple[int, ...], pad: float = 0.1
) -> tuple[int, int, int, int] | None:
    """Integer x1, y1, x2, y2 of `region` of a person `box`, padded by `pad` of its width and clipped
    to the image; None when the crop would be smaller than MIN_SIDE."""
    top, bottom = REGIONS[region]
    x1, y1, x2, y2 = (float(v) for v in box[:4])
    h, w = y2 - y1, x2 - x1
    ry1, ry2 = y1 + top * h, y1 + bottom * h
    px = pad * w
    H, W = int(shape[0]), int(shape[1])
    a = (max(0, round(x1 - px)), max(0, round(ry1 - px)), min(W, round(x2 + px)), min(H, round(ry2 + px)))
    if a[2] - a[0] < MIN_SIDE or a[3] - a[1] < MIN_SIDE:
        return None
    return a


def crop(image: np.ndarray, box: np.ndarray, region: str, pad: float = 0.1) -> np.ndarray | None:
    """The region's pixels (a copy), or None when too small."""
    r = region_box(box, region, image.shape, pad)
    if r is None:
        return None
    return image[r[1] : r[3], r[0] : r[2]].copy()
