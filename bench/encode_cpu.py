#!/usr/bin/env python3
"""CPU use of the live-stream encoder subprocess (CPU seconds per wall second, from /proc).

Feeds frames at the set rate through ``core.streaming.RtmpStreamer`` (the streamer node's core) to a
private nginx-rtmp and reads the encoder process's utime+stime over the measuring window. 1.0 = one
core fully busy. Frames: a real surveillance video scaled to each size (``--video``, default the
shared vtest.avi when present) or a synthetic panning scene.

    .venv/bin/python bench/encode_cpu.py --sizes 1280x720,1920x1080 --fps 30 --seconds 20
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
DEFAULT_VIDEO = REPO.parent / "shared" / "samples" / "vtest.avi"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def load_frames(video: str | None, w: int, h: int, n: int) -> list[np.ndarray]:
    import cv2

    frames: list[np.ndarray] = []
    if video and Path(video).is_file():
        cap = cv2.VideoCapture(video)
        while len(frames) < n:
            ok, img = cap.read()
            if not ok:
                break
            frames.append(cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR))
        cap.release()
    if not frames:
        yy, xx = np.mgrid[0:h, 0:w]
        base = np.stack([(xx * 255 // w), (yy * 255 // h), ((xx // 40 + yy // 40) % 2) * 120 + 60], axis=-1).astype(
            np.uint8
        )
        frames = [np.roll(base, i * 4, axis=1) for i in range(n)]
    return frames


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1280x720,1920x1080")
    ap.add_argument("--fps", type=float, default=30.0)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--warmup", type=float, default=3.0)
    ap.add_argument("--bitrate", type=int, default=0, help="kbit/s; 0 = 2500 for 720p, 4000 for 1080p")
    ap.add_argument("--encoder", default="ffmpeg", choices=["auto", "ffmpeg", "gstreamer"])
    ap.add_argument("--codec", default="auto", help="ffmpeg codec (auto = hardware when it works, else libx264)")
    ap.add_argument("--video", default=str(DEFAULT_VIDEO) if DEFAULT_VIDEO.is_file() else None)
    args = ap.parse_args()
    sys.path.insert(0, str(REPO / "src"))
    from nano_vision_ros.core.streaming import RtmpStreamer, StreamerOptions
    from nano_vision_ros.site.nginx_rtmp import NginxRtmp

    nginx = NginxRtmp(port=free_port(), workdir=Path(tempfile.mkdtemp(prefix="enc-cpu-")) / "nginx")
    nginx.start()
    try:
        for size in args.sizes.split(","):
            w, h = (int(v) for v in size.split("x"))
            frames = load_frames(args.video, w, h, 60)
            kbps = args.bitrate or (2500 if h <= 720 else 4000)
            st = RtmpStreamer(
                StreamerOptions(
                    url=f"{nginx.url}/cpu{w}",
                    width=w,
                    height=h,
                    fps=args.fps,
                    bitrate_kbps=kbps,
                    gop=int(args.fps),
                    encoder=args.encoder,
                    ffmpeg_codec=args.codec,
                )
            )
            period = 1.0 / args.fps
            t0 = time.monotonic()
            i = 0
            cpu0 = wall0 = None
            pid = None
            self_cpu0 = 0.0
            sent0 = 0
            while True:
                now = time.monotonic()
                if cpu0 is None and now - t0 >= args.warmup and st._proc is not None:
                    pid = st._proc.pid
                    cpu0, wall0, sent0 = cpu_seconds(pid), now, st.frames_sent
                    self_cpu0 = time.process_time()
                if wall0 is not None and now - wall0 >= args.seconds:
                    break
                st.push(frames[i % len(frames)])
                i += 1
                time.sleep(max(0.0, t0 + i * period - time.monotonic()))
            assert pid is not None and wall0 is not None and cpu0 is not None
            wall = time.monotonic() - wall0
            enc_cpu = (cpu_seconds(pid) - cpu0) / wall
            self_cpu = (time.process_time() - self_cpu0) / wall
            s = st.stats()
            st.close()
            print(
                f"encoder {s['encoder']} {w}x{h}@{args.fps:g} {kbps}k: encoder CPU {enc_cpu:.2f} core "
                f"(feeding process {self_cpu:.2f}); sent {(s['frames_sent'] - sent0) / wall:.1f} fps, "
                f"dropped {s['dropped']}, restarts {s['restarts']}, video={'vtest.avi' if args.video else 'synthetic'}"
            )
    finally:
        nginx.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
