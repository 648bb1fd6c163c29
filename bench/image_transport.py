#!/usr/bin/env python3
"""1080p frames from camera_node (its own process) to a subscriber here: receive rate and latency.

    .venv/bin/python bench/image_transport.py --seconds 20             # as fast as possible, rgb8
    .venv/bin/python bench/image_transport.py --seconds 20 --rate 30   # paced

The camera node publishes its test pattern (the frame index is encoded in the pixels, so lost
frames are counted exactly); latency is header stamp (taken at capture) -> subscription callback
entry, both on this host's clock. The floor printed beside it is a plain numpy copy of the same
bytes. The Fast DDS profile is the project's (config/fastdds_shm.xml) unless --profile is given.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent


def memcpy_floor(nbytes: int, reps: int = 200) -> float:
    """Median seconds for one numpy copy of `nbytes` (the cost of touching the frame once)."""
    src = np.random.default_rng(0).integers(0, 255, nbytes, dtype=np.uint8)
    dst = np.empty_like(src)
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        np.copyto(dst, src)
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process `pid` so far (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=20.0, help="measuring time (after warm-up)")
    ap.add_argument("--warmup", type=float, default=3.0, help="seconds ignored at the start")
    ap.add_argument("--width", type=int, default=1920)
    ap.add_argument("--height", type=int, default=1080)
    ap.add_argument("--encoding", default="rgb8", choices=["rgb8", "bgr8"])
    ap.add_argument("--rate", type=float, default=0.0, help="publish rate in Hz; 0 = as fast as possible")
    ap.add_argument(
        "--profile",
        default=str(REPO / "config" / "fastdds_shm.xml"),
        help="Fast DDS XML profile ('' = Fast DDS defaults)",
    )
    ap.add_argument("--depth", type=int, default=1, help="image_raw history depth (publisher and subscriber)")
    ap.add_argument(
        "--no-malloc-tuning",
        action="store_true",
        help="leave glibc's malloc thresholds at their defaults in both processes",
    )
    ap.add_argument("--json", action="store_true", help="print one JSON line instead of the table")
    args = ap.parse_args()

    os.environ["ROS_DOMAIN_ID"] = os.environ.get("BENCH_ROS_DOMAIN_ID", str(150 + os.getpid() % 80))
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    os.environ.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
    if args.profile:
        os.environ["FASTDDS_DEFAULT_PROFILES_FILE"] = args.profile
    else:
        os.environ.pop("FASTDDS_DEFAULT_PROFILES_FILE", None)

    if args.no_malloc_tuning:
        os.environ["NANO_VISION_MALLOC_TUNING"] = "0"  # the node process inherits it
    else:
        from nano_vision_ros.core.memory import tune_malloc_for_frames

        tune_malloc_for_frames()  # as every node does at start (ros.runtime.run_node)

    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    from nano_vision_ros.core.capture import decode_frame_index

    exe = shutil.which("camera_node", path=str(Path(sys.executable).parent)) or "camera_node"
    ns = "/bench_cam"
    cmd = [
        exe,
        "--ros-args",
        "-r",
        f"__ns:={ns}",
        "-p",
        "source:=test://pattern",
        "-p",
        f"width:={args.width}",
        "-p",
        f"height:={args.height}",
        "-p",
        f"encoding:={args.encoding}",
        "-p",
        f"qos_depth:={args.depth}",
    ]
    cmd += ["-p", f"fps:={args.rate}"] if args.rate else ["-p", "pace:=false"]
    log_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench_camera_node_{os.getpid()}.log"
    log = open(log_path, "wb")  # noqa: SIM115 - open while the node runs
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    rclpy.init()
    node = rclpy.create_node("bench_image_sub")
    recv: list[tuple[int, int, int]] = []  # (receipt ns, stamp ns, frame index)
    lock = threading.Lock()

    def on_image(msg: Image) -> None:
        now = time.time_ns()
        stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        # the index lives in the first rows: decode from a view of the message buffer (no copy)
        row_bytes = msg.step
        head = np.frombuffer(msg.data, np.uint8, count=row_bytes * 16).reshape(16, msg.width, 3)
        idx = decode_frame_index(head, rendered_size=(msg.width, msg.height)) if msg.height >= 16 else -1
        with lock:
            recv.append((now, stamp, idx))

    qos = QoSProfile(depth=args.depth, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.BEST_EFFORT)
    node.create_subscription(Image, f"{ns}/image_raw", on_image, qos)
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    spin = threading.Thread(target=executor.spin, daemon=True)
    spin.start()

    try:
        t0 = time.monotonic()
        while not recv and time.monotonic() - t0 < 60:
            if proc.poll() is not None:
                raise SystemExit(f"camera_node exited ({proc.returncode}); log: {log_path}")
            time.sleep(0.05)
        if not recv:
            raise SystemExit(f"no frame within 60 s; log: {log_path}")
        time.sleep(args.warmup)
        with lock:
            start = len(recv)
        t_start = time.monotonic()
        cpu0 = (cpu_seconds(proc.pid), cpu_seconds(os.getpid()))
        load0 = os.getloadavg()[0]
        time.sleep(args.seconds)
        with lock:
            window = recv[start:]
        elapsed = time.monotonic() - t_start
        cpu1 = (cpu_seconds(proc.pid), cpu_seconds(os.getpid()))
        load1 = os.getloadavg()[0]
    finally:
        executor.shutdown(timeout_sec=5)
        spin.join(5)
        node.destroy_node()
        rclpy.try_shutdown()
        try:
            os.killpg(proc.pid, signal.SIGINT)
            proc.wait(10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()

    lat_ms = np.array([(r - s) / 1e6 for r, s, _ in window])
    idx = [i for _, _, i in window]
    span = (idx[-1] - idx[0] + 1) if len(idx) > 1 else len(idx)
    nbytes = args.width * args.height * 3
    floor = memcpy_floor(nbytes)
    result = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.processor() or platform.platform()}",
        "frame": f"{args.width}x{args.height} {args.encoding} ({nbytes / 1e6:.1f} MB)",
        "publish": f"{args.rate:g} Hz" if args.rate else "as fast as possible",
        "profile": Path(args.profile).name if args.profile else "Fast DDS defaults",
        "malloc_tuning": not args.no_malloc_tuning,
        "seconds": round(elapsed, 1),
        "received": len(window),
        "rate_hz": round(len(window) / elapsed, 1),
        "published_in_window": span,
        "lost": max(0, span - len(window)),
        "latency_ms_p50": round(float(np.percentile(lat_ms, 50)), 2) if len(lat_ms) else None,
        "latency_ms_p90": round(float(np.percentile(lat_ms, 90)), 2) if len(lat_ms) else None,
        "latency_ms_p99": round(float(np.percentile(lat_ms, 99)), 2) if len(lat_ms) else None,
        "latency_ms_max": round(float(lat_ms.max()), 2) if len(lat_ms) else None,
        "node_cpu_ms_per_published_frame": round((cpu1[0] - cpu0[0]) * 1e3 / max(1, span), 2),
        "subscriber_cpu_ms_per_received_frame": round((cpu1[1] - cpu0[1]) * 1e3 / max(1, len(window)), 2),
        "load_avg_1min": f"{load0:.1f} -> {load1:.1f}",
        "memcpy_floor_ms": round(floor * 1e3, 3),
        "memcpy_GBps": round(nbytes / floor / 1e9, 2),
    }
    if args.json:
        print(json.dumps(result))
    else:
        for k, v in result.items():
            print(f"{k:>22}: {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
