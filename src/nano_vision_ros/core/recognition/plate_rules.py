"""Chinese licence plate rules: format, validation, positional OCR fixes, colour.

Ordinary plates: province character + issuing-office letter + 5 characters (7 in all).
New-energy plates: province + letter + 6 characters, the first or last of them D/F (8 in all).
Letters I and O are never used (they are 1 and 0), which is what makes positional fixes safe.
"""

from __future__ import annotations

import re

import cv2
import numpy as np

#: the 31 mainland province-level abbreviations
PROVINCES = "京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼"
LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"  # no I, O
DIGITS = "0123456789"
ALNUM = LETTERS + DIGITS
#: last character of special ordinary plates (trailer, learner, police, consulate, Hong Kong, Macau)
SPECIAL_LAST = "挂学警领港澳"
#: characters of the other special layouts: embassy (使 + 6 digits), emergency (... + 应急)
SPECIAL_OTHER = "使应急"
#: the default LPRNet-style alphabet: provinces, digits, letters (blank is index 0 or last, configurable)
LPR_ALPHABET = PROVINCES + DIGITS + LETTERS

_P = f"[{PROVINCES}]"
_L = f"[{LETTERS}]"
_A = f"[{ALNUM}]"
ORDINARY_RE = re.compile(f"^{_P}{_L}{_A}{{4}}[{ALNUM}{SPECIAL_LAST}]$")
NEW_ENERGY_RE = re.compile(f"^{_P}{_L}(?:[DF]{_A}[0-9]{{4}}|[0-9]{{5}}[DF])$")
EMBASSY_RE = re.compile("^使[0-9]{6}$")
EMERGENCY_RE = re.compile(f"^{_P}{_L}{_A}{{4}}应急$")
#: special plates by their last (or first) character: GA 36 kinds
SPECIAL_KIND = {"挂": "trailer", "学": "learner", "警": "police", "领": "consulate", "港": "hong_kong", "澳": "macau"}

_TO_LETTER = {"0": "D", "1": "J", "2": "Z", "4": "A", "5": "S", "6": "G", "8": "B", "O": "D", "I": "J"}
_TO_ALNUM = {"O": "0", "I": "1"}
_TO_DIGIT = {
    "O": "0",
    "Q": "0",
    "D": "0",
    "I": "1",
    "L": "1",
    "J": "1",
    "Z": "2",
    "S": "5",
    "B": "8",
    "G": "6",
    "T": "7",
}
_STRIP = " ·.-_:·•，,。'\"|()[]"


def plate_type(text: str) -> str | None:
    """'ordinary', 'new_energy', 'embassy', 'emergency' or None if `text` is not a valid plate
    (ordinary includes the special last characters 挂学警领港澳: see `special_kind`; Hong Kong and
    Macau plates are 粤Z only)."""
    if ORDINARY_RE.match(text):
        return "ordinary" if text[-1] not in "港澳" or text.startswith("粤Z") else None
    if NEW_ENERGY_RE.match(text):
        return "new_energy"
    if EMBASSY_RE.match(text):
        return "embassy"
    if EMERGENCY_RE.match(text):
        return "emergency"
    return None


def special_kind(text: str) -> str:
    """trailer / learner / police / consulate / hong_kong / macau / embassy / emergency, or ''."""
    t = plate_type(text)
    if t in ("embassy", "emergency"):
        return t
    return SPECIAL_KIND.get(text[-1:], "") if t == "ordinary" else ""


def is_valid(text: str) -> bool:
    return plate_type(text) is not None


def normalize(raw: str) -> str:
    """Upper-case, drop separators (the dot after the letter, spaces, dashes), full-width -> ASCII."""
    out = []
    for ch in raw:
        code = ord(ch)
        if 0xFF01 <= code <= 0xFF5E:  # full-width ASCII
            ch = chr(code - 0xFEE0)
        if ch in _STRIP or ch.isspace():
            continue
        out.append(ch.upper())
    return "".join(out)


def fix_confusions(text: str) -> str:
    """Positional O/0, I/1 (and similar) fixes: letter at position 2, no I/O after it, and the
    digit-only positions of new-energy plates. Returns the text unchanged if no rule applies."""
    if text[:1] == "使" and len(text) == 7:  # embassy: six digits
        return "使" + "".join(_TO_DIGIT.get(c, c) for c in text[1:])
    if text.endswith("应急") and len(text) == 8 and text[0] in PROVINCES:
        return text[0] + _TO_LETTER.get(text[1], text[1]) + "".join(_TO_ALNUM.get(c, c) for c in text[2:6]) + "应急"
    if len(text) == 7 and text[1:2] == "Z" and text[-1] in "港澳" and text[0] in PROVINCES + "使":
        text = "粤" + text[1:]  # a constraint, not a guess: Hong Kong / Macau plates are issued as 粤Z only
    if len(text) not in (7, 8) or text[0] not in PROVINCES:
        return text
    chars = list(text)
    chars[1] = _TO_LETTER.get(chars[1], chars[1])
    for i in range(2, len(chars)):
        chars[i] = _TO_ALNUM.get(chars[i], chars[i])
    fixed = "".join(chars)
    if len(fixed) == 8 and not NEW_ENERGY_RE.match(fixed):
        # small new-energy (D/F first): last 4 digits; large (D/F last): 5 digits first
        c = list(fixed)
        if c[2] in "DF":
            for i in range(4, 8):
                c[i] = _TO_DIGIT.get(c[i], c[i])
        else:
            c[7] = {"0": "D", "O": "D", "E": "F", "P": "F"}.get(c[7], c[7])
            if c[7] in "DF":
                for i in range(2, 7):
                    c[i] = _TO_DIGIT.get(c[i], c[i])
        cand = "".join(c)
        if NEW_ENERGY_RE.match(cand):
            fixed = cand
    return fixed


def clean_plate(raw: str) -> tuple[str, bool]:
    """OCR output -> (plate text, valid). Separators dropped, positional fixes applied; if the
    reading carries extra characters around a valid plate (frame text), the plate is cut out."""
    text = fix_confusions(normalize(raw))
    if is_valid(text):
        return text, True
    for n in (8, 7):  # a valid plate inside a longer reading (frame text, a border read as 1)
        for i in range(max(0, len(text) - n) + 1):
            cand = fix_confusions(text[i : i + n])
            if len(text) > n and is_valid(cand):
                return cand, True
    return text, False


# --- colour ------------------------------------------------------------------------------------
COLOURS = ("blue", "yellow", "green", "white", "black")


def plate_colour(crop_bgr: np.ndarray) -> tuple[str, dict[str, float]]:
    """Background colour of a plate crop from HSV statistics: share of pixels in each hue band
    (blue 100-130, yellow 15-35, green 35-90, with saturation and value high enough), else white
    (bright, unsaturated) or black (dark). Returns (colour, {colour: share})."""
    if crop_bgr.size == 0:
        return "unknown", {}
    img = cv2.resize(crop_bgr, (96, 32), interpolation=cv2.INTER_AREA)
    if img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    hsv = cv2.cvtColor(img, cv2.COLOR_BGR2HSV)
    h, s, v = hsv[..., 0].astype(np.int32), hsv[..., 1].astype(np.int32), hsv[..., 2].astype(np.int32)
    n = float(h.size)
    chroma = (s >= 70) & (v >= 60)
    share = {
        "blue": float(np.count_nonzero(chroma & (h >= 100) & (h <= 130))) / n,
        "yellow": float(np.count_nonzero(chroma & (h >= 15) & (h < 35))) / n,
        "green": float(np.count_nonzero((s >= 40) & (v >= 60) & (h >= 35) & (h <= 90))) / n,
        "white": float(np.count_nonzero((s < 50) & (v >= 150))) / n,
        "black": float(np.count_nonzero(v < 70)) / n,
    }
    chromatic = max(("blue", "yellow", "green"), key=share.__getitem__)
    if share[chromatic] >= 0.2:
        return chromatic, share
    return ("white" if share["white"] >= share["black"] else "black"), share
