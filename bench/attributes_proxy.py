#!/usr/bin/env python3
"""Attribute classifiers on a proxy labelled by eye: which backbone, and how many crops are enough.

    PYTHONPATH=src .venv/bin/python bench/attributes_proxy.py            # ~2-4 min on 2 loaded cores

Data: test/data/ppe_proxy (212 person crops of samples/vtest.mp4 from `nano-vision attributes
collect`, labelled by looking: red_top / no_red_top on the torso crop, jeans / dark_trousers on
the person crop; 32 tracks). Backbones: the candidates cut by bench/attributes_backbones.sh-style
`extract` calls below, plus a colour-histogram baseline (no network). Every figure is split by
track. Learning curve: 20 random splits holding out ~1/3 of the tracks; N training crops drawn from
the rest. Prints markdown tables for docs/PERFORMANCE.md.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))
from nano_vision_ros.core.attributes.backbone import (
    BackboneSpec,
    FeatureExtractor,
    extract,
)
from nano_vision_ros.core.attributes.train import (
    cross_validate,
    fit_head,
    group_of,
    read_crops,
)

DATA = REPO / "test/data/ppe_proxy"
PROXIES = {"red_top": ("torso", 1), "jeans": ("person", 2)}  # proxy -> (region folder, labels.csv column)


def candidates(tmp: Path) -> dict[str, Path | None]:
    out: dict[str, Path | None] = {"mobilenetv2 (shipped)": REPO / "models/attr_backbone_mobilenetv2.onnx"}
    if not out["mobilenetv2 (shipped)"].is_file():
        s = BackboneSpec("mobilenetv2_facemask", 224, 224, "nhwc", "rgb")
        out["mobilenetv2 (shipped)"] = extract(
            str(REPO / "models/face_mask_mobilenetv2.onnx"),
            str(tmp / "mnv2.onnx"),
            s,
            "input",
            "model_1/flatten_1/Reshape:0",
        )
    cn = REPO.parent / "shared/models/centernet_mbv3_512_coco.onnx"
    if cn.is_file():
        for size in (224, 128):
            s = BackboneSpec(f"mobilenetv3_centernet_{size}", size, size, "nhwc", "rgb", (0, 0, 0), (1, 1, 1), batch=1)
            out[f"mobilenetv3 centernet {size}"] = extract(
                str(cn),
                str(tmp / f"mbv3_{size}.onnx"),
                s,
                "tower_0/images:0",
                "tower_0/MobilenetV3/expanded_conv_14/add:0",
                pool=True,
            )
    out["colour histogram (no network)"] = None
    return out


def hist_features(crops: list[np.ndarray]) -> np.ndarray:
    out = []
    for c in crops:
        hsv = cv2.cvtColor(cv2.resize(c, (32, 64)), cv2.COLOR_BGR2HSV)
        h = cv2.calcHist([hsv], [0, 1, 2], None, [8, 4, 4], [0, 180, 0, 256, 0, 256]).ravel()
        out.append(h / max(1.0, h.sum()))
    return np.asarray(out, np.float32)


def learning_curve(x, y, groups, sizes, splits=20, seed=0):
    rng = np.random.default_rng(seed)
    uniq = sorted(set(groups))
    garr = np.asarray(groups)
    res = {n: [] for n in sizes}
    for _ in range(splits):
        test_g = set(rng.choice(uniq, size=max(1, len(uniq) // 3), replace=False).tolist())
        test = np.flatnonzero(np.isin(garr, list(test_g)))
        train = np.setdiff1d(np.arange(len(y)), test)
        if len(set(y[test].tolist())) < 2:
            continue
        for n in sizes:
            pick = rng.permutation(train)[: min(n, len(train))]
            if len(set(y[pick].tolist())) < 2:
                continue
            head = fit_head(x[pick], y[pick], int(y.max()) + 1)
            pred = head.proba(x[test]).argmax(1)
            rec = [float((pred[y[test] == k] == k).mean()) for k in set(y[test].tolist())]
            res[n].append((float((pred == y[test]).mean()), float(np.mean(rec)), len(pick)))
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--splits", type=int, default=20)
    args = ap.parse_args()
    with open(DATA / "labels.csv") as f:
        rows = list(csv.reader(f))[1:]
    print(f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory() as tmp:
        cands = candidates(Path(tmp))
        table, curve = [], []
        for bname, path in cands.items():
            ext = FeatureExtractor.open(str(path), threads=1) if path else None
            for proxy, (region, col) in PROXIES.items():
                files = [DATA / region / f"{r[0]}_{region}.jpg" for r in rows]
                classes = sorted({r[col] for r in rows})
                y = np.array([classes.index(r[col]) for r in rows])
                groups = [group_of(f) for f in files]
                crops = read_crops(files)
                t0 = time.perf_counter()
                x = ext.run(crops, 16) if ext else hist_features(crops)
                ms = (time.perf_counter() - t0) * 1e3 / len(crops)
                cv = cross_validate(x, y, groups, len(classes), 5)
                table.append(
                    (
                        bname,
                        proxy,
                        len(y),
                        len(set(groups)),
                        cv.accuracy,
                        cv.balanced_accuracy,
                        ms,
                        x.shape[1],
                        path.stat().st_size / 1e6 if path else 0.0,
                    )
                )
                for n, vals in learning_curve(x, y, groups, (25, 50, 100, 200), args.splits).items():
                    if vals:
                        a = np.array(vals)
                        curve.append(
                            (
                                bname,
                                proxy,
                                n,
                                int(a[:, 2].mean()),
                                a[:, 0].mean(),
                                a[:, 0].min(),
                                a[:, 0].max(),
                                a[:, 1].mean(),
                            )
                        )
    print(
        "\n| backbone | proxy | crops | tracks | CV accuracy (5 folds by track) | balanced | ms/crop (1 thread) | features | MB |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for t in table:
        print(f"| {t[0]} | {t[1]} | {t[2]} | {t[3]} | {t[4]:.1%} | {t[5]:.1%} | {t[6]:.1f} | {t[7]} | {t[8]:.1f} |")
    print("\n| backbone | proxy | training crops asked (used) | held-out accuracy mean (min-max) | balanced mean |")
    print("| --- | --- | --- | --- | --- |")
    for c in curve:
        print(f"| {c[0]} | {c[1]} | {c[2]} ({c[3]}) | {c[4]:.1%} ({c[5]:.0%}-{c[6]:.0%}) | {c[7]:.1%} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
