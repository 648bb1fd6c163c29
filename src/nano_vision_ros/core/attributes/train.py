"""Training an attribute head on frozen backbone features, on the board's CPU, in seconds.

Data: a folder with one sub-folder per class (``helmet/``, ``no_helmet/``…) of crops, as sorted from
``collect``. Head: multinomial logistic regression (L2, L-BFGS from scipy, features standardised)
— a few thousand weights, so a few hundred crops are enough and nothing over-fits for long.
Cross-validation splits by *track* (the ``_t<id>_`` in collect's file names), so crops of one person
never sit on both sides: the figure is what a new person would get. The result is ONE ONNX file:
the backbone graph with the head appended (Gemm + Softmax, standardisation folded into the weights),
class map, region and card in its metadata (``nano_vision.attribute``).
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from nano_vision_ros.core.attributes.backbone import (
    DEFAULT_BACKBONE,
    META_KEY,
    FeatureExtractor,
)
from nano_vision_ros.core.attributes.collect import image_files
from nano_vision_ros.core.errors import ConfigError

log = logging.getLogger(__name__)
ATTR_KEY = "nano_vision.attribute"
_TRACK = re.compile(r"^(?P<cam>.+?)_[\d.]+_t(?P<tid>\d+)_")


@dataclass
class Dataset:
    classes: list[str]
    files: list[Path]
    y: np.ndarray  # class index per file
    groups: list[str]  # track (or file) per file: CV never splits a group


def group_of(path: Path) -> str:
    """The track a crop came from (collect's names: ``<camera>_<stamp>_t<id>_<region>``), else the file."""
    m = _TRACK.match(path.name)
    return f"{m['cam']}:t{m['tid']}" if m else path.stem


def load_dataset(folder: str | Path, classes: list[str] | None = None) -> Dataset:
    """Class folders under `folder` (sorted names = class order unless `classes` fixes it)."""
    root = Path(folder)
    if not root.is_dir():
        raise ConfigError(f"{folder}: not a folder")
    found = sorted(d.name for d in root.iterdir() if d.is_dir() and image_files(d))
    classes = list(classes) if classes else found
    missing = [c for c in classes if c not in found]
    if missing:
        raise ConfigError(
            f"{folder}: no crops for class(es) {', '.join(missing)} (found: {', '.join(found) or 'none'})"
        )
    if len(classes) < 2:
        raise ConfigError(f"{folder}: need at least two class folders with crops (found: {', '.join(found) or 'none'})")
    files, y, groups = [], [], []
    for k, c in enumerate(classes):
        for f in image_files(root / c):
            files.append(f)
            y.append(k)
            groups.append(group_of(f))
    return Dataset(classes, files, np.asarray(y, np.int64), groups)


def read_crops(files: list[Path]) -> list[np.ndarray]:
    out = []
    for f in files:
        img = cv2.imread(str(f), cv2.IMREAD_COLOR)
        if img is None:
            raise ConfigError(f"{f}: not an image OpenCV can read")
        out.append(img)
    return out


def features_of(
    extractor: FeatureExtractor, files: list[Path], progress: Callable[..., Any] | None = None, batch: int = 16
) -> np.ndarray:
    bar = progress(total=len(files), unit="crop", desc="features") if progress else None
    out = []
    try:
        for s in range(0, len(files), batch):
            out.append(extractor.run(read_crops(files[s : s + batch]), batch))
            if bar is not None:
                bar.update(len(out[-1]))
    finally:
        if bar is not None:
            bar.close()
    return np.concatenate(out) if out else np.zeros((0, extractor.spec.features), np.float32)


@dataclass
class Head:
    """Softmax regression on standardised features: p = softmax(((x - mu) / sd) @ W + b)."""

    W: np.ndarray
    b: np.ndarray
    mu: np.ndarray
    sd: np.ndarray

    def proba(self, x: np.ndarray) -> np.ndarray:
        z = ((x - self.mu) / self.sd) @ self.W + self.b
        z -= z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    def folded(self) -> tuple[np.ndarray, np.ndarray]:
        """(W', b') with the standardisation folded in: x @ W' + b' (what the ONNX Gemm holds)."""
        W = self.W / self.sd[:, None]
        return W.astype(np.float32), (self.b - (self.mu / self.sd) @ self.W).astype(np.float32)


def fit_head(x: np.ndarray, y: np.ndarray, n_classes: int, l2: float = 1.0) -> Head:
    """L2-regularised multinomial logistic regression (class-balanced weights), L-BFGS."""
    from scipy.optimize import minimize

    mu = x.mean(axis=0)
    sd = x.std(axis=0) + 1e-3
    xs = (x - mu) / sd
    n, d = xs.shape
    Y = np.eye(n_classes)[y]
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    w_sample = (n / (n_classes * np.maximum(counts, 1)))[y]

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        W = theta[: d * n_classes].reshape(d, n_classes)
        b = theta[d * n_classes :]
        z = xs @ W + b
        z -= z.max(axis=1, keepdims=True)
        lse = np.log(np.exp(z).sum(axis=1, keepdims=True))
        logp = z - lse
        nll = -(w_sample * (Y * logp).sum(axis=1)).sum() / n
        g = (np.exp(logp) - Y) * w_sample[:, None] / n
        gW = xs.T @ g + l2 * W / n
        return nll + 0.5 * l2 * float((W * W).sum()) / n, np.r_[gW.ravel(), g.sum(axis=0)]

    theta0 = np.zeros(d * n_classes + n_classes)
    res = minimize(loss, theta0, jac=True, method="L-BFGS-B", options={"maxiter": 500})
    W = res.x[: d * n_classes].reshape(d, n_classes)
    return Head(W, res.x[d * n_classes :], mu, sd)


def group_folds(groups: list[str], y: np.ndarray, k: int, seed: int = 0) -> list[np.ndarray]:
    """k folds of sample indexes, whole groups per fold, balanced by size (largest first)."""
    uniq = sorted(set(groups))
    rng = np.random.default_rng(seed)
    rng.shuffle(uniq)
    sizes = {g: 0 for g in uniq}
    for g in groups:
        sizes[g] += 1
    folds: list[list[str]] = [[] for _ in range(k)]
    load = [0] * k
    for g in sorted(uniq, key=lambda g: -sizes[g]):
        j = int(np.argmin(load))
        folds[j].append(g)
        load[j] += sizes[g]
    idx = np.arange(len(groups))
    garr = np.asarray(groups)
    return [idx[np.isin(garr, f)] for f in folds if f]


def confusion(y_true: np.ndarray, y_pred: np.ndarray, n: int) -> np.ndarray:
    cm = np.zeros((n, n), np.int64)
    for t, p in zip(y_true, y_pred):
        cm[t, p] += 1
    return cm


@dataclass
class CvResult:
    accuracy: float
    balanced_accuracy: float
    confusion: np.ndarray
    folds: int
    groups: int


def cross_validate(
    x: np.ndarray, y: np.ndarray, groups: list[str], n_classes: int, k: int = 5, l2: float = 1.0, seed: int = 0
) -> CvResult:
    """Grouped k-fold: each fold's tracks are predicted by a head trained on the other tracks."""
    k = max(2, min(k, len(set(groups))))
    pred = np.full(len(y), -1)
    for test in group_folds(groups, y, k, seed):
        train = np.setdiff1d(np.arange(len(y)), test)
        if len(set(y[train].tolist())) < 2:
            continue  # a fold holding a whole class: nothing to learn it from
        head = fit_head(x[train], y[train], n_classes, l2)
        pred[test] = head.proba(x[test]).argmax(axis=1)
    ok = pred >= 0
    cm = confusion(y[ok], pred[ok], n_classes)
    return CvResult(*scores(cm), cm, k, len(set(groups)))


def scores(cm: np.ndarray) -> tuple[float, float]:
    """(accuracy, balanced accuracy = mean per-class recall) of a confusion matrix."""
    total = cm.sum()
    acc = float(np.trace(cm) / total) if total else 0.0
    rec = [cm[i, i] / cm[i].sum() for i in range(len(cm)) if cm[i].sum()]
    return acc, float(np.mean(rec)) if rec else 0.0


def confusion_text(cm: np.ndarray, classes: list[str]) -> str:
    w = max(8, *(len(c) for c in classes)) + 1
    lines = ["true \\ predicted".ljust(w) + "".join(c[: w - 1].rjust(w) for c in classes)]
    for i, c in enumerate(classes):
        lines.append(c.ljust(w) + "".join(str(int(v)).rjust(w) for v in cm[i]))
    return "\n".join(lines)


def confusion_png(cm: np.ndarray, classes: list[str], path: Path, title: str) -> Path:
    """The confusion matrix as a picture (rows: true class, columns: predicted; share of the row)."""
    n = len(classes)
    cell, left, top = 90, 150, 60
    img = np.full((top + n * cell + 40, left + n * cell + 20, 3), 255, np.uint8)
    cv2.putText(img, title[:60], (8, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(img, "predicted ->", (left, 48), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (80, 80, 80), 1, cv2.LINE_AA)
    for i in range(n):
        row = cm[i].sum() or 1
        cv2.putText(
            img,
            classes[i][:18],
            (6, top + i * cell + cell // 2 + 5),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.45,
            (0, 0, 0),
            1,
            cv2.LINE_AA,
        )
        cv2.putText(
            img,
            classes[i][:10],
            (left + i * cell + 4, top + n * cell + 18),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.4,
            (0, 0, 0),
            1,
            cv2.LINE_AA,
        )
        for j in range(n):
            share = cm[i, j] / row
            shade = int(255 - 200 * share)
            x0, y0 = left + j * cell, top + i * cell
            cv2.rectangle(img, (x0, y0), (x0 + cell - 2, y0 + cell - 2), (255, shade, shade), -1)
            col = (255, 255, 255) if share > 0.6 else (0, 0, 0)
            cv2.putText(img, str(int(cm[i, j])), (x0 + 8, y0 + 38), cv2.FONT_HERSHEY_SIMPLEX, 0.8, col, 2, cv2.LINE_AA)
            cv2.putText(img, f"{share:.0%}", (x0 + 8, y0 + 66), cv2.FONT_HERSHEY_SIMPLEX, 0.5, col, 1, cv2.LINE_AA)
    cv2.imwrite(str(path), img)
    return path


def compose(backbone_path: str, head: Head, info: dict[str, Any], out: Path) -> Path:
    """One ONNX file: backbone + Gemm + Softmax (output ``probs``), `info` in the metadata."""
    import onnx
    from onnx import helper, numpy_helper

    from nano_vision_ros.core.paths import resolve

    model = onnx.load(str(resolve(backbone_path)))
    g = model.graph
    feat = g.output[0].name
    W, b = head.folded()
    g.initializer.extend([numpy_helper.from_array(W, "attr_head_W"), numpy_helper.from_array(b, "attr_head_b")])
    g.node.extend(
        [
            helper.make_node("Gemm", [feat, "attr_head_W", "attr_head_b"], ["attr_logits"]),
            helper.make_node("Softmax", ["attr_logits"], ["probs"], axis=1),
        ]
    )
    del g.output[:]
    g.output.append(helper.make_tensor_value_info("probs", onnx.TensorProto.FLOAT, [None, W.shape[1]]))
    keep = [p for p in model.metadata_props if p.key == META_KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(keep)
    model.metadata_props.add(key=ATTR_KEY, value=json.dumps(info, sort_keys=True))
    model.producer_name = "nano-vision attributes train"
    onnx.checker.check_model(model)
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(out))
    return out


@dataclass
class TrainResult:
    model: Path
    card: Path
    confusion_png: Path
    cv: CvResult
    info: dict[str, Any] = field(default_factory=dict)


def train(
    folder: str | Path,
    name: str,
    out_dir: str | Path,
    *,
    region: str = "torso",
    backbone: str = DEFAULT_BACKBONE,
    version: str = "",
    folds: int = 5,
    l2: float = 1.0,
    progress: Callable[..., Any] | None = None,
    threads: int = 2,
) -> TrainResult:
    """Features, grouped cross-validation, final head on all crops, one ONNX + card + confusion PNG."""
    import time

    from nano_vision_ros.core.attributes.regions import REGIONS

    if region not in REGIONS:
        raise ConfigError(f"region {region!r}: one of {', '.join(REGIONS)}")
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", name):
        raise ConfigError(f"name {name!r}: letters, digits, _ . - (at most 64)")
    t0 = time.monotonic()
    ds = load_dataset(folder)
    ext = FeatureExtractor.open(backbone, threads)
    x = features_of(ext, ds.files, progress)
    t_feat = time.monotonic() - t0
    cv = cross_validate(x, ds.y, ds.groups, len(ds.classes), folds, l2)
    head = fit_head(x, ds.y, len(ds.classes), l2)
    now = _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0)
    version = version or now.strftime("%Y%m%dT%H%M%SZ")
    counts = {c: int((ds.y == k).sum()) for k, c in enumerate(ds.classes)}
    info = {
        "name": name,
        "version": version,
        "classes": ds.classes,
        "region": region,
        "backbone": ext.spec.name,
        "trained": now.isoformat(),
        "data": str(Path(folder).resolve()),
        "crops": counts,
        "tracks": len(set(ds.groups)),
        "cv": {
            "folds": cv.folds,
            "accuracy": round(cv.accuracy, 4),
            "balanced_accuracy": round(cv.balanced_accuracy, 4),
            "confusion": cv.confusion.tolist(),
            "split": "by track",
        },
        "head": {"type": "softmax regression", "l2": l2},
    }
    out = Path(out_dir)
    model = compose(backbone, head, info, out / f"{name}.onnx")
    png = confusion_png(
        cv.confusion,
        ds.classes,
        out / f"{name}.confusion.png",
        f"{name}: cross-validated by track, acc {cv.accuracy:.1%}",
    )
    card = out / f"{name}.onnx.md"
    card.write_text(_card(info, cv, ds.classes, model, time.monotonic() - t0, t_feat))
    return TrainResult(model, card, png, cv, info)


def _card(info: dict[str, Any], cv: CvResult, classes: list[str], model: Path, seconds: float, t_feat: float) -> str:
    import hashlib

    sha = hashlib.sha256(model.read_bytes()).hexdigest()
    crops = ", ".join(f"{c} {n}" for c, n in info["crops"].items())
    return (
        f"# {model.name}\n\n"
        f"- What: attribute classifier `{info['name']}` version `{info['version']}`, classes {classes} "
        f"(output `probs` [N,{len(classes)}], softmax, in this order), run on the `{info['region']}` region of person boxes.\n"
        f"- Made by: `nano-vision attributes train` on {info['trained']} in {seconds:.0f} s "
        f"({t_feat:.0f} s of it backbone features), head: softmax regression (L2 {info['head']['l2']}) on frozen "
        f"`{info['backbone']}` features.\n"
        f"- Data: `{info['data']}`: {crops} crops from {info['tracks']} tracks.\n"
        f"- Cross-validated ({cv.folds} folds, split by track: no track on both sides): accuracy "
        f"{cv.accuracy:.1%}, balanced accuracy {cv.balanced_accuracy:.1%}.\n"
        f"- sha256: `{sha}`\n"
        f"- License: the backbone's (see its models/*.onnx.md); the head is trained on your data.\n\n"
        f"Confusion matrix (rows true, columns predicted):\n\n```\n{confusion_text(cv.confusion, classes)}\n```\n\n"
        "A site's real accuracy is what `nano-vision attributes eval` shows on held-out crops of that site.\n"
    )
