#!/usr/bin/env python3
"""ros.image.to_bgr cost per encoding, beside a plain numpy copy of the same frame (the floor).

    .venv/bin/python bench/image_to_bgr.py                 # 1280x720 and 1920x1080, 40 rounds
    .venv/bin/python bench/image_to_bgr.py --rounds 100 --sizes 1920x1080

Each encoding's message is built once from a real photo (../shared/samples/astronaut.png,
resized); one round converts every encoding once, in a shuffled order, so machine noise falls on
all of them alike. Printed: median and p90 ms per conversion, and the ratio to the copy floor.
check_image (what events_node runs in its subscription callback) is timed too.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import time
from pathlib import Path

import cv2
import numpy as np

from nano_vision_ros.ros import image as conv

REPO = Path(__file__).resolve().parent.parent


def _msgs(img: np.ndarray) -> dict:
    from sensor_msgs.msg import Image

    h, w = img.shape[:2]

    def raw(arr: np.ndarray, enc: str) -> Image:
        arr = np.ascontiguousarray(arr)
        m = Image(height=h, width=w, encoding=enc, step=arr.nbytes // arr.shape[0])
        m.data = arr.tobytes()
        return m

    i420 = cv2.cvtColor(img, cv2.COLOR_BGR2YUV_I420)
    uv = np.stack((i420[h : h + h // 4].reshape(h // 2, w // 2), i420[h + h // 4 :].reshape(h // 2, w // 2)), -1)
    bayer = img[..., 1].copy()
    bayer[0::2, 0::2], bayer[1::2, 1::2] = img[0::2, 0::2, 2], img[1::2, 1::2, 0]
    return {
        "bgr8": conv.numpy_to_imgmsg(img, "bgr8"),
        "rgb8": conv.numpy_to_imgmsg(img[..., ::-1].copy(), "rgb8"),
        "mono8": conv.numpy_to_imgmsg(img[..., 1].copy(), "mono8"),
        "mono16": conv.numpy_to_imgmsg(img[..., 1].astype(np.uint16) * 257, "mono16"),
        "yuyv": raw(cv2.cvtColor(img, cv2.COLOR_BGR2YUV_YUY2).reshape(h, w * 2), "yuyv"),
        "uyvy": raw(cv2.cvtColor(img, cv2.COLOR_BGR2YUV_UYVY).reshape(h, w * 2), "uyvy"),
        "nv12": raw(np.vstack((i420[:h], uv.reshape(h // 2, w))), "nv12"),
        "bayer_rggb8": raw(bayer, "bayer_rggb8"),
        "jpeg": conv.numpy_to_compressed(img, "jpeg", 90),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=40)
    ap.add_argument("--sizes", default="1280x720,1920x1080")
    args = ap.parse_args()
    photo = cv2.imread(str(REPO.parent / "shared" / "samples" / "astronaut.png"))
    cv2.setNumThreads(1)  # a node's worker converts on one thread
    out: dict = {"machine": f"{platform.node()} {platform.processor() or platform.machine()}", "rounds": args.rounds}
    for size in args.sizes.split(","):
        w, h = (int(v) for v in size.split("x"))
        img = cv2.resize(photo, (w, h))
        msgs = _msgs(img)
        ops = {f"to_bgr {k}": (lambda m=m: conv.to_bgr(m)) for k, m in msgs.items()}
        ops["check_image yuyv"] = lambda m=msgs["yuyv"]: conv.check_image(m)
        ops["copy floor (bgr8 bytes)"] = lambda img=img: img.copy()
        times: dict[str, list[float]] = {k: [] for k in ops}
        for _ in range(args.rounds):
            names = list(ops)
            random.shuffle(names)
            for k in names:
                t0 = time.perf_counter()
                ops[k]()
                times[k].append((time.perf_counter() - t0) * 1000.0)
        floor = float(np.median(times["copy floor (bgr8 bytes)"]))
        rows = {
            k: {
                "median_ms": round(float(np.median(v)), 3),
                "p90_ms": round(float(np.percentile(v, 90)), 3),
                "x_copy": round(float(np.median(v)) / floor, 2),
            }
            for k, v in times.items()
        }
        out[size] = rows
        print(f"\n{size} ({args.rounds} rounds; copy floor {floor:.3f} ms)")
        for k, r in rows.items():
            print(f"  {k:26s} median {r['median_ms']:8.3f} ms  p90 {r['p90_ms']:8.3f} ms  x{r['x_copy']:.2f} copy")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
