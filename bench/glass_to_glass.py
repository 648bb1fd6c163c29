#!/usr/bin/env python3
"""Glass-to-glass latency of the live stream: publisher -> rtmp_streamer_node -> nginx-rtmp -> reader.

Each published frame carries its capture time (ms, 40-bit binary bar code in the top band). The
streamer node runs in its own process as in production; nginx-rtmp is a private instance on a free
127.0.0.1 port; the reader is an ffmpeg subprocess with the low-latency flags a viewer would use
(``-fflags nobuffer -flags low_delay``) that writes decoded gray frames to a pipe, where the bar
code is read back and compared with the clock. Prints p50/p90/p99 in ms.

    .venv/bin/python bench/glass_to_glass.py --size 1280x720 --fps 30 --seconds 20

The parts (stamped publisher, RTMP path, RTMP reader) are reused by bench/webrtc_latency.py,
which runs this path side by side with the browser's.
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
from typing import Any

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
        frame[:BAND, i * bw : (i + 1) * bw] = 255 if bit else 0
    return frame


def read_stamp(gray: np.ndarray) -> int:
    w = gray.shape[1]
    bw = w // BITS
    y = BAND // 2
    ms = 0
    for i in range(BITS):
        v = gray[y - 4 : y + 4, i * bw + bw // 4 : (i + 1) * bw - bw // 4].mean()
        ms = (ms << 1) | int(v > 127)
    return ms


def percentile(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(q / 100 * (len(s) - 1)))]


def summary(values: list[float]) -> str:
    return (
        f"n={len(values)} p50={percentile(values, 50):.0f} ms p90={percentile(values, 90):.0f} ms "
        f"p99={percentile(values, 99):.0f} ms mean={statistics.mean(values):.0f} ms"
    )


def ros_environment() -> None:
    """A private DDS domain on localhost with the shared-memory transport, before rclpy loads."""
    sys.path.insert(0, str(REPO / "src"))
    os.environ.setdefault("ROS_DOMAIN_ID", str(150 + os.getpid() % 80))
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    os.environ.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", str(REPO / "config" / "fastdds_shm.xml"))


def node_executable(name: str) -> str:
    return shutil.which(name, path=str(Path(sys.executable).parent)) or name


class StampedPublisher:
    """Publishes bgr8 frames with the wall-clock ms as a bar code, at `fps`, on its own thread."""

    def __init__(self, topic: str, w: int, h: int, fps: float) -> None:
        import rclpy
        from sensor_msgs.msg import Image

        from nano_vision_ros.ros import qos
        from nano_vision_ros.ros.image import numpy_to_imgmsg

        rclpy.init()
        self.node = rclpy.create_node("g2g_publisher")
        self._pub = self.node.create_publisher(Image, topic, qos.SENSOR)
        self._to_msg = numpy_to_imgmsg
        self._fps = fps
        self._stop = threading.Event()
        # A scene with some structure (gradients and blocks) that pans a few pixels per frame.
        yy, xx = np.mgrid[0:h, 0:w]
        self._base = np.stack(
            [(xx * 255 // w), (yy * 255 // h), ((xx // 40 + yy // 40) % 2) * 120 + 60], axis=-1
        ).astype(np.uint8)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        period = 1.0 / self._fps
        nxt = time.monotonic()
        i = 0
        while not self._stop.is_set():
            ms = int(time.time() * 1000) & ((1 << BITS) - 1)
            frame = stamp_frame(np.roll(self._base, i * 4, axis=1), ms)
            self._pub.publish(self._to_msg(frame, "bgr8"))
            i += 1
            nxt += period
            time.sleep(max(0.0, nxt - time.monotonic()))

    def close(self) -> None:
        import rclpy

        self._stop.set()
        self._thread.join(5)
        self.node.destroy_node()
        rclpy.try_shutdown()


class RtmpPath:
    """nginx-rtmp on a free port + rtmp_streamer_node (own process) publishing `topic` to it."""

    def __init__(self, work: Path, topic: str, fps: float, bitrate: int, gop: int, encoder: str) -> None:
        from nano_vision_ros.site.nginx_rtmp import NginxRtmp

        self.nginx = NginxRtmp(port=free_port(), workdir=work / "nginx")
        self.nginx.start()
        self.url = f"{self.nginx.url}/g2g"
        self.log_path = work / "streamer.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - open while the node runs
        self.proc = subprocess.Popen(
            [
                node_executable("rtmp_streamer_node"),
                "--ros-args",
                "-p",
                f"image_topic:={topic}",
                "-p",
                f"url:={self.url}",
                "-p",
                f"fps:={fps:g}",
                "-p",
                f"bitrate_kbps:={bitrate}",
                "-p",
                f"gop:={gop}",
                "-p",
                f"encoder:={encoder}",
                "-p",
                "ffmpeg_codec:=auto",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_stream(self, timeout: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            probe = subprocess.run(
                [
                    "ffprobe",
                    "-v",
                    "error",
                    "-rw_timeout",
                    "3000000",
                    "-show_entries",
                    "stream=width",
                    "-of",
                    "csv=p=0",
                    self.url,
                ],
                check=False,
                capture_output=True,
                text=True,
                timeout=20,
            )
            if probe.stdout.strip():
                return True
            time.sleep(0.5)
        return False

    def measure(self, w: int, h: int, warmup: float, seconds: float) -> list[float]:
        """Latencies (ms) of the frames a low-latency ffmpeg reader decodes after `warmup` s."""
        reader = subprocess.Popen(
            [
                "ffmpeg",
                "-hide_banner",
                "-loglevel",
                "error",
                "-fflags",
                "nobuffer",
                "-flags",
                "low_delay",
                "-probesize",
                "32",
                "-analyzeduration",
                "0",
                "-threads",
                "1",
                "-i",
                self.url,
                "-f",
                "rawvideo",
                "-pix_fmt",
                "gray",
                "-",
            ],
            stdout=subprocess.PIPE,
            bufsize=0,
        )
        assert reader.stdout is not None
        latencies: list[float] = []
        size = w * h
        t_measure = time.monotonic() + warmup
        t_end = t_measure + seconds
        buf = bytearray(size)
        view = memoryview(buf)
        try:
            while time.monotonic() < t_end:
                got = 0
                while got < size:
                    n = reader.stdout.readinto(view[got:])
                    if not n:
                        raise RuntimeError("reader ended")
                    got += n
                now_ms = int(time.time() * 1000) & ((1 << BITS) - 1)
                ms = read_stamp(np.frombuffer(buf, np.uint8).reshape(h, w))
                if time.monotonic() >= t_measure and 0 <= now_ms - ms < 60000:
                    latencies.append(now_ms - ms)
        finally:
            reader.kill()
            reader.wait()
        return latencies

    def close(self) -> None:
        stop_process(self.proc)
        self._log.close()
        self.nginx.stop()


def stop_process(proc: subprocess.Popen[Any]) -> None:
    """SIGINT to the process group (a node shuts down cleanly), SIGKILL after 10 s."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGINT)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


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

    ros_environment()
    work = Path(tempfile.mkdtemp(prefix="g2g-"))
    rtmp = RtmpPath(work, "/g2g/image", args.fps, args.bitrate, args.gop, args.encoder)
    pub = StampedPublisher("/g2g/image", w, h, args.fps)
    try:
        if not rtmp.wait_stream():
            print("stream never appeared; streamer log:\n" + rtmp.log_path.read_text()[-2000:])
            return 1
        latencies = rtmp.measure(w, h, args.warmup, args.seconds)
    finally:
        pub.close()
        rtmp.close()
    if not latencies:
        print("no frames decoded")
        return 1
    print(
        f"glass-to-glass {w}x{h}@{args.fps:g} encoder={args.encoder} bitrate={args.bitrate}k gop={args.gop}: "
        + summary(latencies)
    )
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
