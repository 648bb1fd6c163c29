#!/usr/bin/env python3
"""Capture latency of an RTSP camera: server stamp -> ``image_raw`` stamp (and -> arrival here).

    .venv/bin/python bench/capture_latency.py [--seconds 20] [--fps 15] [--size 640x480]
                                              [--transports tcp,udp] [--backends opencv,gstreamer]

A real gst-rtsp-server (test/rtsp_server.py, system Python) encodes a picture whose top row
carries the frame index (x264enc tune=zerolatency, baseline, 1 s GOP) and writes the wall time
each frame went to the encoder. camera_node (its own process, default low-latency settings)
reads it over RTSP/TCP or RTSP/UDP on 127.0.0.1 and publishes ``image_raw``; a subscriber in this
process decodes the index of every frame. Both ends use the same clock (one machine), so

- capture latency = ``image_raw`` header stamp (taken right after the frame is decoded) - server send time:
  encode + RTP/RTSP + FFmpeg/GStreamer demux and decode + the node's read;
- delivery latency = arrival in this process - server send time (+ the ROS 2 hop).

Runs one configuration at a time, side by side in the same invocation (the machine is shared:
compare the rows of one run). Figures go to docs/performance/capture.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))
SERVER = REPO / "test" / "rtsp_server.py"

os.environ.setdefault("ROS_DOMAIN_ID", str(100 + os.getpid() % 100))
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
os.environ.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", str(REPO / "config" / "fastdds_shm.xml"))

from nano_vision_ros.core.capture import decode_frame_index


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q / 100 * (len(xs) - 1))))]


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGINT)
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


def run_one(node, transport: str, backend: str, args: argparse.Namespace, tmp: Path) -> dict:
    from sensor_msgs.msg import Image

    from nano_vision_ros.ros import qos

    port = free_port()
    stamps = tmp / f"stamps-{transport}-{backend}.txt"
    stamps.unlink(missing_ok=True)
    server = subprocess.Popen(
        [
            "/usr/bin/python3",
            str(SERVER),
            "--port",
            str(port),
            "--fps",
            str(args.fps),
            "--size",
            args.size,
            "--stamps",
            str(stamps),
        ],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert server.stdout is not None and server.stdout.readline().startswith("READY")
    ns = f"/bench_cap_{transport}_{backend}"
    exe = str(Path(sys.executable).parent / "camera_node")
    cam = subprocess.Popen(
        [
            exe,
            "--ros-args",
            "-r",
            f"__ns:={ns}",
            "-p",
            f"source:=rtsp://127.0.0.1:{port}/cam",
            "-p",
            f"transport:={transport}",
            "-p",
            f"backend:={backend}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    got: list[tuple[int, int, int]] = []  # (index, stamp ns, arrival ns)
    lock = threading.Lock()

    def on_image(msg: Image) -> None:
        now = time.time_ns()
        frame = np.frombuffer(msg.data, np.uint8).reshape(msg.height, msg.width, 3)
        with lock:
            got.append(
                (decode_frame_index(frame), msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec, now)
            )

    sub = node.create_subscription(Image, f"{ns}/image_raw", on_image, qos.SENSOR)
    try:
        deadline = time.monotonic() + 60
        while not got and time.monotonic() < deadline:
            time.sleep(0.1)
        if not got:
            raise SystemExit(f"{transport}/{backend}: no frame in 60 s")
        time.sleep(args.warmup)
        with lock:
            got.clear()
        time.sleep(args.seconds)
        with lock:
            samples = list(got)
    finally:
        node.destroy_subscription(sub)
        stop(cam)
        stop(server)
    sent = {}
    for ln in stamps.read_text().splitlines():
        i, t = ln.split()
        sent[int(i)] = int(t)
    cap = [(s - sent[i]) / 1e6 for i, s, _a in samples if i in sent]
    dlv = [(a - sent[i]) / 1e6 for i, _s, a in samples if i in sent]
    idx = [i for i, _s, _a in samples if i in sent]
    span = (max(idx) - min(idx) + 1) if idx else 0
    return {
        "transport": transport,
        "backend": backend,
        "frames": len(cap),
        "unknown": len(samples) - len(cap),
        "lost": span - len(set(idx)),
        "cap50": statistics.median(cap),
        "cap95": pct(cap, 95),
        "capmax": max(cap),
        "dlv50": statistics.median(dlv),
        "dlv95": pct(dlv, 95),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--warmup", type=float, default=3.0)
    p.add_argument("--fps", type=int, default=15)
    p.add_argument("--size", default="640x480")
    p.add_argument("--transports", default="tcp,udp")
    p.add_argument("--backends", default="opencv")
    p.add_argument("--repeat", type=int, default=1, help="run every configuration this many times (interleaved)")
    args = p.parse_args()

    import tempfile

    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    rclpy.init()
    node = rclpy.create_node("capture_latency_bench")
    ex = SingleThreadedExecutor()
    ex.add_node(node)
    threading.Thread(target=ex.spin, daemon=True).start()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeat):
            for backend in args.backends.split(","):
                for transport in args.transports.split(","):
                    r = run_one(node, transport, backend, args, Path(tmp))
                    rows.append(r)
                    print(
                        f"{transport:4s} {backend:9s} frames {r['frames']:4d} lost {r['lost']:3d} unknown {r['unknown']} | "
                        f"capture p50 {r['cap50']:6.1f} p95 {r['cap95']:6.1f} max {r['capmax']:6.1f} ms | "
                        f"delivery p50 {r['dlv50']:6.1f} p95 {r['dlv95']:6.1f} ms",
                        flush=True,
                    )
    ex.shutdown()
    node.destroy_node()
    rclpy.shutdown()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}; "
        f"{args.size} @ {args.fps} fps, {args.seconds:g} s per row after {args.warmup:g} s warm-up"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
