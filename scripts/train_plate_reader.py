#!/usr/bin/env python3
"""Train the plate reader (a small CRNN with CTC) on SYNTHETIC plate crops and export it to ONNX.

    PYTHONPATH=<dir with torch> .venv/bin/python scripts/train_plate_reader.py \
        --out models/plate_reader_crnn.onnx --minutes 40 --seed 20261202 [--device cuda]

Why a plate-trained reader: PP-OCRv4 is a general Chinese OCR model; on small, blurred or dark
plates it reads the province character as a Latin letter and drops red characters. A model that
only knows the 75 plate classes, trained on crops cut the way the pipeline cuts them
(core/recognition/plates.py: corner quads with their error, the 6 % / 12 % margin, double-row
plates split into rows), does not have those confusions to make.

Generalisation, not the benchmark's renderer: the plates are drawn here with fonts the benchmark
and the tests do not use (Noto Sans/Serif CJK, WenQuanYi Micro Hei, AR PL UKai/UMing for the
Chinese characters; DejaVu for letters and digits), with this script's own colours, wear, bolts,
dirt, perspective, blur, night gain, noise and JPEG, and seeds of its own. The benchmark
(bench/plate_scenes.py, WenQuanYi Zen Hei) only measures the result.

torch is needed only here (it is not a dependency of the project); the exported ONNX runs under
ONNX Runtime via ``reader.kind: lprnet`` and carries its alphabet and input contract in its
metadata (read by core/recognition/ocr.py: LprNetRecognizer).
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import json
import logging
import math
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np

log = logging.getLogger("train_plate_reader")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from nano_vision_ros.core.recognition.plate_rules import (
    DIGITS,
    LETTERS,
    PROVINCES,
    SPECIAL_LAST,
    SPECIAL_OTHER,
)

#: the model's classes after the blank (index 0): provinces, digits, letters, special characters
ALPHABET = PROVINCES + DIGITS + LETTERS + SPECIAL_LAST + SPECIAL_OTHER
ALNUM = LETTERS + DIGITS
IN_W, IN_H = 128, 32
#: pipeline constants mirrored from core/recognition/plates.py (how crops reach the reader; not
#: imported: the GPU machine has no pydantic; test_plate_reader_model.py checks they still agree)
CORNER_MARGIN = (0.06, 0.12)
TOP_ROW = (0.08, 0.0, 0.92, 0.40)
BOTTOM_ROW = (0.02, 0.36, 0.98, 0.97)
TOP_PROVINCE = (0.08, 0.0, 0.55, 0.38)
SINGLE_PROVINCE = (0.0, 0.0, 0.30, 1.0)
#: double-row rows as plates.py cuts them when the text detector boxes them (tight: the top row's
#: two boxes joined, the bottom row's box), in fractions of the 440x220 mm plate
TIGHT_TOP_ROW = (0.23, 0.04, 0.77, 0.37)
TIGHT_BOTTOM_ROW = (0.045, 0.40, 0.955, 0.955)

CJK_FONTS = (  # Debian fonts-noto-cjk (OFL-1.1), fonts-wqy-microhei (Apache-2.0 / GPLv3), fonts-arphic-* (Arphic)
    ("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc", 2),
    ("/usr/share/fonts/opentype/noto/NotoSansCJK-Bold.ttc", 2),
    ("/usr/share/fonts/opentype/noto/NotoSerifCJK-Bold.ttc", 2),
    ("/usr/share/fonts/opentype/noto/NotoSerifCJK-Regular.ttc", 2),
    ("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc", 0),
    ("/usr/share/fonts/truetype/arphic/ukai.ttc", 0),
    ("/usr/share/fonts/truetype/arphic/uming.ttc", 0),
)
LATIN_FONTS = (  # Debian fonts-dejavu-core (Bitstream Vera licence) + the CJK fonts' own Latin glyphs
    ("/usr/share/fonts/truetype/dejavu/DejaVuSansCondensed-Bold.ttf", 0),
    ("/usr/share/fonts/truetype/dejavu/DejaVuSansCondensed.ttf", 0),
    ("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf", 0),
    ("/usr/share/fonts/truetype/dejavu/DejaVuSansMono-Bold.ttf", 0),
    ("/usr/share/fonts/opentype/noto/NotoSansCJK-Bold.ttc", 2),
    ("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc", 2),
    ("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc", 0),
)
NOT_PLATE_TEXT = "停车场入口收费站禁止通行请减速慢行工地施工安全帽必须佩戴出口危险仓库办公楼电话号码年月日"

# plate colour schemes: background BGR (top, bottom), character BGR; jittered per plate
SCHEMES = {
    "blue": ((190, 75, 25), (190, 75, 25), (245, 245, 245)),
    "yellow": ((30, 190, 240), (30, 190, 240), (20, 20, 20)),
    "green": ((228, 244, 226), (105, 190, 60), (20, 20, 20)),
    "white": ((238, 238, 238), (238, 238, 238), (20, 20, 20)),
    "black": ((22, 22, 22), (22, 22, 22), (240, 240, 240)),
}
RED = (30, 25, 205)


def _available(fonts: tuple[tuple[str, int], ...]) -> list[tuple[str, int]]:
    have = [f for f in fonts if Path(f[0]).exists()]
    if not have:
        sys.exit(f"none of the fonts {[f[0] for f in fonts]} is installed (apt-get install fonts-noto-cjk ...)")
    return have


class Glyphs:
    """Characters cut to their ink, per font, as grey masks (cached).

    With ``cache`` (an .npz written by ``--write-glyphs``) no font file is opened: the GPU machine
    has none of the Debian fonts, and the fonts (~150 MB) cannot travel there, the masks (~1 MB) can.
    """

    def __init__(self, cache: str | os.PathLike[str] | None = None) -> None:
        self._cache: dict[tuple[int, int, str], np.ndarray] = {}
        if cache:
            with np.load(cache) as z:
                for name in z.files:  # "latin|font index|character"
                    latin, k, ch = name.split("|", 2)
                    self._cache[(int(latin), int(k), ch)] = z[name]
            self.n_fonts = {lat: 1 + max(k for (la, k, _) in self._cache if la == lat) for lat in (0, 1)}
            return
        from PIL import ImageFont

        self.cjk = [ImageFont.truetype(p, 96, index=i) for p, i in _available(CJK_FONTS)]
        self.latin = [ImageFont.truetype(p, 96, index=i) for p, i in _available(LATIN_FONTS)]
        self.n_fonts = {0: len(self.cjk), 1: len(self.latin)}

    def get(self, ch: str, rng: random.Random) -> np.ndarray:
        latin = int(ch in ALNUM)
        return self._glyph(latin, rng.randrange(self.n_fonts[latin]), ch)

    def _glyph(self, latin: int, k: int, ch: str) -> np.ndarray:
        key = (latin, k, ch)
        g = self._cache.get(key)
        if g is None:
            from PIL import Image, ImageDraw

            im = Image.new("L", (150, 150), 0)
            font = (self.latin if latin else self.cjk)[k]
            ImageDraw.Draw(im).text((15, 5), ch, font=font, fill=255)
            bb = im.getbbox() or (0, 0, 1, 1)
            g = self._cache[key] = np.asarray(im.crop(bb))
        return g

    def write(self, path: str) -> int:
        """Render every character the renderer draws, in every font, into ``path`` (.npz)."""
        arrays = {}
        for ch in sorted(set(ALPHABET) | set(NOT_PLATE_TEXT)):
            latin = int(ch in ALNUM)
            for k in range(self.n_fonts[latin]):
                arrays[f"{latin}|{k}|{ch}"] = self._glyph(latin, k, ch)
        np.savez_compressed(path, **arrays)
        return len(arrays)


def _jit(c: tuple[int, int, int], rng: random.Random, s: int = 18) -> np.ndarray:
    return np.clip(np.array(c, np.float32) + [rng.uniform(-s, s) for _ in range(3)], 0, 255)


def plate_text(rng: random.Random) -> tuple[str, str, bool, str]:
    """(text, colour scheme, double row, red characters)."""
    p, letter = rng.choice(PROVINCES), rng.choice(LETTERS)
    tail = lambda n, pool=ALNUM: "".join(rng.choice(pool) for _ in range(n))
    r = rng.random()
    if r < 0.30:
        return p + letter + tail(5), "blue", False, ""
    if r < 0.45:
        return p + letter + tail(5), "yellow", False, ""
    if r < 0.68:
        return p + letter + tail(5), "yellow", True, ""
    if r < 0.80:
        t = (
            p
            + letter
            + (
                rng.choice("DF") + tail(1) + tail(4, DIGITS)
                if rng.random() < 0.5
                else tail(5, DIGITS) + rng.choice("DF")
            )
        )
        return t, "green", False, ""
    s = rng.choice(("挂", "挂2", "学", "警", "使", "领", "港", "澳", "应急"))
    if s in ("挂", "挂2"):
        return p + letter + tail(4, DIGITS) + "挂", "yellow", s == "挂2", ""
    if s == "学":
        return p + letter + tail(4, DIGITS) + "学", "yellow", False, ""
    if s == "警":
        return p + letter + tail(4) + "警", "white", False, "警"
    if s == "使":
        return "使" + tail(6, DIGITS), "black", False, "使"
    if s == "领":
        return p + letter + tail(4, DIGITS) + "领", "black", False, ""
    if s in ("港", "澳"):
        return "粤Z" + tail(4) + s, "black", False, ""
    return p + letter + tail(4, DIGITS) + "应急", "white", False, "应急"


def render_plate(
    text: str, scheme: str, double: bool, red: str, glyphs: Glyphs, rng: random.Random, s: float = 1.0
) -> np.ndarray:
    """The plate (BGR) at `s` px per mm, GA 36 cells with this renderer's own jitter (cell
    sizes, positions, stroke weight, wear, bolts)."""
    top, bottom, fg = SCHEMES[scheme]
    top, bottom, fg = _jit(top, rng), _jit(bottom, rng), _jit(fg, rng, 12)
    hmm = 220 if double else 140
    wmm = 480 if (len(text) == 8 and not double and not text.endswith("应急")) else 440
    h, w = int(hmm * s), int(wmm * s)
    grad = np.linspace(0, 1, h)[:, None, None]
    img = (top[None, None] * (1 - grad) + bottom[None, None] * grad).repeat(w, axis=1).astype(np.float32)
    img += np.random.default_rng(rng.randrange(2**31)).standard_normal((h, w, 1), np.float32) * rng.uniform(0, 6)
    bw = max(2, int(rng.uniform(2, 5) * s))
    cv2.rectangle(img, (bw, bw), (w - 1 - bw, h - 1 - bw), fg.tolist(), max(1, int(rng.uniform(1.5, 4) * s)))
    for bx in (0.22, 0.78) if rng.random() < 0.6 else ():  # bolts
        cv2.circle(
            img, (int(bx * w), int(rng.uniform(0.06, 0.12) * h)), int(5 * s), (fg * 0.5 + top * 0.5).tolist(), -1
        )
    cells: list[tuple[str, float, float, float, float]] = []
    jx = lambda: rng.uniform(-2.5, 2.5)
    if double:
        for i, ch in enumerate(text[:2]):
            cells.append((ch, 110 + i * 140 + jx(), 15 + jx(), 80, 60))
        rest = text[2:]
        cw, gap = 65, 15
        x0 = (wmm - (len(rest) * cw + (len(rest) - 1) * gap)) / 2
        for i, ch in enumerate(rest):
            cells.append((ch, x0 + i * (cw + gap) + jx(), 95 + jx(), cw, 110))
    else:
        n = len(text) if not text.endswith("应急") else len(text) - 1
        cw, chh, gap = 45.0, 90.0, 12.0
        if n == 8:
            cw, gap = 43.0, 9.0
        x = 15.5 if n == 7 else 12.0
        for i, ch in enumerate(text if n == len(text) else text[:-2] + "应"):
            if ch == "应":  # 应急: two characters in the last cell pair
                cells.append(("应", x + jx(), 25, 38, 44))
                cells.append(("急", x + jx(), 72, 38, 44))
                break
            cells.append((ch, x + jx(), 25 + jx(), cw, chh))
            x += cw + gap
            if i == 1 and text[0] != "使":
                cv2.circle(img, (int((x - gap / 2 + 5) * s), int(70 * s)), int(5 * s), fg.tolist(), -1)
                x += 22
    bold = rng.random()
    for ch, x, y, cw, chh in cells:
        g = glyphs.get(ch, rng)
        gw = cw * (0.32 if ch == "1" else rng.uniform(0.88, 1.0))
        m = cv2.resize(g, (max(1, int(gw * s)), max(1, int(chh * s))), interpolation=cv2.INTER_AREA)
        if bold < 0.25 and s > 0.7:
            m = cv2.dilate(m, np.ones((2, 2), np.uint8))
        colour = np.array(RED, np.float32) + [rng.uniform(-20, 20) for _ in range(3)] if ch in red else fg
        x0, y0 = int((x + (cw - gw) / 2) * s), int(y * s)
        x0, y0 = max(0, min(w - m.shape[1], x0)), max(0, min(h - m.shape[0], y0))
        roi = img[y0 : y0 + m.shape[0], x0 : x0 + m.shape[1]]
        a = (m.astype(np.float32) / 255.0)[..., None]
        roi[:] = roi * (1 - a) + colour[None, None] * a
    return np.clip(img, 0, 255).astype(np.uint8)


def _wear(plate: np.ndarray, rng: random.Random) -> np.ndarray:
    """Dirt, fading and glare on the plate itself."""
    h, w = plate.shape[:2]
    out = plate.astype(np.float32)
    if rng.random() < 0.35:
        mask = np.zeros((h, w), np.float32)
        for _ in range(rng.randint(2, 9)):
            cv2.ellipse(
                mask,
                (rng.randrange(w), rng.randrange(h)),
                (rng.randint(4, w // 6), rng.randint(3, h // 3)),
                rng.uniform(0, 180),
                0,
                360,
                rng.uniform(0.2, 0.65),
                -1,
            )
        mask = cv2.GaussianBlur(mask, (0, 0), rng.uniform(3, 12))[..., None]
        mud = np.array([rng.uniform(30, 90), rng.uniform(50, 110), rng.uniform(60, 130)], np.float32)
        out = out * (1 - mask) + mud * mask
    if rng.random() < 0.15:  # glare
        cx, cy = rng.randrange(w), rng.randrange(h)
        yy, xx = np.mgrid[0:h, 0:w]
        g = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * (rng.uniform(0.1, 0.4) * w) ** 2))
        out = out + g[..., None] * rng.uniform(40, 120)
    if rng.random() < 0.3:  # faded
        out = out * rng.uniform(0.6, 1.0) + rng.uniform(0, 50)
    return np.clip(out, 0, 255).astype(np.uint8)


def _background(rng: random.Random, w: int, h: int) -> np.ndarray:
    base = np.array([rng.uniform(20, 235) for _ in range(3)], np.float32)
    img = np.empty((h, w, 3), np.float32)
    img[:] = base
    img += np.random.default_rng(rng.randrange(2**31)).standard_normal((h, w, 1), np.float32) * rng.uniform(2, 25)
    for _ in range(rng.randint(0, 5)):  # grille, bumper edges, lamps
        y = rng.randrange(h)
        c = np.clip(base + rng.uniform(-80, 80), 0, 255).tolist()
        cv2.line(img, (0, y), (w, y + rng.randint(-10, 10)), c, rng.randint(1, 6))
    return img


def _quad(pw: float, ph: float, width_px: float, rng: random.Random) -> np.ndarray:
    """The plate's corners after a 3-D turn (yaw +-30, pitch +-12, roll +-6 deg), `width_px` wide."""
    yaw, pitch, roll = (math.radians(rng.uniform(-a, a)) for a in (30, 12, 6))
    pts = np.array([[-pw / 2, -ph / 2, 0], [pw / 2, -ph / 2, 0], [pw / 2, ph / 2, 0], [-pw / 2, ph / 2, 0]])
    cy, sy, cp, sp, cr, sr = (
        math.cos(yaw),
        math.sin(yaw),
        math.cos(pitch),
        math.sin(pitch),
        math.cos(roll),
        math.sin(roll),
    )
    r = np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]]) @ np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    r = r @ np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    p3 = pts @ r.T
    q = p3[:, :2] * 4.0 / (p3[:, 2] + pw * rng.uniform(3.0, 6.0))[:, None]
    q -= q.min(0)
    return (q * width_px / (q[:, 0].max())).astype(np.float32)


def _degrade(img: np.ndarray, rng: random.Random, size: float = 200.0) -> np.ndarray:
    """Blur, motion blur (at most ~1/9 of the plate's width `size`: beyond, nothing is legible),
    night gain or exposure, noise, JPEG."""
    img = cv2.GaussianBlur(img.astype(np.float32), (0, 0), rng.uniform(0.3, 1.2))
    if rng.random() < 0.55:
        n = min(rng.choice((3, 4, 5, 6, 7, 8, 9, 10)), max(3, int(size / 9)))
        k = np.zeros((n, n), np.float32)
        k[n // 2, :] = 1.0
        k = cv2.warpAffine(k, cv2.getRotationMatrix2D((n / 2 - 0.5, n / 2 - 0.5), rng.uniform(-30, 30), 1.0), (n, n))
        img = cv2.filter2D(img, -1, k / max(float(k.sum()), 1e-6))
    nr = np.random.default_rng(rng.randrange(2**31))
    if rng.random() < 0.35:  # night: dark, noise, then the camera's gain
        dark = rng.uniform(0.12, 0.4)
        img = img * dark + nr.standard_normal(img.shape, np.float32) * rng.uniform(1.5, 5.0)
        img = img * (0.9 / dark) * rng.uniform(0.45, 0.9)
    else:
        img = (
            img * rng.uniform(0.6, 1.25)
            + rng.uniform(-30, 30)
            + nr.standard_normal(img.shape, np.float32) * rng.uniform(1, 8)
        )
    if rng.random() < 0.2:
        img = img.mean(axis=2, keepdims=True).repeat(3, 2) * 0.5 + img * 0.5  # washed-out colour
    img = np.clip(img, 0, 255).astype(np.uint8)
    _, jpg = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, rng.randint(22, 92)])
    return cv2.imdecode(jpg, cv2.IMREAD_COLOR)


def _warp(img: np.ndarray, quad: np.ndarray, w: int, h: int, margin: tuple[float, float]) -> np.ndarray:
    """As core/recognition/plates.py:_warp: the quad to w x h keeping `margin` of the surroundings."""
    mx, my = margin[0] * w, margin[1] * h
    dst = np.array([[mx, my], [w - 1 - mx, my], [w - 1 - mx, h - 1 - my], [mx, h - 1 - my]], np.float32)
    m = cv2.getPerspectiveTransform(quad.astype(np.float32), dst)
    return cv2.warpPerspective(img, m, (max(2, w), max(2, h)), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)


def _frac(img: np.ndarray, r: tuple[float, ...], margin: tuple[float, float]) -> np.ndarray:
    h, w = img.shape[:2]
    mx, my = margin
    x1, y1 = mx + (1 - 2 * mx) * r[0], my + (1 - 2 * my) * r[1]
    x2, y2 = mx + (1 - 2 * mx) * r[2], my + (1 - 2 * my) * r[3]
    x1, y1, x2, y2 = max(0.0, x1), max(0.0, y1), min(1.0, x2), min(1.0, y2)
    return img[int(y1 * h) : max(int(y1 * h) + 2, int(y2 * h)), int(x1 * w) : max(int(x1 * w) + 2, int(x2 * w))]


def _jitter(r: tuple[float, float, float, float], rng: random.Random, s: float) -> tuple[float, ...]:
    return tuple(v + rng.uniform(-s, s) for v in r)


def sample(glyphs: Glyphs, rng: random.Random) -> list[tuple[np.ndarray, str]]:
    """Reader inputs (BGR crops, any size) and their labels from one rendered frame, cut the way
    the pipeline cuts them."""
    if rng.random() < 0.04:
        return [(negative(glyphs, rng), "")]
    text, scheme, double, red = plate_text(rng)
    width_px = rng.uniform(60, 260) if rng.random() < 0.9 else rng.uniform(48, 60)
    # drawn at ~1.6x its size in the frame: sharp enough, and cheap
    plate = _wear(render_plate(text, scheme, double, red, glyphs, rng, max(0.45, min(1.0, width_px * 1.6 / 440))), rng)
    ph, pw = plate.shape[:2]
    quad = _quad(pw, ph, width_px, rng)
    qw, qh = quad.max(0)
    pad = int(max(qw, qh) * 0.22) + 6  # enough for the margins + corner error
    canvas = _background(rng, int(qw) + 2 * pad, int(qh) + 2 * pad)
    quad = quad + pad
    src = np.array([[0, 0], [pw - 1, 0], [pw - 1, ph - 1], [0, ph - 1]], np.float32)
    m = cv2.getPerspectiveTransform(src, quad)
    size = (canvas.shape[1], canvas.shape[0])
    warped = cv2.warpPerspective(plate, m, size, flags=cv2.INTER_AREA)
    mask = cv2.warpPerspective(np.full((ph, pw), 255, np.uint8), m, size, flags=cv2.INTER_AREA)[..., None] / 255.0
    mask = mask.astype(np.float32)
    frame = _degrade(canvas * (1 - mask) + warped * mask, rng, width_px)
    # the finder's corners: off by a few % of the plate (more in height), sometimes a text box
    w = max(np.linalg.norm(quad[1] - quad[0]), np.linalg.norm(quad[2] - quad[3]))
    h = max(np.linalg.norm(quad[3] - quad[0]), np.linalg.norm(quad[2] - quad[1]))
    out: list[tuple[np.ndarray, str]] = []
    for _ in range(2):  # two cuts of one rendered frame: the finder's error differs frame to frame
        nq = quad + np.array([[rng.gauss(0, 0.03) * w, rng.gauss(0, 0.06) * h] for _ in range(4)], np.float32)
        if double:
            margin = (CORNER_MARGIN[0] + rng.uniform(-0.03, 0.03), CORNER_MARGIN[1] + rng.uniform(-0.05, 0.05))
            big = _warp(frame, nq, 256, 144, CORNER_MARGIN)
            tight = rng.random() < 0.5  # the text detector boxed the rows (plates.py: _rows)
            if rng.random() < 0.1:
                out.append((_frac(big, _jitter(TOP_PROVINCE, rng, 0.03), margin), text[:1]))
            else:
                top = TIGHT_TOP_ROW if tight else TOP_ROW
                out.append((_frac(big, _jitter(top, rng, 0.02 if tight else 0.04), margin), text[:2]))
            bottom = TIGHT_BOTTOM_ROW if tight else BOTTOM_ROW
            out.append((_frac(big, _jitter(bottom, rng, 0.02 if tight else 0.03), margin), text[2:]))
            continue
        ph_ = 56 if h < 48 else int(min(h * 1.2, 112))
        if rng.random() < 0.75:  # corner detector quad + the pipeline's margin
            margin = CORNER_MARGIN
        else:  # a PP-OCR text box (unclipped, no margin) or a loose quad
            margin = (rng.uniform(-0.02, 0.12), rng.uniform(-0.04, 0.22))
        crop = _warp(frame, nq, max(8, round(ph_ * w / h)), ph_, margin)
        if text[0] != "使" and rng.random() < 0.05:  # the second look at the province slot
            out.append((_frac(crop, _jitter(SINGLE_PROVINCE, rng, 0.03), margin), text[:1]))
        else:
            out.append((crop, text))
    return out


def negative(glyphs: Glyphs, rng: random.Random) -> np.ndarray:
    """Not a plate: a sign with other Chinese text, a grille, a bare patch (label: nothing)."""
    w, h = rng.randint(80, 300), rng.randint(24, 90)
    img = _background(rng, w, h)
    if rng.random() < 0.6:
        n = rng.randint(2, 6)
        x = rng.uniform(2, w * 0.2)
        cw = (w - x) / (n + 0.5)
        fg = np.array([rng.uniform(0, 255) for _ in range(3)], np.float32)
        for _ in range(n):
            g = glyphs.get(rng.choice(NOT_PLATE_TEXT), rng)
            m = cv2.resize(g, (max(1, int(cw * 0.9)), max(1, int(h * 0.7))))
            x0, y0 = int(x), int(h * 0.15)
            if x0 + m.shape[1] > w:
                break
            a = (m.astype(np.float32) / 255.0)[..., None]
            roi = img[y0 : y0 + m.shape[0], x0 : x0 + m.shape[1]]
            roi[:] = roi * (1 - a) + fg * a
            x += cw
    return _degrade(img, rng)


def to_input(crop: np.ndarray) -> np.ndarray:
    """The model input as LprNetRecognizer makes it: resized to IN_W x IN_H, (x - 127.5) / 127.5, CHW BGR."""
    x = cv2.resize(crop, (IN_W, IN_H), interpolation=cv2.INTER_LINEAR).astype(np.float32)
    return ((x - 127.5) / 127.5).transpose(2, 0, 1)


def encode(text: str) -> list[int]:
    return [ALPHABET.index(c) + 1 for c in text]


# --- model ---------------------------------------------------------------------------------------
def build_model(n_classes: int):
    import torch
    from torch import nn

    def block(cin: int, cout: int) -> list:
        return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]

    class PlateCRNN(nn.Module):
        """32x128 -> 32 time steps: convolutions collapse the height, 1-D convolutions over the
        width give each step the context of its neighbours (no RNN: cheaper on one CPU core)."""

        def __init__(self) -> None:
            super().__init__()
            self.features = nn.Sequential(
                *block(3, 16),
                nn.MaxPool2d(2),  # 16x64
                *block(16, 32),
                *block(32, 32),
                nn.MaxPool2d(2),  # 8x32
                *block(32, 64),
                *block(64, 64),
                nn.MaxPool2d((2, 1)),  # 4x32
                *block(64, 96),
                nn.Conv2d(96, 160, (4, 1), bias=False),  # 1x32
                nn.BatchNorm2d(160),
                nn.ReLU(inplace=True),
            )
            self.seq1 = nn.Sequential(nn.Conv1d(160, 160, 3, padding=1), nn.ReLU(inplace=True))
            self.seq2 = nn.Sequential(nn.Conv1d(160, 160, 3, padding=2, dilation=2), nn.ReLU(inplace=True))
            self.drop = nn.Dropout(0.1)
            self.head = nn.Conv1d(160, n_classes, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, T, C) logits
            f = self.features(x).squeeze(2)
            f = f + self.seq1(f)
            f = f + self.seq2(f)
            return self.head(self.drop(f)).permute(0, 2, 1)

    return PlateCRNN()


class Exported:
    """Wrapper exported to ONNX: softmax probabilities (N, T, C), blank at 0."""

    @staticmethod
    def wrap(model):
        import torch

        class Probs(torch.nn.Module):
            def __init__(self, m) -> None:
                super().__init__()
                self.m = m

            def forward(self, x):
                return torch.softmax(self.m(x), dim=2)

        return Probs(model)


def greedy(probs: np.ndarray) -> list[str]:
    out = []
    for row in probs.argmax(2):
        keep = np.ones(len(row), bool)
        keep[1:] = row[1:] != row[:-1]
        out.append("".join(ALPHABET[i - 1] for i in row[keep & (row != 0)]))
    return out


def make_batches(seed: int, batch: int, glyph_cache: str = ""):
    """Endless batches from one worker process (seeded per worker)."""
    import torch

    class Stream(torch.utils.data.IterableDataset):
        def __iter__(self):
            info = torch.utils.data.get_worker_info()
            wid = info.id if info else 0
            rng = random.Random(seed * 1000 + wid)
            cv2.setNumThreads(1)
            glyphs = Glyphs(glyph_cache or None)
            while True:
                xs, ys = [], []
                while len(xs) < batch:
                    for crop, text in sample(glyphs, rng):
                        xs.append(to_input(crop))
                        ys.append(text)
                xs, ys = xs[:batch], ys[:batch]
                yield torch.from_numpy(np.stack(xs)), ys

    return Stream()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(ROOT / "models" / "plate_reader_crnn.onnx"))
    ap.add_argument("--seed", type=int, default=20261202, help="render + init seed (the bench uses 101..104)")
    ap.add_argument("--minutes", type=float, default=40.0, help="training time budget")
    ap.add_argument("--steps", type=int, default=0, help="stop after this many steps (0 = by --minutes)")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 1))
    ap.add_argument("--threads", type=int, default=1, help="torch threads for the training step (CPU)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--preview", default="", help="write a sheet of training crops here and exit")
    ap.add_argument("--reuse", type=int, default=1, help="training steps per rendered batch (replayed from a buffer)")
    ap.add_argument("--replay", type=int, default=256, help="batches kept for --reuse")
    ap.add_argument("--init", default="", help="start from this state dict (.pt, from --save-state)")
    ap.add_argument("--save-state", default="", help="also write the trained state dict (.pt) here")
    ap.add_argument("--warmup", type=int, default=300, help="learning-rate warm-up steps")
    ap.add_argument("--glyphs", default="", help="read the characters from this .npz instead of the fonts")
    ap.add_argument("--write-glyphs", default="", help="render the characters of the fonts into this .npz and exit")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.write_glyphs:
        n = Glyphs().write(args.write_glyphs)
        log.info("%d glyphs -> %s (%d bytes)", n, args.write_glyphs, Path(args.write_glyphs).stat().st_size)
        return 0
    import torch

    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    if args.preview:
        rng, glyphs = random.Random(args.seed), Glyphs(args.glyphs or None)
        tiles = []
        while len(tiles) < 48:
            for crop, text in sample(glyphs, rng):
                tiles.append(cv2.resize(crop, (IN_W * 2, IN_H * 2)))
                log.info("%s", text)
        tiles = tiles[:48]
        sheet = np.vstack([np.hstack(tiles[i : i + 4]) for i in range(0, 48, 4)])
        cv2.imwrite(args.preview, sheet)
        return 0
    n_classes = len(ALPHABET) + 1
    model = build_model(n_classes)
    if args.init:
        model.load_state_dict(torch.load(args.init, map_location="cpu"))
        log.info("weights from %s", args.init)
    model = model.to(args.device)
    log.info("params %d", sum(p.numel() for p in model.parameters()))
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    ctc = torch.nn.CTCLoss(blank=0, zero_infinity=True)
    loader = torch.utils.data.DataLoader(
        make_batches(args.seed, args.batch, args.glyphs), batch_size=None, num_workers=args.workers, prefetch_factor=4
    )
    budget = args.minutes * 60
    t0 = time.monotonic()
    step, ema = 0, None
    replay: collections.deque = collections.deque(maxlen=args.replay)
    pick = random.Random(args.seed)

    def batches():
        """Each rendered batch, then (--reuse > 1) earlier ones from the replay buffer: rendering,
        not the training step, bounds the rate on a GPU, so each crop is used more than once."""
        for x, texts in loader:
            x = x.to(args.device, non_blocking=True)
            replay.append((x, texts))
            yield x, texts
            for _ in range(args.reuse - 1):
                yield pick.choice(replay)

    for x, texts in batches():
        elapsed = time.monotonic() - t0
        frac = elapsed / budget if not args.steps else step / args.steps
        if frac >= 1.0:
            break
        for g in opt.param_groups:  # warm-up then cosine to 2 % of the peak
            g["lr"] = (
                args.lr
                * min(1.0, (step + 1) / max(1, args.warmup))
                * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * frac)))
            )
        model.train()
        logp = torch.log_softmax(model(x), dim=2).permute(1, 0, 2)  # (T, N, C)
        targets = torch.tensor([i for t in texts for i in encode(t)], dtype=torch.long)
        lens = torch.tensor([len(t) for t in texts], dtype=torch.long)
        steps_in = torch.full((len(texts),), logp.shape[0], dtype=torch.long)
        loss = ctc(logp, targets.to(args.device), steps_in.to(args.device), lens.to(args.device))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        lv = loss.item()
        ema = lv if ema is None else 0.98 * ema + 0.02 * lv
        step += 1
        if step % 100 == 0:
            model.eval()
            with torch.no_grad():
                got = greedy(torch.softmax(model(x), 2).cpu().numpy())
            acc = np.mean([g == t for g, t in zip(got, texts)])
            log.info("step %d  %.0f s  loss %.3f  batch exact %.2f", step, elapsed, ema, acc)
    log.info(
        "trained %d steps (%d crops, each used ~%d times) in %.0f s",
        step,
        step * args.batch // max(1, args.reuse),
        args.reuse,
        time.monotonic() - t0,
    )
    model.eval().cpu()
    if args.save_state:
        torch.save(model.state_dict(), args.save_state)
    # held-out check on this renderer (another seed): crops the model never saw
    rng, glyphs = random.Random(args.seed + 999), Glyphs(args.glyphs or None)
    val: list[tuple[np.ndarray, str]] = []
    while len(val) < 1000:
        val += sample(glyphs, rng)
    with torch.no_grad():
        probs = torch.softmax(model(torch.from_numpy(np.stack([to_input(c) for c, _ in val]))), 2).numpy()
    got = greedy(probs)
    val_acc = float(np.mean([g == t for g, (_, t) in zip(got, val)]))
    log.info("held-out exact (1000 crops of this renderer, seed %d): %.3f", args.seed + 999, val_acc)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(
        Exported.wrap(model),
        torch.zeros(1, 3, IN_H, IN_W),
        str(out),
        input_names=["image"],
        output_names=["probs"],
        dynamic_axes={"image": {0: "n"}, "probs": {0: "n"}},
        opset_version=17,
        dynamo=False,
    )
    import onnx

    m = onnx.load(str(out))
    try:
        commit = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], check=False, capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        commit = ""
    meta = {
        "alphabet": ALPHABET,
        "blank": "0",
        "input_width": str(IN_W),
        "input_height": str(IN_H),
        "mean": "127.5",
        "std": "127.5",
        "rgb": "0",
        "output": "probs",
        "trained": json.dumps(
            {
                "script": "scripts/train_plate_reader.py",
                "commit": commit,
                "seed": args.seed,
                "steps": step,
                "batch": args.batch,
                "heldout_exact": round(val_acc, 4),
            }
        ),
    }
    for k, v in meta.items():
        p = m.metadata_props.add()
        p.key, p.value = k, v
    onnx.save(m, str(out))
    log.info("wrote %s (%d bytes, sha256 %s)", out, out.stat().st_size, hashlib.sha256(out.read_bytes()).hexdigest())
    return 0


if __name__ == "__main__":
    sys.exit(main())
