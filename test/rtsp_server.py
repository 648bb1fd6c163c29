#!/usr/bin/python3
"""A real RTSP camera for the tests and the capture-latency bench (GStreamer's gst-rtsp-server).

Run with the system Python (``/usr/bin/python3``: it has python3-gi and the GstRtspServer
typelib; the project's venv has neither). Listens on 127.0.0.1 only.

Mount ``/cam`` serves H.264 (x264enc, tune=zerolatency, baseline, an IDR every second, SPS/PPS
in-band) of a generated picture whose top row carries the frame index as 32 black/white blocks,
in the layout of ``nano_vision_ros.core.capture.decode_frame_index``. Every frame's index and
the wall time (``time.time_ns()``) it was handed to the encoder go to ``--stamps`` (one
``index ns`` line each), so a receiver on the same machine can measure capture latency.
``--switch-after S --size2 WxH`` changes the picture size S seconds after the server sent its
first frame, in the running session (the encoder is renegotiated; new SPS/PPS go in-band) and for
every later session. ``--video FILE`` adds mount ``/video``: the
H.264 of an MP4 (the bundled sample) payloaded as it is. ``--user/--password`` require HTTP basic
authentication. The first stdout line is ``READY <port>``; then one ``client <ns>`` line per TCP
connection (for counting retries). Stop it by PID (SIGTERM or SIGKILL).
"""

from __future__ import annotations

import argparse
import signal
import sys
import time

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer

BITS = 32


def block_size(width: int, height: int) -> int:
    """As core.capture.pattern.block_size: 16 px blocks from 544x64 up."""
    return max(1, min(16, width // (BITS + 2), height // 4))


class Picture:
    """GRAY8 frames: a scrolling sawtooth background and the index code on the top rows."""

    def __init__(self, width: int, height: int) -> None:
        self.width, self.height = width, height
        self.b = block_size(width, height)
        self._bg = bytes((x * 3) % 200 + 40 for x in range(2 * width))

    def frame(self, index: int) -> bytes:
        w, h, b = self.width, self.height, self.b
        off = (index * 4) % w
        bg = self._bg[off : off + w]
        code = bytearray(bg)
        code[: (BITS + 2) * b] = bytes((BITS + 2) * b)
        for i in range(BITS):
            if (index & 0xFFFFFFFF) >> (BITS - 1 - i) & 1:
                code[(i + 1) * b : (i + 2) * b] = b"\xff" * b
        return bytes(code) * b + bg * (h - b)


def parse_size(text: str) -> tuple[int, int]:
    w, _, h = text.lower().partition("x")
    return int(w), int(h)


class Camera:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.index = 0  # global over sessions, so every stamp line names one frame
        self.t0 = 0.0  # monotonic time of the first frame sent
        self.stamps = open(args.stamps, "a", buffering=1) if args.stamps else None  # noqa: SIM115 - open while serving

    def caps(self, width: int, height: int) -> Gst.Caps:
        return Gst.Caps.from_string(
            f"video/x-raw,format=GRAY8,width={width},height={height},framerate={self.args.fps}/1"
        )

    def launch(self) -> str:
        a = self.args
        w, h = parse_size(a.size)
        return (
            f"( appsrc name=src is-live=true format=time do-timestamp=true caps=video/x-raw,format=GRAY8,"
            f"width={w},height={h},framerate={a.fps}/1 ! videoconvert ! video/x-raw,format=I420 ! "
            f"x264enc tune=zerolatency speed-preset=ultrafast key-int-max={a.fps} bitrate={a.bitrate} "
            f"threads=1 sliced-threads=false {a.x264} ! "
            f"video/x-h264,profile=baseline ! rtph264pay name=pay0 pt=96 config-interval=-1 )"
        )

    def size(self) -> tuple[int, int]:
        if not self.t0:
            self.t0 = time.monotonic()
        switched = self.args.switch_after and time.monotonic() - self.t0 >= self.args.switch_after
        return parse_size(self.args.size2 if switched else self.args.size)

    def on_media(self, _factory: GstRtspServer.RTSPMediaFactory, media: GstRtspServer.RTSPMedia) -> None:
        appsrc = media.get_element().get_child_by_name("src")
        state = {"pic": None, "alive": True}

        def push() -> bool:
            if not state["alive"]:
                return False
            size = self.size()
            if state["pic"] is None or (state["pic"].width, state["pic"].height) != size:
                appsrc.set_property("caps", self.caps(*size))
                state["pic"] = Picture(*size)
            data = state["pic"].frame(self.index)
            buf = Gst.Buffer.new_allocate(None, len(data), None)  # a copy GStreamer owns
            buf.fill(0, data)
            if self.stamps is not None:
                self.stamps.write(f"{self.index} {time.time_ns()}\n")
            self.index += 1
            appsrc.emit("push-buffer", buf)
            return True

        def unprepared(_media: GstRtspServer.RTSPMedia) -> None:
            state["alive"] = False

        media.connect("unprepared", unprepared)
        GLib.timeout_add(max(1, round(1000 / self.args.fps)), push)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--size", default="640x480")
    p.add_argument("--fps", type=int, default=15)
    p.add_argument("--bitrate", type=int, default=2000, help="kbit/s")
    p.add_argument("--switch-after", type=float, default=0.0, help="seconds into a session; 0 = never")
    p.add_argument("--size2", default="320x240")
    p.add_argument("--video", default="", help="an H.264 MP4 served as it is on /video")
    p.add_argument("--user", default="")
    p.add_argument("--password", default="")
    p.add_argument("--x264", default="", help="more x264enc properties")
    p.add_argument("--stamps", default="", help="file for 'index wall_ns' lines")
    args = p.parse_args()

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    mounts = server.get_mount_points()
    cam = Camera(args)
    factories = []

    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(cam.launch())
    factory.set_shared(False)
    factory.connect("media-configure", cam.on_media)
    mounts.add_factory("/cam", factory)
    factories.append(factory)
    if args.video:
        video = GstRtspServer.RTSPMediaFactory()
        video.set_launch(
            f"( filesrc location={args.video} ! qtdemux ! h264parse ! rtph264pay name=pay0 pt=96 config-interval=-1 )"
        )
        mounts.add_factory("/video", video)
        factories.append(video)

    if args.user:
        auth = GstRtspServer.RTSPAuth()
        token = GstRtspServer.RTSPToken()
        token.set_string("media.factory.role", "user")
        auth.add_basic(GstRtspServer.RTSPAuth.make_basic(args.user, args.password), token)
        server.set_auth(auth)
        role = Gst.Structure.from_string(
            "user, media.factory.access=(boolean)true, media.factory.construct=(boolean)true"
        )[0]
        for f in factories:
            f.add_role_from_structure(role)

    def connected(_server: GstRtspServer.RTSPServer, _client: GstRtspServer.RTSPClient) -> None:
        print(f"client {time.time_ns()}", flush=True)

    server.connect("client-connected", connected)
    if server.attach(None) == 0:
        print(f"cannot listen on 127.0.0.1:{args.port}", file=sys.stderr, flush=True)
        return 1
    print(f"READY {server.get_bound_port()}", flush=True)
    loop = GLib.MainLoop()
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGTERM, loop.quit)
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGINT, loop.quit)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
