"""Hard SYNTHETIC gate-camera scenes for bench/plates.py (rendered here, never shipped as data).

Plates follow the GA 36 layouts (mm): single row 440x140 (7 cells 45x90, a dot after the 2nd),
new-energy 480x140 (8 cells), double row 440x220 (top: province + letter 80x60; bottom: 5 cells
65x110). Special plates: 挂 (yellow, also double row), 学 (yellow), 警 (white, red 警), 使 (black,
red 使 + 6 digits), 领 (black), 港/澳 (black, 粤Z), 应急 (white, red 应急). Characters are the
WenQuanYi Zen Hei glyphs (Debian fonts-wqy-zenhei; the real plate font is not free) cut to their
ink and stretched to the cell, as plate characters are.

A scene is a 1280x720 frame: a yard background with signs (Chinese text that is not a plate),
a vehicle body with the plate 70-140 px wide, 3-D yaw up to +-25 deg (pitch/roll small), night
gain (dark, amplified noise), motion blur, dirt, JPEG 30-60.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

import cv2
import numpy as np

PROVINCES = "京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼"
LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"
DIGITS = "0123456789"
ALNUM = LETTERS + DIGITS
FONT = "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc"
W, H = 1280, 720
KINDS = ("blue", "yellow", "yellow_double", "green", "special")
RED = (200, 20, 20)
_BG = {
    "blue": ((20, 70, 200), (20, 70, 200), (250, 250, 250)),
    "yellow": ((245, 195, 20), (245, 195, 20), (15, 15, 15)),
    "green": ((225, 245, 230), (70, 190, 100), (15, 15, 15)),
    "white": ((240, 240, 240), (240, 240, 240), (15, 15, 15)),
    "black": ((20, 20, 20), (20, 20, 20), (245, 245, 245)),
}
_glyphs: dict[str, object] = {}


@dataclass
class Plate:
    text: str
    kind: str  # blue yellow yellow_double green special
    colour: str
    double: bool
    image: np.ndarray = field(repr=False)  # BGR


def _glyph(ch: str):
    from PIL import Image, ImageDraw, ImageFont

    if ch not in _glyphs:
        font = ImageFont.truetype(FONT, 120)
        g = Image.new("L", (170, 170), 0)
        ImageDraw.Draw(g).text((10, 0), ch, font=font, fill=255)
        _glyphs[ch] = g.crop(g.getbbox())
    return _glyphs[ch]


def _draw_cells(img, cells: list[tuple[str, float, float, float, float, tuple]]) -> None:
    from PIL import Image

    for ch, x, y, cw, chh, colour in cells:
        gw = cw * 0.35 if ch == "1" else cw
        g = _glyph(ch).resize((max(1, round(gw)), max(1, round(chh))), Image.BILINEAR)
        img.paste(Image.new("RGB", g.size, colour), (round(x + (cw - gw) / 2), round(y)), g)


def render(text: str, colour: str, double: bool = False, height: int = 140, red: str = "") -> np.ndarray:
    """Plate image (BGR) in its layout; characters in `red` are drawn red (警 使 应急)."""
    from PIL import Image, ImageDraw

    top, bottom, fg = _BG[colour]
    s = height / (220.0 if double else 140.0)
    wmm = 480 if (len(text) == 8 and not double) else 440
    w = round(wmm * s)
    grad = np.linspace(0, 1, height)[:, None, None]
    arr = np.repeat(np.array(top)[None, None] * (1 - grad) + np.array(bottom)[None, None] * grad, w, axis=1)
    img = Image.fromarray(arr.astype(np.uint8), "RGB")
    d = ImageDraw.Draw(img)
    d.rounded_rectangle([2, 2, w - 3, height - 3], radius=max(2, int(8 * s)), outline=fg, width=max(1, int(4 * s)))
    col = lambda ch: RED if ch in red else fg
    cells = []
    if double:  # top: province + letter; bottom: the rest (5 cells)
        for i, ch in enumerate(text[:2]):
            cells.append((ch, (110 + i * 140) * s, 15 * s, 80 * s, 60 * s, col(ch)))
        rest = text[2:]
        cw, gap = 65 * s, 15 * s
        x0 = (w - (len(rest) * cw + (len(rest) - 1) * gap)) / 2
        for i, ch in enumerate(rest):
            cells.append((ch, x0 + i * (cw + gap), 95 * s, cw, 110 * s, col(ch)))
    else:
        cw, chh, gap = 45 * s, 90 * s, 12 * s
        x = (15.5 if len(text) == 7 else 14) * s
        for i, ch in enumerate(text):
            cells.append((ch, x, 25 * s, cw, chh, col(ch)))
            x += cw + gap
            if i == 1 and text[0] != "使":
                d.ellipse([x - gap / 2 + 2 * s, 65 * s, x - gap / 2 + 12 * s, 75 * s], fill=fg)
                x += 22 * s
    _draw_cells(img, cells)
    return cv2.cvtColor(np.asarray(img), cv2.COLOR_RGB2BGR)


def _tail(rng: random.Random, n: int, digits_only: bool = False) -> str:
    return "".join(rng.choice(DIGITS if digits_only else ALNUM) for _ in range(n))


def random_plate(rng: random.Random, kind: str) -> Plate:
    p, letter = rng.choice(PROVINCES), rng.choice(LETTERS)
    if kind == "blue":
        t = p + letter + _tail(rng, 5)
        return Plate(t, kind, "blue", False, render(t, "blue"))
    if kind == "yellow":
        t = p + letter + _tail(rng, 5)
        return Plate(t, kind, "yellow", False, render(t, "yellow"))
    if kind == "yellow_double":
        t = p + letter + _tail(rng, 5)
        return Plate(t, kind, "yellow", True, render(t, "yellow", double=True, height=220))
    if kind == "green":
        t = (
            p + letter + rng.choice("DF") + rng.choice(ALNUM) + _tail(rng, 4, True)
            if rng.random() < 0.5
            else p + letter + _tail(rng, 5, True) + rng.choice("DF")
        )
        return Plate(t, kind, "green", False, render(t, "green"))
    special = rng.choice(("挂", "挂2", "学", "警", "使", "领", "港澳", "应急"))
    if special in ("挂", "挂2"):
        t = p + letter + _tail(rng, 4, True) + "挂"
        dbl = special == "挂2"
        return Plate(t, kind, "yellow", dbl, render(t, "yellow", double=dbl, height=220 if dbl else 140))
    if special == "学":
        t = p + letter + _tail(rng, 4, True) + "学"
        return Plate(t, kind, "yellow", False, render(t, "yellow"))
    if special == "警":
        t = p + letter + _tail(rng, 4, True) + "警"
        return Plate(t, kind, "white", False, render(t, "white", red="警"))
    if special == "使":
        t = "使" + _tail(rng, 6, True)
        return Plate(t, kind, "black", False, render(t, "black", red="使"))
    if special == "领":
        t = p + letter + _tail(rng, 4, True) + "领"
        return Plate(t, kind, "black", False, render(t, "black"))
    if special == "港澳":
        t = "粤Z" + _tail(rng, 4) + rng.choice("港澳")
        return Plate(t, kind, "black", False, render(t, "black"))
    t = p + letter + _tail(rng, 4, True) + "应急"
    return Plate(t, kind, "white", False, render(t, "white", red="应急"))


# --- scenes -------------------------------------------------------------------------------------
SIGNS = ("施工重地", "注意安全", "闲人免进", "限速5公里", "出入口", "车辆登记处", "安全第一", "A区3号门", "2026年12月")


def background(rng: random.Random) -> np.ndarray:
    """A yard: sky/ground gradient, buildings, fences, signs with Chinese text (not plates)."""
    from PIL import Image, ImageDraw, ImageFont

    g = np.linspace(0, 1, H)[:, None, None]
    sky, ground = np.array([rng.randint(120, 200)] * 3), np.array([rng.randint(60, 120)] * 3)
    img = np.repeat(sky * (1 - g) + ground * g, W, axis=1).astype(np.uint8)
    for _ in range(rng.randint(4, 9)):
        x, y = rng.randint(0, W - 50), rng.randint(0, H // 2)
        c = tuple(rng.randint(40, 200) for _ in range(3))
        cv2.rectangle(img, (x, y), (x + rng.randint(60, 300), y + rng.randint(60, 300)), c, -1)
    for x in range(0, W, rng.randint(18, 40)):  # fence
        cv2.line(img, (x, H // 2), (x, H // 2 + 60), (90, 90, 90), 2)
    pil = Image.fromarray(img)
    d = ImageDraw.Draw(pil)
    font = ImageFont.truetype(FONT, rng.randint(20, 40))
    for _ in range(rng.randint(1, 3)):
        x, y = rng.randint(0, W - 220), rng.randint(10, H - 60)
        bgc = rng.choice([(200, 30, 30), (30, 60, 180), (240, 240, 240), (240, 200, 30)])
        txt = rng.choice(SIGNS)
        bb = d.textbbox((x, y), txt, font=font)
        d.rectangle([bb[0] - 6, bb[1] - 6, bb[2] + 6, bb[3] + 6], fill=bgc)
        d.text((x, y), txt, font=font, fill=(255, 255, 255) if bgc != (240, 240, 240) else (20, 20, 20))
    return np.asarray(pil).copy()


def _project(
    pw: float, ph: float, width_px: float, cx: float, cy: float, yaw: float, pitch: float, roll: float
) -> np.ndarray:
    """Corners (TL TR BR BL) of a pw x ph plate rotated in 3-D and projected to `width_px` wide."""
    pts = np.array([[-pw / 2, -ph / 2, 0], [pw / 2, -ph / 2, 0], [pw / 2, ph / 2, 0], [-pw / 2, ph / 2, 0]], float)
    cy_, sy_ = math.cos(yaw), math.sin(yaw)
    cp, sp = math.cos(pitch), math.sin(pitch)
    cr, sr = math.cos(roll), math.sin(roll)
    ry = np.array([[cy_, 0, sy_], [0, 1, 0], [-sy_, 0, cy_]])
    rx = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    rz = np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]])
    p3 = pts @ (rz @ rx @ ry).T
    z = p3[:, 2] + pw * 4.0  # camera at 4 plate widths: visible perspective
    f = 4.0
    q = p3[:, :2] * f / z[:, None]
    q -= q.mean(0)
    q *= width_px / (q[:, 0].max() - q[:, 0].min())
    return (q + [cx, cy]).astype(np.float32)


@dataclass
class Conditions:
    night: bool
    blur: float  # motion blur length px (0 = none)
    blur_angle: float
    dirt: bool
    jpeg: int
    yaw: float
    pitch: float
    roll: float


def random_conditions(rng: random.Random) -> Conditions:
    return Conditions(
        night=rng.random() < 0.3,
        blur=rng.choice([0, 0, 3, 5, 7, 9]),
        blur_angle=rng.uniform(-20, 20),
        dirt=rng.random() < 0.3,
        jpeg=rng.randint(30, 60),
        yaw=math.radians(rng.uniform(-25, 25)),
        pitch=math.radians(rng.uniform(-10, 10)),
        roll=math.radians(rng.uniform(-4, 4)),
    )


def _dirt(plate: np.ndarray, rng: random.Random) -> np.ndarray:
    out = plate.astype(np.float32)
    h, w = plate.shape[:2]
    mask = np.zeros((h, w), np.float32)
    for _ in range(rng.randint(3, 8)):
        cv2.ellipse(
            mask,
            (rng.randint(0, w), rng.randint(0, h)),
            (rng.randint(w // 30 + 2, w // 8), rng.randint(h // 12 + 2, h // 3)),
            rng.uniform(0, 180),
            0,
            360,
            rng.uniform(0.25, 0.6),
            -1,
        )
    mask = cv2.GaussianBlur(mask, (0, 0), max(1.0, w / 80))[..., None]
    mud = np.array([40, 60, 80], np.float32)
    return np.clip(out * (1 - mask) + mud * mask, 0, 255).astype(np.uint8)


def _vehicle(img: np.ndarray, quad: np.ndarray, rng: random.Random) -> np.ndarray:
    """Draws a vehicle body around the plate; returns its box x1 y1 x2 y2."""
    pw = quad[:, 0].max() - quad[:, 0].min()
    cx, cy = quad[:, 0].mean(), quad[:, 1].mean()
    vw = pw * rng.uniform(3.8, 5.0)
    vh = vw * rng.uniform(0.7, 0.95)
    x1, x2 = cx - vw / 2, cx + vw / 2
    y1, y2 = cy - vh * 0.7, cy + vh * 0.3
    body = tuple(rng.randint(30, 230) for _ in range(3))
    p = lambda a, b: (int(a), int(b))
    cv2.rectangle(img, p(x1, y1), p(x2, y2), body, -1)
    cv2.rectangle(
        img, p(x1 + vw * 0.1, y1 + vh * 0.05), p(x2 - vw * 0.1, y1 + vh * 0.35), tuple(c // 3 for c in body), -1
    )
    for k in range(4):  # grille
        yy = y1 + vh * (0.45 + 0.04 * k)
        cv2.line(img, p(cx - vw * 0.2, yy), p(cx + vw * 0.2, yy), tuple(min(255, c + 40) for c in body), 2)
    cv2.rectangle(img, p(x1 + vw * 0.03, y1 + vh * 0.45), p(x1 + vw * 0.2, y1 + vh * 0.55), (230, 230, 230), -1)
    cv2.rectangle(img, p(x2 - vw * 0.2, y1 + vh * 0.45), p(x2 - vw * 0.03, y1 + vh * 0.55), (230, 230, 230), -1)
    return np.array([max(0, x1), max(0, y1), min(W, x2), min(H, y2)], np.float32)


def compose(
    bg: np.ndarray, plate: Plate, width_px: float, cx: float, cy: float, cond: Conditions, rng: random.Random
) -> tuple[bytes, np.ndarray, np.ndarray]:
    """Frame as JPEG bytes, plate quad (4,2), vehicle box."""
    img = bg.copy()
    ph, pw = plate.image.shape[:2]
    quad = _project(pw, ph, width_px, cx, cy, cond.yaw, cond.pitch, cond.roll)
    vbox = _vehicle(img, quad, rng)
    src_img = _dirt(plate.image, rng) if cond.dirt else plate.image
    src = np.array([[0, 0], [pw - 1, 0], [pw - 1, ph - 1], [0, ph - 1]], np.float32)
    m = cv2.getPerspectiveTransform(src, quad)
    warped = cv2.warpPerspective(src_img, m, (W, H), flags=cv2.INTER_AREA)
    mask = cv2.warpPerspective(np.full((ph, pw), 255, np.uint8), m, (W, H), flags=cv2.INTER_AREA)[..., None] / 255.0
    out = img * (1 - mask) + warped * mask
    out = _degrade(out, cond, rng)
    ok, jpg = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, cond.jpeg])
    assert ok
    return jpg.tobytes(), quad, vbox


def _degrade(img: np.ndarray, cond: Conditions, rng: random.Random) -> np.ndarray:
    img = cv2.GaussianBlur(img.astype(np.float32), (0, 0), 0.6)
    if cond.blur > 0:
        k = np.zeros((int(cond.blur), int(cond.blur)), np.float32)
        k[int(cond.blur) // 2, :] = 1.0
        rot = cv2.getRotationMatrix2D((cond.blur / 2 - 0.5, cond.blur / 2 - 0.5), cond.blur_angle, 1.0)
        k = cv2.warpAffine(k, rot, k.shape[::-1])
        img = cv2.filter2D(img, -1, k / max(k.sum(), 1e-6))
    nr = np.random.default_rng(rng.randint(0, 2**31))
    if cond.night:  # low light: dark scene, sensor noise, then the camera's gain amplifies both
        dark = rng.uniform(0.18, 0.35)
        img = img * dark + nr.normal(0, rng.uniform(2.0, 4.0), img.shape)
        img = img * (0.9 / dark) * rng.uniform(0.5, 0.8)
    else:
        img = img + nr.normal(0, rng.uniform(2, 6), img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


@dataclass
class Frame:
    jpeg: bytes
    text: str  # "" = no plate
    kind: str
    quad: np.ndarray | None
    vehicle: np.ndarray | None
    group: int = -1  # pass id (-1 for stills)


def kind_for(i: int) -> str:
    """Kinds in the mix: 25 % double-row yellow, the rest spread over blue, yellow, green, special."""
    return (
        "yellow_double",
        "blue",
        "yellow",
        "yellow_double",
        "green",
        "blue",
        "yellow_double",
        "special",
        "yellow",
        "blue",
        "green",
        "special",
    )[i % 12]


def stills(n: int, seed: int = 1) -> list[Frame]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        plate = random_plate(rng, kind_for(i))
        width = rng.uniform(70, 140)
        cond = random_conditions(rng)
        jpg, quad, vbox = compose(
            background(rng), plate, width, rng.uniform(250, W - 250), rng.uniform(300, H - 120), cond, rng
        )
        out.append(Frame(jpg, plate.text, plate.kind, quad, vbox))
    return out


def empty_frames(n: int, seed: int = 2) -> list[Frame]:
    """Frames without plates: the yard with signs, sometimes a vehicle seen from the side (no plate)."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        img = background(rng).astype(np.float32)
        if rng.random() < 0.5:
            x, y = rng.randint(0, W - 500), rng.randint(250, H - 250)
            cv2.rectangle(
                img,
                (x, y),
                (x + rng.randint(250, 500), y + rng.randint(120, 220)),
                tuple(rng.randint(30, 230) for _ in range(3)),
                -1,
            )
        img = _degrade(img, random_conditions(rng), rng)
        _, jpg = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, rng.randint(30, 60)])
        out.append(Frame(jpg.tobytes(), "", "empty", None, None))
    return out


def passes(n: int, frames: int = 10, seed: int = 3) -> list[Frame]:
    """A vehicle approaching the gate: plate 70 -> 250 px wide over `frames` frames, drifting
    towards the camera's centre; conditions fixed per pass, blur varying per frame."""
    rng = random.Random(seed)
    out = []
    for g in range(n):
        plate = random_plate(rng, kind_for(g * 5 + 1))
        cond = random_conditions(rng)
        bg = background(rng)
        x0, y0 = rng.uniform(350, W - 350), rng.uniform(320, 420)
        vseed = rng.randint(0, 2**31)
        for k in range(frames):
            t = k / max(1, frames - 1)
            width = 70 + (250 - 70) * t
            c = Conditions(**{**cond.__dict__, "blur": rng.choice([0, 3, 5]) if cond.blur else 0})
            jpg, quad, vbox = compose(
                bg, plate, width, x0 + (W / 2 - x0) * t * 0.5, y0 + 180 * t, c, random.Random(vseed)
            )
            out.append(Frame(jpg, plate.text, plate.kind, quad, vbox, group=g))
    return out
