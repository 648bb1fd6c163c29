#!/usr/bin/env python3
"""Bytes/s on the link between two boards: board A captures (camera + events), board B runs
mosquitto + the MQTT bridge; two network namespaces joined by a veth (root; test/netns_boards.py).

    sudo .venv/bin/python bench/boards_link.py                 # 3 rounds x 10 s per case

Cases, side by side in each round: `no remote subscriber` (frames stay on A: only discovery,
status and events cross) and `B subscribes to frames` (a probe on B takes /cam0/image_raw: what
the link carries when a node on another board does subscribe). Figures: docs/performance/boards.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "test"))
from netns_boards import TwoBoards, netns_unavailable

NANO_VISION = str(Path(sys.executable).parent / "nano-vision")
PROBE = """
import sys, rclpy
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image
rclpy.init(); n = rclpy.create_node("board_b_frame_probe"); c = [0]
n.create_subscription(Image, "/cam0/image_raw", lambda m: c.__setitem__(0, c[0] + 1), qos_profile_sensor_data)
rclpy.spin(n)
"""


def site_file(tmp: Path) -> Path:
    (tmp / "params.yaml").write_text(
        textwrap.dedent(f"""
        /**/camera_node:
          ros__parameters: {{source: samples/vtest.mp4, loop: true}}
        /**/events_node:
          ros__parameters: {{snapshot_dir: {tmp / "snaps"}}}
        mqtt_bridge_node:
          ros__parameters: {{host: 127.0.0.1, port: 1884, events_topics: [/cam0/events], outbox_path: {tmp / "ob.sqlite"}}}
    """)
    )
    site = tmp / "site.yaml"
    site.write_text(
        textwrap.dedent(f"""
        params_file: params.yaml
        fastdds_profile: {REPO / "config" / "fastdds_shm.xml"}
        fastdds_small_profile: {REPO / "config" / "fastdds_small.xml"}
        discovery_range: subnet
        boards:
          - {{name: a, static_peers: [10.213.77.2]}}
          - {{name: b, static_peers: [10.213.77.1]}}
        services: {{mosquitto: {{enabled: true, port: 1884, board: b}}, nginx_rtmp: {{enabled: false}},
                   clip_receiver: {{enabled: false}}}}
        cameras: [{{name: cam0, board: a, nodes: [camera, events]}}]
        site_nodes: [{{kind: mqtt_bridge, board: b}}]
    """)
    )
    return site


def rate(boards: TwoBoards, seconds: float) -> float:
    b0, t0 = boards.link_bytes(), time.monotonic()
    time.sleep(seconds)
    return (boards.link_bytes() - b0) / (time.monotonic() - t0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--warmup", type=float, default=15.0)
    a = ap.parse_args()
    why = netns_unavailable()
    if why:
        print(f"boards_link: {why}", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="nv-boards-"))
    site = site_file(tmp)
    env = {k: v for k, v in os.environ.items() if k not in ("ROS_AUTOMATIC_DISCOVERY_RANGE", "ROS_STATIC_PEERS")}
    env["ROS_DOMAIN_ID"] = env.get("ROS_DOMAIN_ID", str(1 + os.getpid() % 100))
    env_b = {
        **env,
        "ROS_AUTOMATIC_DISCOVERY_RANGE": "SUBNET",
        "ROS_STATIC_PEERS": "10.213.77.1",
        "FASTDDS_DEFAULT_PROFILES_FILE": str(REPO / "config" / "fastdds_small.xml"),
    }
    boards = TwoBoards()
    rows: list[tuple[float, float]] = []
    try:
        boards.start(
            "b", [NANO_VISION, "site", str(site), "--board", "b", "--workdir", str(tmp / "wb")], tmp / "b.log", env
        )
        boards.start(
            "a", [NANO_VISION, "site", str(site), "--board", "a", "--workdir", str(tmp / "wa")], tmp / "a.log", env
        )
        time.sleep(a.warmup)
        for _ in range(a.rounds):
            quiet = rate(boards, a.seconds)
            probe = boards.start("b", [sys.executable, "-c", PROBE], tmp / "probe.log", env_b)
            time.sleep(5)  # discovery + first frames
            loud = rate(boards, a.seconds)
            boards.stop(probe)
            time.sleep(3)
            rows.append((quiet, loud))
            print(
                f"no remote subscriber {quiet / 1e3:8.1f} KB/s   B subscribes to frames {loud / 1e6:6.2f} MB/s",
                flush=True,
            )
    finally:
        boards.close()
    q = [r[0] for r in rows]
    loud_rates = [r[1] for r in rows]
    print(
        f"\nmachine: {platform.node()} {platform.machine()} {os.cpu_count()} CPUs; {a.rounds} rounds x {a.seconds:.0f} s"
    )
    print(
        f"no remote subscriber: {min(q) / 1e3:.1f}-{max(q) / 1e3:.1f} KB/s; "
        f"B subscribes to frames: {min(loud_rates) / 1e6:.2f}-{max(loud_rates) / 1e6:.2f} MB/s; "
        f"ratio {min(loud_rates) / max(q):.0f}-{max(loud_rates) / min(q):.0f}x"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
