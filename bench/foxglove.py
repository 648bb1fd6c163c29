#!/usr/bin/env python3
"""foxglove_node's CPU while nobody watches and while one Foxglove client watches a camera.

    .venv/bin/python bench/foxglove.py [--seconds 10] [--rounds 2] [--max-fps 5]

A feeder in this process publishes the sample's 768x576 frame and detections at 10 Hz on /cam0;
foxglove_node (its own process) serves /cam0. Each round, side by side: `idle` (no client: no
ROS image subscription, no JPEG), then `watched` (a protocol client subscribes /cam0/image_raw and
/cam0/annotations: JPEG at max_fps + annotations). Prints cores used and messages received.
Figures: docs/performance/foxglove.md.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "test"))

from glass_to_glass import free_port, node_executable, ros_environment, stop_process
from webrtc_latency import cpu_over


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--max-fps", type=float, default=5.0)
    a = ap.parse_args()
    ros_environment()
    import numpy as np
    import rclpy
    from conftest import FrameFeeder, sample_frame
    from foxglove_client import FoxgloveClient

    from nano_vision_ros.core.detection.types import Detections

    port = free_port()
    proc = subprocess.Popen(
        [
            node_executable("foxglove_node"),
            "--ros-args",
            "-p",
            f"port:={port}",
            "-p",
            "cameras:=[cam0]",
            "-p",
            f"max_fps:={a.max_fps}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    rclpy.init()
    node = rclpy.create_node("foxglove_bench_feeder")
    dets = Detections(
        np.array([[200, 250, 300, 500], [600, 100, 660, 250]]),
        np.array([0.9, 0.8]),
        np.array([0, 0]),
        ["person"],
        np.array([7, 8]),
    )
    feeder = FrameFeeder(node, "/cam0", sample_frame(), dets)
    feeder.start()
    try:
        FoxgloveClient(port).close()  # the server is up
        time.sleep(2.0)
        for r in range(a.rounds):
            idle = cpu_over(proc.pid, a.seconds)
            client = FoxgloveClient(port)
            client.subscribe(1, "/cam0/image_raw")
            client.subscribe(2, "/cam0/annotations")
            t0 = time.monotonic()
            while not (client.got(1) and client.got(2)) and time.monotonic() - t0 < 20:
                time.sleep(0.05)
            n1, n2 = len(client.got(1)), len(client.got(2))
            watched = cpu_over(proc.pid, a.seconds)
            jpegs, anns = len(client.got(1)) - n1, len(client.got(2)) - n2
            kb = sum(len(p) for _, p in client.got(1)[n1:]) / max(1, jpegs) / 1024
            client.close()
            print(
                f"round {r + 1}: idle {idle:.3f} cores; watched {watched:.3f} cores "
                f"({jpegs / a.seconds:.1f} JPEG/s of {kb:.0f} KiB, {anns / a.seconds:.1f} annotations/s); "
                f"load {os.getloadavg()[0]:.1f}",
                flush=True,
            )
            time.sleep(1.0)
    finally:
        feeder.stop()
        node.destroy_node()
        rclpy.try_shutdown()
        stop_process(proc)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
