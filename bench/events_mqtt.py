#!/usr/bin/env python3
"""Events over MQTT: (1) latency from the frame's stamp to receipt at an external MQTT subscriber
through the real nodes, (2) outbox throughput.

(1) This process publishes Detection2DArray (one new track per frame, so every frame raises a
`new` event) on /cam0/detections at --fps; events_node and mqtt_bridge_node run as separate
processes as in production; a private mosquitto listens on a free 127.0.0.1 port; a paho
subscriber in this process takes receipt time - event `stamp`. Prints p50/p90/p99 in ms.
(2) Outbox put+ack rate on disk (SQLite WAL, synchronous FULL and NORMAL), and the rate of
outbox -> paho -> mosquitto -> PUBACK -> delete through MqttLink.

    .venv/bin/python bench/events_mqtt.py --frames 300 --fps 20 --outbox-n 2000
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
os.environ.setdefault("ROS_DOMAIN_ID", str(101 + os.getpid() % 100))
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
os.environ.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", str(REPO / "config" / "fastdds_shm.xml"))

import numpy as np
import paho.mqtt.client as mqtt

from nano_vision_ros.core.events.schema import parse_iso
from nano_vision_ros.core.mqtt.client import LinkSettings, MqttLink
from nano_vision_ros.core.mqtt.outbox import Outbox
from nano_vision_ros.site.mosquitto import Mosquitto

BASE = "nano_vision/bench/dev"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pct(values: list[float], p: float) -> float:
    v = sorted(values)
    return v[min(len(v) - 1, int(round(p / 100.0 * (len(v) - 1))))]


def exe(name: str) -> str:
    return shutil.which(name, path=str(Path(sys.executable).parent)) or name


def latency(work: Path, port: int, frames: int, fps: float, sync: str = "FULL") -> dict[str, float]:
    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from std_msgs.msg import Header
    from vision_msgs.msg import Detection2DArray

    from nano_vision_ros.core.detection.types import Detections
    from nano_vision_ros.ros.detections import to_msg

    rules = work / "rules.yaml"
    rules.write_text("rules: [{name: people, type: object, labels: [person], end_after: 0.5, cooldown: 0}]\n")
    logs = open(work / "nodes.log", "wb")  # noqa: SIM115 - the nodes' output while they run
    procs = [
        subprocess.Popen(
            [
                exe("events_node"),
                "--ros-args",
                "-r",
                "__ns:=/cam0",
                "-p",
                f"rules:={rules}",
                "-p",
                "snapshots:=false",
                "-p",
                "site_id:=bench",
                "-p",
                "device_id:=dev",
            ],
            stdout=logs,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        ),
        subprocess.Popen(
            [
                *(
                    os.environ["BENCH_BRIDGE_CMD"].split()
                    if os.environ.get("BENCH_BRIDGE_CMD")
                    else [exe("mqtt_bridge_node")]
                ),
                "--ros-args",
                "-p",
                f"port:={port}",
                "-p",
                "site_id:=bench",
                "-p",
                "device_id:=dev",
                "-p",
                "events_topics:=[/cam0/events]",
                "-p",
                f"outbox_path:={work / 'outbox.sqlite'}",
                "-p",
                f"stats_period:={os.environ.get('BENCH_STATS', '0.0')}",
                "-p",
                f"outbox_synchronous:={sync}",
            ],
            stdout=logs,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        ),
    ]
    lat: list[float] = []
    node_part: list[float] = []
    lock = threading.Lock()

    def on_msg(c, u, msg):
        now = time.time()
        if msg.topic.endswith("/stats"):
            if os.environ.get("BENCH_TRACE"):
                b = json.loads(msg.payload)["bridge"]
                print(
                    "bridge:",
                    {k: b[k] for k in ("events_received", "sent", "acked", "inflight", "outbox_pending", "connects")},
                )
            return
        ev = json.loads(msg.payload)
        if ev["state"] == "new":
            with lock:
                lat.append((now - parse_iso(ev["stamp"])) * 1000.0)
                node_part.append((parse_iso(ev["published"]) - parse_iso(ev["stamp"])) * 1000.0)

    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-sub")
    sub.on_message = on_msg
    sub.connect("127.0.0.1", port)
    sub.subscribe(f"{BASE}/events", qos=1)
    sub.subscribe(f"{BASE}/stats", qos=0)
    sub.loop_start()
    rclpy.init()
    node = rclpy.create_node("bench_feeder")
    pub = node.create_publisher(
        Detection2DArray, "/cam0/detections", QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
    )
    try:
        deadline = time.monotonic() + 60
        while pub.get_subscription_count() == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(2.0)  # bridge connected
        period = 1.0 / fps
        t_next = time.monotonic()
        for i in range(frames):
            now = time.time()
            h = Header(frame_id="cam")
            h.stamp.sec, h.stamp.nanosec = int(now), int((now % 1) * 1e9)
            d = Detections(
                np.array([[10, 10, 60, 120]], np.float32), np.array([0.9]), np.array([0]), ["person"], np.array([i])
            )
            pub.publish(to_msg(d, h))
            t_next += period
            time.sleep(max(0.0, t_next - time.monotonic()))
        deadline = time.monotonic() + 30
        while len(lat) < frames and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        node.destroy_node()
        rclpy.shutdown()
        sub.loop_stop()
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(10)
    if os.environ.get("BENCH_TRACE"):
        print("latency trace (ms):", " ".join(f"{v:.0f}" for v in lat))
    if not lat:
        raise SystemExit(f"no events received; see {work / 'nodes.log'}")
    return {
        "received": len(lat),
        "sent": frames,
        "p50": pct(lat, 50),
        "p90": pct(lat, 90),
        "p99": pct(lat, 99),
        "max": max(lat),
        "mean": statistics.fmean(lat),
        "node_p50": pct(node_part, 50),
        "node_p99": pct(node_part, 99),
    }


def outbox_rate(work: Path, n: int, sync: str) -> float:
    ob = Outbox(work / f"ob-{sync}.sqlite", synchronous=sync)
    payload = json.dumps({"event_id": "x" * 36, "pad": "y" * 700})
    t0 = time.perf_counter()
    ids = [ob.put("t", payload, kind="new", key=f"e{i}:0") for i in range(n)]
    for i in ids:
        ob.ack(i)
    dt = time.perf_counter() - t0
    ob.close()
    return n / dt


def link_rate(work: Path, port: int, n: int) -> float:
    ob = Outbox(work / "ob-link.sqlite")
    payload = json.dumps({"event_id": "x" * 36, "pad": "y" * 700})
    for i in range(n):
        ob.put(f"{BASE}/events", payload, kind="new", key=f"e{i}:0")
    link = MqttLink(LinkSettings(port=port, client_id="bench-link", window=100), ob)
    t0 = time.perf_counter()
    link.start()
    deadline = time.monotonic() + 120
    while len(ob) and time.monotonic() < deadline:
        time.sleep(0.01)
    dt = time.perf_counter() - t0
    link.stop()
    return n / dt


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--fps", type=float, default=20.0)
    ap.add_argument("--outbox-n", type=int, default=2000)
    ap.add_argument("--sync", default="FULL", choices=["FULL", "NORMAL"], help="the bridge's outbox_synchronous")
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="nv-bench-events-"))
    broker = Mosquitto(port=free_port(), workdir=work / "mosquitto", persistence=False)
    broker.start()
    try:
        r = latency(work, broker.port, a.frames, a.fps, a.sync)
        print(
            f"event latency frame stamp -> MQTT subscriber ({r['received']}/{r['sent']} events at {a.fps:g} fps, "
            f"outbox {a.sync}): "
            f"p50 {r['p50']:.1f} ms, p90 {r['p90']:.1f} ms, p99 {r['p99']:.1f} ms, max {r['max']:.1f} ms"
        )
        print(
            f"  of which frame stamp -> events_node publishes: p50 {r['node_p50']:.1f} ms, p99 {r['node_p99']:.1f} ms"
        )
        print(f"  load average during the run: {os.getloadavg()[0]:.2f} (2 cores shared with other work)")
        for sync in ("FULL", "NORMAL"):
            print(
                f"outbox put+ack (SQLite WAL, synchronous={sync}): {outbox_rate(work, a.outbox_n, sync):.0f} events/s"
            )
        print(
            f"outbox -> mosquitto -> PUBACK -> delete (QoS 1, window 100): {link_rate(work, broker.port, a.outbox_n):.0f} events/s"
        )
    finally:
        broker.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
