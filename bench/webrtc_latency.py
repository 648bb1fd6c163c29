#!/usr/bin/env python3
"""Glass-to-glass latency to a browser (WebRTC) side by side with the RTMP path, on the same frames.

One publisher (rclpy, bgr8 frames carrying the wall-clock ms as a 40-bit bar code, see
bench/glass_to_glass.py) feeds both paths at once:

- WebRTC: webrtc_node (own process) -> headless Chromium (Debian `chromium`, test/cdp.py) playing
  the node's own page; a requestVideoFrameCallback draws each presented frame's top band to a
  canvas, reads the bar code back and subtracts it from the frame's expected display time.
- RTMP: rtmp_streamer_node (own process, ffmpeg/libx264) -> private nginx-rtmp -> a low-latency
  ffmpeg decoder on a pipe (the reader of bench/glass_to_glass.py).

Both are measured over the same window, so a loaded machine hits both alike. Also printed: the
CPU of webrtc_node (its encode included) while nobody watches and while one browser watches, and of
rtmp_streamer_node with its ffmpeg.

    .venv/bin/python bench/webrtc_latency.py --size 1280x720 --fps 30 --seconds 20
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "test"))

from glass_to_glass import (
    BAND,
    BITS,
    RtmpPath,
    StampedPublisher,
    free_port,
    node_executable,
    ros_environment,
    stop_process,
    summary,
)

# Runs in the page: every presented frame -> bar code -> (expected display time - capture time).
MEASURE_JS = """(() => {
  const v = document.getElementById('video');
  const c = document.createElement('canvas');
  const ctx = c.getContext('2d', {willReadFrequently: true});
  const MOD = 2 ** BITS;
  window.__lat = []; window.__unreadable = 0;
  function onFrame(now, md) {
    const w = md.width, bw = Math.floor(w / BITS);
    if (c.width !== w) { c.width = w; c.height = BAND; }
    ctx.drawImage(v, 0, 0, w, BAND, 0, 0, w, BAND);
    const d = ctx.getImageData(0, 0, w, BAND).data;
    let ms = 0, unsure = 0;
    for (let i = 0; i < BITS; i++) {
      const x = i * bw + (bw >> 1), k = ((BAND >> 1) * w + x) * 4;
      const lum = (d[k] + d[k + 1] + d[k + 2]) / 3;
      if (lum > 60 && lum < 195) unsure++;
      ms = ms * 2 + (lum > 127 ? 1 : 0);
    }
    const shown = (performance.timeOrigin + (md.expectedDisplayTime || now)) % MOD;
    const lat = (shown - ms + MOD) % MOD;
    if (unsure || lat > 60000) window.__unreadable++; else window.__lat.push(lat);
    v.requestVideoFrameCallback(onFrame);
  }
  v.requestVideoFrameCallback(onFrame);
  return true;
})()""".replace("BITS", str(BITS)).replace("BAND", str(BAND))


# The browser's own account of its delay: jitter buffer and decode time per frame (ms).
RTC_STATS_JS = """(async () => {
  let out = {};
  (await pc.getStats()).forEach(r => {
    if (r.type === 'inbound-rtp' && r.kind === 'video') out = {
      jitter_buffer_ms: 1000 * r.jitterBufferDelay / Math.max(1, r.jitterBufferEmittedCount),
      decode_ms: 1000 * r.totalDecodeTime / Math.max(1, r.framesDecoded),
      frames_decoded: r.framesDecoded, frames_dropped: r.framesDropped, decoder: r.decoderImplementation};
  });
  return out;
})()"""


def cpu_seconds(pid: int) -> float:
    """utime+stime of a process and its children (the streamer's ffmpeg)."""
    import psutil

    p = psutil.Process(pid)
    total = sum(p.cpu_times()[:2])
    for child in p.children(recursive=True):
        try:
            total += sum(child.cpu_times()[:2])
        except psutil.NoSuchProcess:
            pass
    return total


def cpu_over(pid: int, seconds: float) -> float:
    t0, c0 = time.monotonic(), cpu_seconds(pid)
    time.sleep(seconds)
    return (cpu_seconds(pid) - c0) / (time.monotonic() - t0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="1280x720")
    ap.add_argument("--fps", type=float, default=30.0)
    ap.add_argument("--seconds", type=float, default=20.0, help="measuring time after warm-up")
    ap.add_argument("--warmup", type=float, default=5.0)
    ap.add_argument("--bitrate", type=int, default=2500, help="kbit/s, both paths")
    ap.add_argument("--gop", type=int, default=30)
    ap.add_argument("--codec", default="h264", choices=["h264", "vp8"], help="WebRTC codec")
    args = ap.parse_args()
    w, h = (int(v) for v in args.size.split("x"))

    ros_environment()
    from cdp import Chromium

    work = Path(tempfile.mkdtemp(prefix="webrtc-g2g-"))
    topic = "/g2g/image"
    port = free_port()
    web_log = open(work / "webrtc.log", "wb")  # noqa: SIM115 - open while the node runs
    web = subprocess.Popen(
        [
            node_executable("webrtc_node"),
            "--ros-args",
            "-p",
            f"image_topic:={topic}",
            "-p",
            f"port:={port}",
            "-p",
            f"fps:={args.fps:g}",
            "-p",
            f"bitrate_kbps:={args.bitrate}",
            "-p",
            f"gop:={args.gop}",
            "-p",
            f"codec:={args.codec}",
        ],
        stdout=web_log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    rtmp = RtmpPath(work, topic, args.fps, args.bitrate, args.gop, "ffmpeg")
    pub = StampedPublisher(topic, w, h, args.fps)
    browser = None
    rtmp_lat: list[float] = []
    try:
        if not rtmp.wait_stream():
            print("RTMP stream never appeared; streamer log:\n" + rtmp.log_path.read_text()[-2000:])
            return 1
        idle_cpu = cpu_over(web.pid, 5.0)
        browser = Chromium(work / "chromium")
        page = browser.open(f"http://127.0.0.1:{port}/")
        deadline = time.monotonic() + 30
        while not page.evaluate("document.getElementById('video').videoWidth"):
            if time.monotonic() > deadline:
                print("the browser shows no picture; node log:\n" + (work / "webrtc.log").read_text()[-2000:])
                return 1
            time.sleep(0.3)
        page.evaluate(MEASURE_JS)
        reader = threading.Thread(target=lambda: rtmp_lat.extend(rtmp.measure(w, h, args.warmup, args.seconds)))
        reader.start()
        time.sleep(args.warmup)
        page.evaluate("window.__lat = []; window.__unreadable = 0; true")
        cpu_web = cpu_over(web.pid, args.seconds / 2)
        cpu_rtmp = cpu_over(rtmp.proc.pid, args.seconds / 2)
        reader.join(args.seconds + 30)
        result = page.evaluate("({lat: window.__lat, unreadable: window.__unreadable})")
        rtc = page.evaluate(RTC_STATS_JS)
        status = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=5).read())
    finally:
        if browser is not None:
            browser.close()
        pub.close()
        rtmp.close()
        stop_process(web)
        web_log.close()
    web_lat = [float(x) for x in result["lat"]]
    if not web_lat or not rtmp_lat:
        print(f"no frames measured (webrtc {len(web_lat)}, unreadable {result['unreadable']}; rtmp {len(rtmp_lat)})")
        return 1
    print(f"{w}x{h}@{args.fps:g} bitrate={args.bitrate}k gop={args.gop}, side by side, {args.seconds:g} s:")
    print(
        f"  webrtc ({args.codec}) -> chromium: {summary(web_lat)} (unreadable frames {result['unreadable']}, "
        f"frames encoded {status['frames_encoded']}, skipped by the fps limit {status['frames_skipped_fps']}, "
        f"encode {status['encode_ms']} ms/frame, deepest viewer queue {status['viewer_queue_max']} packets)"
    )
    print(
        f"  chromium: jitter buffer {rtc.get('jitter_buffer_ms', 0):.0f} ms, decode {rtc.get('decode_ms', 0):.1f} ms per frame "
        f"({rtc.get('decoder')}), frames decoded {rtc.get('frames_decoded')}, dropped {rtc.get('frames_dropped')}"
    )
    print(f"  rtmp (libx264) -> ffmpeg:      {summary(rtmp_lat)}")
    print(
        f"  cpu: webrtc_node idle {idle_cpu:.3f} cores, watched {cpu_web:.2f} cores; "
        f"rtmp_streamer_node + ffmpeg {cpu_rtmp:.2f} cores"
    )
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
