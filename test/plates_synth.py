"""Synthetic Chinese licence plates for tests and the benchmark (SYNTHETIC data, not real plates).

Plates are drawn with the WenQuanYi Zen Hei font (Debian fonts-wqy-zenhei) in the standard
layouts: blue (white text) and yellow (black text) 7-character plates with the separator dot,
green gradient 8-character new-energy plates. ``vehicle_scene`` puts a plate on a plain
vehicle-like background with perspective, blur and noise.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import ClassVar

import cv2
import numpy as np

from nano_vision_ros.core.recognition.plate_rules import DIGITS, LETTERS, PROVINCES

FONT = "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc"
ALNUM = LETTERS + DIGITS

_STYLE = {  # background RGB (top, bottom), text RGB
    "blue": ((20, 70, 200), (20, 70, 200), (250, 250, 250)),
    "yellow": ((245, 195, 20), (245, 195, 20), (15, 15, 15)),
    "green": ((225, 245, 230), (70, 190, 100), (15, 15, 15)),
}


@dataclass
class SynthPlate:
    text: str
    colour: str
    image: np.ndarray  # BGR plate only


def random_text(rng: random.Random, new_energy: bool) -> str:
    p, l = rng.choice(PROVINCES), rng.choice(LETTERS)
    if not new_energy:
        return p + l + "".join(rng.choice(ALNUM) for _ in range(5))
    if rng.random() < 0.5:  # small NEV: D/F + alnum + 4 digits
        return p + l + rng.choice("DF") + rng.choice(ALNUM) + "".join(rng.choice(DIGITS) for _ in range(4))
    return p + l + "".join(rng.choice(DIGITS) for _ in range(5)) + rng.choice("DF")


def render_plate(text: str, colour: str, height: int = 70) -> np.ndarray:
    """Plate image (BGR), `height` pixels tall, standard proportions (440x140 / 480x140 mm)."""
    from PIL import Image, ImageDraw, ImageFont

    top, bottom, fg = _STYLE[colour]
    s = height / 140.0
    w = int(round((480 if len(text) == 8 else 440) * s))
    grad = np.linspace(0, 1, height)[:, None, None]
    bg = np.array(top)[None, None] * (1 - grad) + np.array(bottom)[None, None] * grad
    arr = np.repeat(bg, w, axis=1).astype(np.uint8)
    img = Image.fromarray(arr, "RGB")
    d = ImageDraw.Draw(img)
    d.rounded_rectangle([2, 2, w - 3, height - 3], radius=max(2, int(8 * s)), outline=fg, width=max(1, int(4 * s)))
    font = ImageFont.truetype(FONT, 120)
    cw, ch_h, gap = 45 * s, 90 * s, 12 * s
    x = 15.5 * s if len(text) == 7 else 14 * s
    y = 25 * s
    for i, ch in enumerate(text):
        # each character drawn alone, cut to its ink and stretched to the 45x90 mm cell (plate font)
        glyph = Image.new("L", (160, 160), 0)
        ImageDraw.Draw(glyph).text((10, 0), ch, font=font, fill=255)
        ink = glyph.getbbox()
        gw = cw if ch in PROVINCES or ch not in "1" else cw * 0.35
        cell = glyph.crop(ink).resize((max(1, int(round(gw))), max(1, int(round(ch_h)))), Image.BILINEAR)
        img.paste(Image.new("RGB", cell.size, fg), (int(round(x + (cw - gw) / 2)), int(round(y))), cell)
        x += cw + gap
        if i == 1:  # separator dot after the province + letter
            d.ellipse([x - gap / 2 + 2 * s, y + 40 * s, x - gap / 2 + 12 * s, y + 50 * s], fill=fg)
            x += 22 * s
    return cv2.cvtColor(np.asarray(img), cv2.COLOR_RGB2BGR)


def vehicle_scene(
    plate: np.ndarray,
    rng: random.Random,
    size: tuple[int, int] = (320, 240),
    perspective: float = 0.08,
    blur: float = 1.0,
    noise: float = 6.0,
) -> tuple[np.ndarray, np.ndarray]:
    """A vehicle-like image with the plate near the bottom centre; returns (image, plate box)."""
    W, H = size
    body = np.array([rng.randint(30, 200)] * 3, np.float32) + np.array([rng.randint(-20, 20) for _ in range(3)])
    img = np.empty((H, W, 3), np.float32)
    img[:] = np.clip(body, 0, 255)
    img[: H // 3] *= 0.6  # windscreen
    cv2.rectangle(img, (10, H // 2 - 20), (W // 4, H // 2), (220, 220, 220), -1)  # lamps
    cv2.rectangle(img, (W - W // 4, H // 2 - 20), (W - 10, H // 2), (220, 220, 220), -1)
    ph, pw = plate.shape[:2]
    scale = rng.uniform(0.8, 1.1) * (W * 0.55) / pw
    ph2, pw2 = int(ph * scale), int(pw * scale)
    x0 = (W - pw2) // 2 + rng.randint(-15, 15)
    y0 = int(H * 0.62) + rng.randint(-10, 10)
    src = np.array([[0, 0], [pw - 1, 0], [pw - 1, ph - 1], [0, ph - 1]], np.float32)
    j = lambda: rng.uniform(-perspective, perspective) * ph2
    dst = np.array(
        [
            [x0 + j(), y0 + j()],
            [x0 + pw2 + j(), y0 + j()],
            [x0 + pw2 + j(), y0 + ph2 + j()],
            [x0 + j(), y0 + ph2 + j()],
        ],
        np.float32,
    )
    m = cv2.getPerspectiveTransform(src, dst)
    warped = cv2.warpPerspective(plate.astype(np.float32), m, (W, H))
    mask = cv2.warpPerspective(np.ones((ph, pw), np.float32), m, (W, H))[..., None]
    img = img * (1 - mask) + warped * mask
    if blur > 0:
        img = cv2.GaussianBlur(img, (0, 0), blur)
    if noise > 0:
        nr = np.random.default_rng(rng.randint(0, 2**31))
        img = img + nr.normal(0, noise, img.shape)
    box = np.array([dst[:, 0].min(), dst[:, 1].min(), dst[:, 0].max(), dst[:, 1].max()], np.float32)
    return np.clip(img, 0, 255).astype(np.uint8), box


def dataset(n: int, seed: int = 7) -> list[tuple[str, str, np.ndarray, np.ndarray]]:
    """n varied samples: (text, colour, vehicle image, plate box). Provinces cycle through all 31;
    every third plate is new-energy (green); blur, perspective and noise vary."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        nev = i % 3 == 2
        colour = "green" if nev else ("blue" if i % 3 == 0 else "yellow")
        text = random_text(rng, nev)
        text = PROVINCES[i % len(PROVINCES)] + text[1:]
        plate = render_plate(text, colour, height=rng.choice([56, 70, 84]))
        img, box = vehicle_scene(
            plate, rng, perspective=rng.uniform(0.0, 0.12), blur=rng.uniform(0.3, 1.3), noise=rng.uniform(2, 9)
        )
        out.append((text, colour, img, box))
    return out


class KnownBoxDetector:
    """A user plate-detector plug-in (the ``Detector`` protocol) that returns one given box:
    stands in for an LPDNet/YOLO plate model in the tests of ``finder.mode: detector``."""

    labels: ClassVar[list[str]] = ["plate"]

    def __init__(self, box: list[float]) -> None:
        self.box = np.asarray(box, np.float32).reshape(1, 4)

    def detect(self, image_bgr: np.ndarray):
        from nano_vision_ros.core.detection.types import Detections

        return Detections(self.box, np.ones(1, np.float32), np.zeros(1, np.int32), self.labels)

    def close(self) -> None:
        pass
