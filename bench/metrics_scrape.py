#!/usr/bin/env python3
"""Cost of /metrics: one scrape built from N nodes' statuses, and metrics_node's CPU while idle.

    .venv/bin/python bench/metrics_scrape.py                  # 10, 50, 200 nodes, 200 scrapes each
    .venv/bin/python bench/metrics_scrape.py --nodes 20 --idle 30

Part 1 (in process): a MetricsStore filled with detector-like statuses (the values a real
detector_node publishes, pid = this process, so /proc is read per node as in production), then
`generate_latest` timed; printed: median and p90 ms per scrape, and beside it the cost of
parsing the same text with prometheus_client's parser (what Prometheus-side work is, roughly),
so the ratio is what matters on a noisy machine.
Part 2 (a real metrics_node process, no other nodes): CPU seconds used over --idle s from
/proc/<pid>/stat, with one scrape a second and with none.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request

from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import CollectorRegistry

from nano_vision_ros.core.metrics import MetricsCollector, MetricsStore, Status, proc_usage

DETECTOR = {
    "state": "active",
    "task": "coco_objects",
    "frames": "120",
    "fps": "4.875",
    "motion_ms": "0.800",
    "pre_ms": "3.250",
    "infer_ms": "61.500",
    "post_ms": "1.125",
    "track_ms": "0.300",
    "publish_ms": "0.200",
    "total_ms": "67.000",
    "dropped": "7",
    "errors": "0",
    "last_frame_error": "",
    "backend": "onnxruntime",
    "bad_frames": "0",
    "pid": str(os.getpid()),
}


def _pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p * len(xs)))]


def scrape_cost(nodes: int, rounds: int) -> None:
    store = MetricsStore()
    for i in range(nodes):
        store.update(Status(f"/cam{i}/detector_node", 0, "ok", socket.gethostname(), dict(DETECTOR)))
    reg = CollectorRegistry(auto_describe=False)
    reg.register(MetricsCollector(store))
    build, parse = [], []
    for _ in range(rounds):
        t0 = time.perf_counter()
        text = generate_latest(reg)
        t1 = time.perf_counter()
        sum(len(f.samples) for f in text_string_to_metric_families(text.decode()))
        t2 = time.perf_counter()
        build.append((t1 - t0) * 1e3)
        parse.append((t2 - t1) * 1e3)
    b, p = statistics.median(build), statistics.median(parse)
    print(
        f"{nodes:4d} nodes  {len(text):7d} B  scrape p50 {b:6.2f} ms p90 {_pct(build, 0.9):6.2f} ms   "
        f"parse p50 {p:6.2f} ms   scrape/parse {b / p:4.2f}"
    )


def idle_cpu(seconds: float) -> None:
    exe = shutil.which("metrics_node", path=os.path.dirname(sys.executable)) or "metrics_node"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {
        **os.environ,
        "ROS_DOMAIN_ID": os.environ.get("ROS_DOMAIN_ID", "77"),
        "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
    }
    proc = subprocess.Popen(
        [exe, "--ros-args", "-p", f"port:={port}"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        url = f"http://127.0.0.1:{port}/metrics"
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(url, timeout=2).read()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        for label, scrape in (("no scrapes", False), ("1 scrape/s", True)):
            c0 = proc_usage(proc.pid)[0]
            t0 = time.monotonic()
            while time.monotonic() - t0 < seconds:
                if scrape:
                    urllib.request.urlopen(url, timeout=2).read()
                time.sleep(1.0)
            c1, rss = proc_usage(proc.pid)
            print(
                f"metrics_node {label:11s}: {100 * (c1 - c0) / (time.monotonic() - t0):5.2f} % of one core, "
                f"RSS {rss / 2**20:.0f} MiB"
            )
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(10)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, nargs="+", default=[10, 50, 200])
    ap.add_argument("--rounds", type=int, default=200)
    ap.add_argument("--idle", type=float, default=15.0, help="seconds per idle measurement (0: skip)")
    a = ap.parse_args()
    print(f"machine: {platform.node()} {platform.machine()} {os.cpu_count()} cpus, python {platform.python_version()}")
    for n in a.nodes:
        scrape_cost(n, a.rounds)
    if a.idle > 0:
        idle_cpu(a.idle)


if __name__ == "__main__":
    main()
