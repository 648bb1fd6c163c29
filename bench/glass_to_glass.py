#!/usr/bin/env python3
"""Glass-to-glass latency of the live stream: publisher -> rtmp_streamer_node -> nginx-rtmp -> reader.

Each published frame carries its capture time (ms, 40-bit binary bar code in the top band). The
streamer node runs in its own process as in production; nginx-rtmp is a private instance on a free
127.0.0.1 port; the reader is an ffmpeg subprocess with the low-latency flags a viewer would use
(``-fflags nobuffer -flags low_delay``) that writes decoded gray frames to a pipe, where the bar
code is read back and compared with the clock. Prints p50/p90/p99 in ms.

    .venv/bin/python bench/glass_to_glass.py --size 1280x720 --fps 30 --seconds 20
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
BITS = 40
BAND = 32  # bar code band height in px


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stamp_frame(base: np.ndarray, ms: int) -> np.ndarray:
    frame = base.copy()
    w = frame.shape[1]
    bw = w // BITS
    for i in range(BITS):
        bit = (ms >> (BITS - 1 - i)) & 1
        frame[:BAND, i * bw:(i + 1) * bw] = 255 if bit else 0
    return frame


def read_stamp(gray: np.ndarray) -> int:
    w = gray.shape[1]
    bw = w // BITS
    y = BAND // 2
    ms = 0
    for i in range(BITS):
        v = gray[y - 4:y + 4, i * bw + bw // 4:(i + 1) * bw - bw // 4].mean()
        ms = (ms << 1) | int(v > 127)
    return ms


def percentile(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q / 100 * (len(s) - 1))))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="1280x720")
    ap.add_argument("--fps", type=float, default=30.0)
    ap.add_argument("--seconds", type=float, default=20.0, help="measuring time after warm-up")
    ap.add_argument("--warmup", type=float, default=5.0)
    ap.add_argument("--bitrate", type=int, default=2500, help="kbit/s")
    ap.add_argument("--gop", type=int, default=30)
    ap.add_argument("--encoder", default="ffmpeg", choices=["auto", "ffmpeg", "gstreamer"])
    args = ap.parse_args()
    w, h = (int(v) for v in args.size.split("x"))

    sys.path.insert(0, str(REPO / "src"))
    os.environ.setdefault("ROS_DOMAIN_ID", str(150 + os.getpid() % 80))
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    os.environ.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", str(REPO / "config" / "fastdds_shm.xml"))
    import rclpy
    from sensor_msgs.msg import Image

    from nano_vision_ros.ros import qos
    from nano_vision_ros.ros.image import numpy_to_imgmsg
    from nano_vision_ros.site.nginx_rtmp import NginxRtmp

    work = Path(tempfile.mkdtemp(prefix="g2g-"))
    nginx = NginxRtmp(port=free_port(), workdir=work / "nginx")
    nginx.start()
    url = f"{nginx.url}/g2g"
    exe = shutil.which("rtmp_streamer_node", path=str(Path(sys.executable).parent)) or "rtmp_streamer_node"
    node_log = open(work / "streamer.log", "wb")
    streamer = subprocess.Popen([exe, "--ros-args", "-p", "image_topic:=/g2g/image", "-p", f"url:={url}", "-p", f"fps:={args.fps:g}",
                                 "-p", f"bitrate_kbps:={args.bitrate}", "-p", f"gop:={args.gop}", "-p", f"encoder:={args.encoder}",
                                 "-p", "ffmpeg_codec:=auto"],
                                stdout=node_log, stderr=subprocess.STDOUT, start_new_session=True)
    rclpy.init()
    node = rclpy.create_node("g2g_publisher")
    pub = node.create_publisher(Image, "/g2g/image", qos.SENSOR)
    stop = threading.Event()
    # A scene with some structure (gradients and blocks) that pans a few pixels per frame.
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([(xx * 255 // w), (yy * 255 // h), ((xx // 40 + yy // 40) % 2) * 120 + 60], axis=-1).astype(np.uint8)

    def publish() -> None:
        period = 1.0 / args.fps
        nxt = time.monotonic()
        i = 0
        while not stop.is_set():
            ms = int(time.time() * 1000) & ((1 << BITS) - 1)
            frame = stamp_frame(np.roll(base, i * 4, axis=1), ms)
            pub.publish(numpy_to_imgmsg(frame, "bgr8"))
            i += 1
            nxt += period
            time.sleep(max(0.0, nxt - time.monotonic()))

    threading.Thread(target=publish, daemon=True).start()
    latencies: list[float] = []
    reader = None
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # wait until the stream exists
            probe = subprocess.run(["ffprobe", "-v", "error", "-rw_timeout", "3000000", "-show_entries", "stream=width", "-of", "csv=p=0", url],
                                   capture_output=True, text=True, timeout=20)
            if probe.stdout.strip():
                break
            time.sleep(0.5)
        else:
            print("stream never appeared; streamer log:\n" + (work / "streamer.log").read_text()[-2000:])
            return 1
        reader = subprocess.Popen(["ffmpeg", "-hide_banner", "-loglevel", "error", "-fflags", "nobuffer", "-flags", "low_delay",
                                   "-probesize", "32", "-analyzeduration", "0", "-threads", "1", "-i", url,
                                   "-f", "rawvideo", "-pix_fmt", "gray", "-"], stdout=subprocess.PIPE, bufsize=0)
        assert reader.stdout is not None
        size = w * h
        t_end = time.monotonic() + args.warmup + args.seconds
        t_measure = time.monotonic() + args.warmup
        buf = bytearray(size)
        view = memoryview(buf)
        while time.monotonic() < t_end:
            got = 0
            while got < size:
                n = reader.stdout.readinto(view[got:])
                if not n:
                    raise RuntimeError("reader ended")
                got += n
            now_ms = int(time.time() * 1000) & ((1 << BITS) - 1)
            ms = read_stamp(np.frombuffer(buf, np.uint8).reshape(h, w))
            if time.monotonic() >= t_measure:
                lat = now_ms - ms
                if 0 <= lat < 60000:
                    latencies.append(lat)
    finally:
        stop.set()
        if reader is not None:
            reader.kill()
            reader.wait()
        streamer.send_signal(signal.SIGINT)
        try:
            streamer.wait(10)
        except subprocess.TimeoutExpired:
            streamer.kill()
        node.destroy_node()
        rclpy.try_shutdown()
        nginx.stop()
    if not latencies:
        print("no frames decoded")
        return 1
    print(f"glass-to-glass {w}x{h}@{args.fps:g} encoder={args.encoder} bitrate={args.bitrate}k gop={args.gop}: "
          f"n={len(latencies)} p50={percentile(latencies, 50):.0f} ms p90={percentile(latencies, 90):.0f} ms "
          f"p99={percentile(latencies, 99):.0f} ms mean={statistics.mean(latencies):.0f} ms")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
