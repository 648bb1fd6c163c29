#!/usr/bin/env python3
"""Detector pipeline speed: per model and backend, fps and per-stage time (pre, infer, post,
track, publish) beside raw ``backend.infer`` on the same tensor (the floor).

    .venv/bin/python bench/detector.py                 # CPU backends here
    .venv/bin/python bench/detector.py --gpu           # + CuPy / pycuda pre-processing, ORT CUDA if present
    .venv/bin/python bench/detector.py --cadence       # CPU cores at a camera cadence, ORT spinning on vs off
    .venv/bin/python bench/detector.py --cameras 2     # throughput: one detector for 2 cameras vs one per camera

Overhead = (pipeline - raw inference) / raw inference, at batch 1. Figures go to
docs/performance/detector.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))

from nano_vision_ros.core.detection.preprocess import Preprocessor

SAMPLE = REPO.parent / "shared" / "samples" / "dog.jpg"
CENTERNET = REPO.parent / "shared" / "models" / "centernet_mbv3_512_coco.onnx"


def timed(fn, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1e3)
    return out


def med(xs: list[float]) -> float:
    return statistics.median(xs)


def publish_fn():
    """Detections -> vision_msgs message (the node's publish work minus DDS), if ROS imports here."""
    try:
        from std_msgs.msg import Header

        from nano_vision_ros.ros.detections import to_msg
    except ImportError:  # no ROS on this machine (the GPU box)
        return None
    header = Header(frame_id="cam0")
    return lambda dets: to_msg(dets, header)


def bench_pipeline(task: str, backend: str, device: str, model: str | None, n: int, image: np.ndarray) -> dict | None:
    from nano_vision_ros.core.detection.profiles import build_detector, load_profile
    from nano_vision_ros.core.tracking import ByteTracker

    try:
        det = build_detector(load_profile(task), model=model, backend=backend, device=device)
    except Exception as err:  # noqa: BLE001 - report and go on
        print(f"  {task} / {backend} {device}: not run ({type(err).__name__}: {str(err)[:120]})")
        return None
    det.warmup(5)
    tracker = ByteTracker()
    pub = publish_fn()
    stages: dict[str, list[float]] = {k: [] for k in ("pre", "infer", "post", "track", "publish", "total", "raw")}
    tensor, _ = det.preprocessor(image)
    feeds = {det._input_name: tensor.copy(), **det._extra}
    # Pipeline frame and raw inference alternate, so both see the same machine load (CI VMs are shared).
    for _ in range(n):
        t0 = time.perf_counter()
        dets = det.detect(image)
        t1 = time.perf_counter()
        dets = tracker.update(dets)
        t2 = time.perf_counter()
        if pub is not None:
            pub(dets)
        t3 = time.perf_counter()
        det.backend.infer(feeds)
        t4 = time.perf_counter()
        for k in ("pre", "infer", "post"):
            stages[k].append(det.timings[k])
        stages["track"].append((t2 - t1) * 1e3)
        stages["publish"].append((t3 - t2) * 1e3)
        stages["total"].append((t3 - t0) * 1e3)
        stages["raw"].append((t4 - t3) * 1e3)
    providers = getattr(det.backend, "providers", None)
    det.close()
    r = {k: med(v) for k, v in stages.items()}
    r["fps"] = 1e3 / r["total"]
    # overhead: median over frames of (pipeline - raw of the same moment) / median raw
    r["overhead"] = med([t - w for t, w in zip(stages["total"], stages["raw"])]) / r["raw"] * 100
    r["stages_pct"] = (
        med([sum(stages[k][i] for k in ("pre", "post", "track", "publish")) for i in range(n)]) / r["raw"] * 100
    )
    r["name"] = (
        f"{task} / {backend}" + (f" {device}" if device != "auto" else "") + (f" {providers[0]}" if providers else "")
    )
    r["n_dets"] = len(dets)
    r["publish_measured"] = pub is not None
    return r


def _cpu_s() -> float:
    """CPU seconds (user + system, all threads) of this process so far."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def _paced(det, tracker, pub, image: np.ndarray, fps: float, seconds: float) -> tuple[float, float, int]:
    """The node's per-frame work (detect, track, to_msg) at a camera cadence: (cores, infer ms, frames)."""
    period, n = 1.0 / fps, max(1, int(seconds * fps))
    c0, t0 = _cpu_s(), time.monotonic()
    infer = []
    for i in range(n):
        dets = tracker.update(det.detect(image))
        if pub is not None:
            pub(dets)
        infer.append(det.timings["infer"])
        delay = t0 + (i + 1) * period - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    return (_cpu_s() - c0) / (time.monotonic() - t0), med(infer), n


def _model_cpu_per_frame(det, image: np.ndarray, n: int) -> float:
    """CPU seconds per inference of the model itself: back to back on the pre-made tensor."""
    tensor, _ = det.preprocessor(image)
    feeds = {det._input_name: tensor.copy(), **det._extra}
    c0 = _cpu_s()
    for _ in range(n):
        det.backend.infer(feeds)
    return (_cpu_s() - c0) / n


def bench_cadence(
    task: str, model: str | None, fps: float, seconds: float, rounds: int, threads: int, image: np.ndarray
) -> None:
    """Spinning on vs off, windows alternating (same machine load), beside the model's own CPU."""
    from nano_vision_ros.core.detection.profiles import build_detector, load_profile
    from nano_vision_ros.core.tracking import ByteTracker

    pub = publish_fn()
    dets = {
        spin: build_detector(
            load_profile(task),
            model=model,
            backend="onnxruntime",
            device="cpu",
            spinning=spin,
            **({"threads": threads} if threads else {}),
        )
        for spin in (True, False)
    }
    for d in dets.values():
        d.warmup(5)
    nthreads = dets[False].backend.threads
    print(
        f"\n{task}: {nthreads} intra-op threads, {fps:g} fps, {rounds} x {seconds:g} s windows per setting, alternating"
    )
    print(
        "| round | spinning | node cores | infer ms | model CPU ms/frame (back to back) | model cores at cadence | node / model |"
    )
    print("|---|---|---|---|---|---|---|")
    ratios: dict[bool, list[float]] = {True: [], False: []}
    for r in range(rounds):
        for spin in (True, False):
            det = dets[spin]
            model_cpu = _model_cpu_per_frame(dets[False], image, 20)  # the floor: the non-spinning session
            cores, infer_ms, _ = _paced(det, ByteTracker(), pub, image, fps, seconds)
            model_cores = model_cpu * fps
            ratios[spin].append(cores / model_cores)
            print(
                f"| {r + 1} | {'on' if spin else 'off'} | {cores:.3f} | {infer_ms:.1f} | {model_cpu * 1e3:.1f} | "
                f"{model_cores:.3f} | {cores / model_cores:.2f} |"
            )
    for spin in (True, False):
        xs = ratios[spin]
        print(
            f"spinning {'on ' if spin else 'off'}: node / model CPU {min(xs):.2f}-{max(xs):.2f} (median {med(xs):.2f})"
        )
    for d in dets.values():
        d.close()


def _camera_worker(cameras: int, threads: int, detectors: int, seconds: float, queue) -> None:
    """One detector process serving `cameras` cameras back to back (each its own tracker)."""
    from nano_vision_ros.core.detection.profiles import build_detector, load_profile
    from nano_vision_ros.core.tracking import ByteTracker

    images = [cv2.imread(str(SAMPLE)), cv2.imread(str(SAMPLE.with_name("person.jpg")))]
    det = build_detector(
        load_profile("coco_objects"),
        backend="onnxruntime",
        device="cpu",
        detectors=detectors,
        **({"threads": threads} if threads else {}),
    )
    det.warmup(3)
    trackers = [ByteTracker() for _ in range(cameras)]
    queue.put(("ready", 0, 0.0, 0))
    while queue.get() != "go":  # the parent says go once every process is loaded
        pass
    n, c0, t0 = 0, _cpu_s(), time.monotonic()
    while time.monotonic() - t0 < seconds:
        for i in range(cameras):
            trackers[i].update(det.detect(images[i % 2]))
            n += 1
    queue.put(("done", n, _cpu_s() - c0, det.backend.threads))


def bench_cameras(cameras: int, seconds: float) -> None:
    """Frames/s over all cameras: one detector for all vs one per camera (auto threads shared out)
    vs one per camera each with all cores (what an unset detectors_on_machine gives)."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    setups = [
        ("one detector, all cameras", 1, cameras, 0, 1),
        ("one detector per camera, detectors_on_machine set", cameras, 1, 0, cameras),
        ("one detector per camera, each all cores", cameras, 1, 0, 1),
    ]
    print(
        f"\n{cameras} cameras, NanoDet-m / onnxruntime CPU, frames back to back for {seconds:g} s, one process per detector"
    )
    print("| setup | processes | threads each | frames/s (all cameras) | CPU cores | CPU ms per frame |")
    print("|---|---|---|---|---|---|")
    for name, procs, cams, threads, detectors in setups:
        qs = [ctx.Queue() for _ in range(procs)]
        ps = [ctx.Process(target=_camera_worker, args=(cams, threads, detectors, seconds, q)) for q in qs]
        for p in ps:
            p.start()
        for q in qs:
            q.get(timeout=600)  # a loaded 2-core VM needs minutes to spawn and load
        for q in qs:
            q.put("go")
        res = [q.get(timeout=seconds + 120) for q in qs]
        for p in ps:
            p.join()
        frames, cpu = sum(r[1] for r in res), sum(r[2] for r in res)
        print(
            f"| {name} | {procs} | {res[0][3]} | {frames / seconds:.1f} | {cpu / seconds:.2f} | {cpu / frames * 1e3:.1f} |"
        )


def gpu_preprocess(n: int, image: np.ndarray) -> None:
    """CPU Preprocessor vs the CUDA kernel via CuPy and via pycuda (upload + kernel + sync)."""
    cpu = Preprocessor(640, 640, resize="letterbox", channel_order="rgb")
    print(f"  CPU Preprocessor 768x576 -> 640x640 letterbox: {med(timed(lambda: cpu(image), n)):.3f} ms")
    try:
        import cupy as cp

        from nano_vision_ros.core.inference.cuda_preprocess import CupyPreprocessor

        g = CupyPreprocessor(640, 640, resize="letterbox", channel_order="rgb")

        def run():
            g(image)
            cp.cuda.Stream.null.synchronize()

        run()
        ref, _ = cpu(image)
        diff = float(np.abs(cp.asnumpy(g(image)[0]) - ref).max())
        print(
            f"  CuPy kernel (upload+resize+normalise+sync): {med(timed(run, n)):.3f} ms, max |diff| vs CPU {diff:.4f}"
        )
    except Exception as err:  # noqa: BLE001
        print(f"  CuPy: not run ({type(err).__name__}: {err})")
    try:
        from nano_vision_ros.core.inference.cuda_mem import CudaBuffers
        from nano_vision_ros.core.inference.cuda_preprocess import PycudaPreprocessor

        b = CudaBuffers(0)
        with b.active():
            b.allocate("input", (1, 3, 640, 640), np.float32)
        pp = PycudaPreprocessor(b, "input", 640, 640)

        def run2():
            with b.active():
                pp(image)
                b.synchronize()

        run2()
        with b.active():
            pp(image)
            out = b.to_host("input").copy()
            b.synchronize()
        ref, _ = cpu(image)
        print(
            f"  pycuda kernel (upload+resize+normalise+sync) on {b.device_name}: {med(timed(run2, n)):.3f} ms, "
            f"max |diff| vs CPU {float(np.abs(out - ref).max()):.4f}"
        )
        b.free()
    except Exception as err:  # noqa: BLE001
        print(f"  pycuda: not run ({type(err).__name__}: {err})")


def bench_decoders(n: int) -> None:
    """Decode + NMS alone on YOLO-sized outputs (640 input, 80 classes): the post-processing cost a
    user-supplied YOLOv5s / YOLOv8 model adds, with a realistic few dozen candidates above threshold."""
    from nano_vision_ros.core.detection.decoders import YoloV5Decoder, YoloV8Decoder
    from nano_vision_ros.core.detection.nms import nms
    from nano_vision_ros.core.inference.base import TensorInfo

    rng = np.random.default_rng(0)
    inp = [TensorInfo("images", (1, 3, 640, 640))]
    v5 = rng.uniform(0, 0.02, (1, 25200, 85)).astype(np.float32)
    v5[0, :, :4] = rng.uniform(20, 600, (25200, 4))
    v5[0, rng.choice(25200, 60, replace=False), 4:] = rng.uniform(0.3, 1.0, (60, 81))
    v8 = rng.uniform(0, 0.02, (1, 84, 8400)).astype(np.float32)
    v8[0, :4] = rng.uniform(20, 600, (4, 8400))
    v8[0, 4:, rng.choice(8400, 60, replace=False)] = rng.uniform(0.3, 1.0, (60, 80))
    for name, dec, out in (("YOLOv5 [1,25200,85]", YoloV5Decoder(), v5), ("YOLOv8 [1,84,8400]", YoloV8Decoder(), v8)):
        dec.bind(inp, [TensorInfo("out", out.shape)], 640, 640)

        def run(dec=dec, out=out):
            b, s, c = dec([out], 0.35)
            nms(b, s, c, 0.45)

        print(f"  {name}: decode + NMS {med(timed(run, n)):.2f} ms")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=100, help="frames per configuration")
    ap.add_argument("--gpu", action="store_true", help="also GPU pre-processing and ORT CUDA")
    ap.add_argument("--cadence", action="store_true", help="only: CPU cores at a camera cadence, spinning on vs off")
    ap.add_argument("--fps", type=float, default=10.0, help="--cadence: camera frame rate")
    ap.add_argument("--seconds", type=float, default=6.0, help="--cadence: seconds per window")
    ap.add_argument("--rounds", type=int, default=3, help="--cadence: windows per setting")
    ap.add_argument("--threads", type=int, default=0, help="--cadence: intra-op threads (0 = auto)")
    ap.add_argument(
        "--cameras", type=int, default=0, help="only: throughput for N cameras, shared vs per-camera detector"
    )
    args = ap.parse_args()
    image = cv2.imread(str(SAMPLE))
    if image is None:
        print(f"sample image missing: {SAMPLE}")
        return 1
    import onnxruntime as ort

    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, {platform.processor() or platform.platform()}; "
        f"onnxruntime {ort.__version__} {ort.get_available_providers()}; OpenCV {cv2.__version__}; input {SAMPLE.name} "
        f"{image.shape[1]}x{image.shape[0]}, median of {args.n} frames"
    )
    if args.cameras:
        bench_cameras(args.cameras, args.seconds)
        return 0
    if args.cadence:
        bench_cadence("coco_objects", None, args.fps, args.seconds, args.rounds, args.threads, image)
        return 0
    configs = [
        ("coco_objects", "onnxruntime", "cpu", None),
        ("coco_objects", "opencv", "auto", None),
        ("coco_centernet", "onnxruntime", "cpu", str(CENTERNET)),
        ("coco_centernet", "opencv", "auto", str(CENTERNET)),
    ]
    if args.gpu and "CUDAExecutionProvider" in ort.get_available_providers():
        configs += [
            ("coco_objects", "onnxruntime", "cuda", None),
            ("coco_centernet", "onnxruntime", "cuda", str(CENTERNET)),
        ]
    rows = [r for r in (bench_pipeline(t, b, d, m, args.n, image) for t, b, d, m in configs) if r]
    print(
        "\n| model / backend | fps | pre ms | infer ms | post ms | track ms | publish ms | total ms | raw infer ms | overhead | pre+post+track+publish |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        pub = f"{r['publish']:.2f}" if r["publish_measured"] else "n/a"
        print(
            f"| {r['name']} | {r['fps']:.1f} | {r['pre']:.2f} | {r['infer']:.2f} | {r['post']:.2f} | {r['track']:.2f} | "
            f"{pub} | {r['total']:.2f} | {r['raw']:.2f} | {r['overhead']:+.1f} % | {r['stages_pct']:.1f} % |"
        )
    print("\nDecoders alone (synthetic outputs, 60 candidates above 0.35):")
    bench_decoders(args.n)
    if args.gpu:
        print("\nGPU pre-processing (768x576 BGR frame -> 640x640 letterboxed RGB NCHW float):")
        gpu_preprocess(args.n, image)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
