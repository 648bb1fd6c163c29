"""Browser live view over WebRTC: one shared encode, any number of viewers, nothing while none watch.

``LiveEncoder`` turns BGR frames into H.264 (libx264, baseline, zero latency) or VP8 packets with
PyAV. ``WebRtcServer`` runs an aiohttp server and the aiortc peer connections on an asyncio loop
in its own thread: ``GET /`` is the viewer page, ``POST /whep`` takes an SDP offer (WHEP:
``application/sdp`` in, ``201 Created`` + answer + ``Location`` out), ``DELETE /whep/<id>`` ends a
viewer. Every viewer's track yields the *same* encoded packets (aiortc only packetizes them), so
N viewers cost one encode. A viewer that falls behind skips to the next keyframe; a new viewer or
a browser's PLI/FIR asks the encoder for one. The first viewer calls ``on_active(True)`` (the node
subscribes to its image topic); the last one leaving calls ``on_active(False)`` and frees the
encoder. A bad offer is answered 400 with the reason and changes nothing else.

aiortc/PyAV/aiohttp are optional (``pip install nano_vision_ros[webrtc]``): imported when the
server is built, with a ``RuntimeMissingError`` naming the packages when absent.
"""

from __future__ import annotations

import asyncio
import fractions
import hmac
import ipaddress
import logging
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any

import numpy as np

from nano_vision_ros.core.errors import RuntimeMissingError

log = logging.getLogger(__name__)

CLOCK = 90000  # RTP video clock (Hz); packet timestamps are in 1/CLOCK s
MAX_OFFER_BYTES = 64 * 1024
VIEWER_QUEUE = 8  # packets a slow viewer may lag before it skips to the next keyframe
CONNECT_TIMEOUT = 15.0  # s an answered viewer may take to connect before its slot is freed


def _import_webrtc() -> tuple[Any, Any, Any]:
    try:
        import aiortc
        import av
        from aiohttp import web
    except ImportError as err:
        raise RuntimeMissingError(
            f"the WebRTC live view needs aiortc, av and aiohttp ({err}): pip install 'nano_vision_ros[webrtc]' "
            "(or requirements/webrtc.txt)"
        ) from None
    return aiortc, av, web


@dataclass
class WebRtcOptions:
    host: str = "127.0.0.1"
    port: int = 8889
    codec: str = "h264"  # h264 | vp8
    width: int = 0  # 0 = the frame's own size
    height: int = 0
    fps: float = 15.0
    bitrate_kbps: int = 1500
    gop: int = 30  # frames between keyframes (a lagging viewer resyncs at the next one)
    max_viewers: int = 4
    token: str = ""  # "" = no authentication; else `Authorization: Bearer <token>` or ?token=
    ice_addresses: tuple[str, ...] = ()  # () = the bind host when it is one address, else every interface
    title: str = "live view"


class LiveEncoder:
    """BGR frames -> encoded packets (PyAV), one encoder for every viewer."""

    def __init__(self, codec: str, width: int, height: int, fps: float, bitrate_kbps: int, gop: int) -> None:
        _aiortc, av, _web = _import_webrtc()
        self._av = av
        self.width, self.height = width, height
        name = {"h264": "libx264", "vp8": "libvpx"}[codec]
        ctx = av.CodecContext.create(name, "w")
        ctx.width, ctx.height = width, height
        ctx.pix_fmt = "yuv420p"
        ctx.time_base = fractions.Fraction(1, CLOCK)
        ctx.framerate = fractions.Fraction(round(fps * 1000), 1000)
        ctx.bit_rate = bitrate_kbps * 1000
        ctx.gop_size = gop
        ctx.thread_count = 1  # sliced/frame threads add delay; one core is plenty at these sizes
        if codec == "h264":
            # in-band SPS/PPS before every keyframe (no global header): a viewer may join at any IDR
            ctx.options = {"preset": "ultrafast", "tune": "zerolatency", "profile": "baseline"}
        else:
            ctx.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0", "error-resilient": "1"}
        self._ctx = ctx
        self._t0: float | None = None
        self._last_pts = -1
        self._last_sent = -1
        self.frames = 0

    def encode(self, bgr: np.ndarray, keyframe: bool = False) -> list[Any]:
        """Encode one frame; returns av.Packets (time_base 1/CLOCK), usually one."""
        av = self._av
        now = time.monotonic()
        if self._t0 is None:
            self._t0 = now
        pts = max(int((now - self._t0) * CLOCK), self._last_pts + 1)
        self._last_pts = pts
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(bgr), format="bgr24")
        frame = frame.reformat(width=self.width, height=self.height, format="yuv420p")
        frame.pts = pts
        frame.time_base = fractions.Fraction(1, CLOCK)
        frame.pict_type = av.video.frame.PictureType.I if keyframe else av.video.frame.PictureType.NONE
        packets = list(self._ctx.encode(frame))
        # RTP time = when the frame leaves the encoder, not when it was pushed: the browser sizes
        # its jitter buffer by how irregularly frames arrive against their RTP times, and a
        # software encode on a busy board varies by tens of ms from frame to frame.
        sent = max(int((time.monotonic() - self._t0) * CLOCK), self._last_sent + 1)
        self._last_sent = sent
        for p in packets:
            p.time_base = fractions.Fraction(1, CLOCK)
            p.pts = p.dts = sent
        self.frames += 1
        return packets

    def close(self) -> None:
        self._ctx = None  # PyAV frees the codec context with the object


def _track_class() -> type:
    """The aiortc MediaStreamTrack subclass (built lazily: aiortc is optional)."""
    _import_webrtc()  # a clear error where aiortc is missing
    from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

    class SharedPacketTrack(MediaStreamTrack):
        """A viewer's video track: yields the shared encoder's packets, from a keyframe on."""

        kind = "video"

        def __init__(self, on_lag: Callable[[], None]) -> None:
            super().__init__()
            self._queue: deque[Any] = deque()
            self._ready = asyncio.Event()
            self._on_lag = on_lag
            self.need_keyframe = True
            self.sent = 0
            self.skipped = 0
            self.queue_max = 0  # deepest this viewer's queue has been (packets): sender lag

        def offer(self, packet: Any, keyframe: bool) -> None:
            """Called on the loop for every encoded packet."""
            if self.readyState != "live":
                return
            if self.need_keyframe and not keyframe:
                self.skipped += 1
                return
            if len(self._queue) >= VIEWER_QUEUE:  # this viewer lags: drop what it has, resync at a keyframe
                self.skipped += len(self._queue) + 1
                self._queue.clear()
                self.need_keyframe = True
                self._on_lag()
                return
            self.need_keyframe = False
            self._queue.append(packet)
            self.queue_max = max(self.queue_max, len(self._queue))
            self._ready.set()

        async def recv(self) -> Any:
            while not self._queue:
                if self.readyState != "live":
                    raise MediaStreamError
                self._ready.clear()
                await self._ready.wait()
            self.sent += 1
            return self._queue.popleft()

        def stop(self) -> None:
            super().stop()
            self._ready.set()

    return SharedPacketTrack


class OfferError(ValueError):
    """An SDP offer the server cannot answer (the HTTP 400 text)."""


class WebRtcServer:
    """The HTTP + WebRTC side of the live view (see the module docstring); thread-safe ``push``."""

    def __init__(self, options: WebRtcOptions, on_active: Callable[[bool], None]) -> None:
        self._aiortc, self._av, self._web = _import_webrtc()
        self.opts = options
        self._on_active = on_active
        self._track_cls = _track_class()
        self._page = resources.files("nano_vision_ros.data").joinpath("webrtc_view.html").read_text()
        self._page = self._page.replace("{{TITLE}}", _html_escape(options.title))
        self._viewers: dict[str, tuple[Any, Any]] = {}  # id -> (RTCPeerConnection, track); loop thread only
        self._lock = threading.Lock()  # encoder state shared with the pushing thread
        self._encoder: LiveEncoder | None = None
        self._keyframe = False
        self._active = False
        self._next_due = 0.0
        self.stats: dict[str, int] = {
            "viewers_total": 0,
            "bad_offers": 0,
            "refused_full": 0,
            "unauthorized": 0,
            "frames_in": 0,
            "frames_encoded": 0,
            "frames_skipped_fps": 0,
            "encode_errors": 0,
        }
        self.last_error = ""
        self.encode_ms = 0.0  # moving average of conversion + encode per frame
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._start_error: BaseException | None = None
        self._runner: Any = None
        self._thread = threading.Thread(target=self._run, name="webrtc-loop", daemon=True)
        self._thread.start()
        self._started.wait(15)
        if self._start_error is not None:
            raise self._start_error
        if not self._started.is_set():
            raise RuntimeError("the WebRTC server did not start in 15 s")

    # --- thread: asyncio loop with aiohttp + aiortc -------------------------------------------
    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._start())
        except BaseException as err:  # noqa: BLE001 - port taken, bad address: re-raised in __init__
            self._start_error = err
            self._started.set()
            return
        self._started.set()
        self._loop.run_forever()

    async def _start(self) -> None:
        _limit_ice_addresses(self.opts)
        web = self._web
        app = web.Application(client_max_size=MAX_OFFER_BYTES)
        app.router.add_get("/", self._get_page)
        app.router.add_post("/whep", self._post_whep)
        app.router.add_delete("/whep/{id}", self._delete_whep)
        app.router.add_route("PATCH", "/whep/{id}", self._patch_whep)
        app.router.add_get("/status", self._get_status)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.opts.host, self.opts.port)
        await site.start()

    def _authorized(self, request: Any) -> bool:
        if not self.opts.token:
            return True
        given = request.query.get("token", "")
        auth = request.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            given = auth[7:]
        ok = hmac.compare_digest(given.encode(), self.opts.token.encode())
        if not ok:
            self.stats["unauthorized"] += 1
        return ok

    async def _get_page(self, request: Any) -> Any:
        if not self._authorized(request):
            return self._web.Response(status=401, text="token required: open /?token=...\n")
        return self._web.Response(
            text=self._page, content_type="text/html", headers={"Cache-Control": "no-store", "X-Frame-Options": "DENY"}
        )

    async def _get_status(self, request: Any) -> Any:
        if not self._authorized(request):
            return self._web.Response(status=401, text="token required\n")
        return self._web.json_response(self.status())

    async def _post_whep(self, request: Any) -> Any:
        web = self._web
        if not self._authorized(request):
            return web.Response(
                status=401,
                text="token required (Authorization: Bearer <token>)\n",
                headers={"WWW-Authenticate": "Bearer"},
            )
        if len(self._viewers) >= self.opts.max_viewers:
            self.stats["refused_full"] += 1
            return web.Response(
                status=503,
                text=f"{self.opts.max_viewers} viewers already: try again later\n",
                headers={"Retry-After": "10"},
            )
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            self.stats["bad_offers"] += 1
            return web.Response(status=413, text=f"offer larger than {MAX_OFFER_BYTES} bytes\n")
        try:
            answer, viewer_id = await self._answer(body)
        except OfferError as err:
            self.stats["bad_offers"] += 1
            self.last_error = f"bad offer: {err}"
            log.warning("refused a WebRTC offer from %s: %s", request.remote, err)
            return web.Response(status=400, text=f"bad offer: {err}\n")
        return web.Response(
            status=201, text=answer, content_type="application/sdp", headers={"Location": f"/whep/{viewer_id}"}
        )

    async def _answer(self, body: bytes) -> tuple[str, str]:
        aiortc = self._aiortc
        try:
            sdp = body.decode("utf-8")
        except UnicodeDecodeError:
            raise OfferError("not UTF-8 text") from None
        if not sdp.startswith("v=0"):
            raise OfferError("not an SDP offer (must start with 'v=0'; send it as application/sdp)")
        if "m=video" not in sdp:
            raise OfferError("the offer has no video section (recvonly m=video)")
        mime = {"h264": "video/H264", "vp8": "video/VP8"}[self.opts.codec]
        if mime.split("/")[1].lower() not in sdp.lower():
            raise OfferError(f"the offer does not accept {mime}, the codec this node sends")
        _check_security_lines(sdp)
        sdp = _only_reachable_candidates(sdp, _ice_addresses(self.opts))
        pc = aiortc.RTCPeerConnection()
        track = self._track_cls(self.request_keyframe)
        try:
            transceiver = pc.addTransceiver(track, direction="sendonly")
            caps = aiortc.RTCRtpSender.getCapabilities("video")
            transceiver.setCodecPreferences([c for c in caps.codecs if c.mimeType in (mime, "video/rtx")])
            try:
                await pc.setRemoteDescription(aiortc.RTCSessionDescription(sdp=sdp, type="offer"))
                await pc.setLocalDescription(await pc.createAnswer())
            except Exception as err:  # noqa: BLE001 - aiortc raises ValueError/KeyError/… on malformed SDP
                raise OfferError(f"{type(err).__name__}: {err}"[:300]) from None
            if transceiver.currentDirection in (None, "inactive"):
                raise OfferError("no video transceiver could be negotiated (does the offer receive video?)")
        except BaseException:
            track.stop()
            await pc.close()
            raise
        viewer_id = uuid.uuid4().hex
        sender = transceiver.sender
        plain_keyframe = sender._send_keyframe  # a browser's PLI/FIR must reach the shared encoder

        def keyframe() -> None:
            plain_keyframe()
            track.need_keyframe = True
            self.request_keyframe()

        sender._send_keyframe = keyframe
        self._viewers[viewer_id] = (pc, track)
        self.stats["viewers_total"] += 1

        @pc.on("connectionstatechange")
        async def _state() -> None:
            if pc.connectionState in ("failed", "closed"):
                await self._drop(viewer_id)

        self._loop.call_later(CONNECT_TIMEOUT, lambda: self._loop.create_task(self._drop_if_unconnected(viewer_id)))
        self._set_active()
        self.request_keyframe()
        log.info("viewer %s joined (%d watching)", viewer_id[:8], len(self._viewers))
        return pc.localDescription.sdp, viewer_id

    async def _drop_if_unconnected(self, viewer_id: str) -> None:
        entry = self._viewers.get(viewer_id)
        if entry is not None and entry[0].connectionState != "connected":
            await self._drop(viewer_id)

    async def _drop(self, viewer_id: str) -> None:
        entry = self._viewers.pop(viewer_id, None)
        if entry is None:
            return
        pc, track = entry
        track.stop()
        await pc.close()
        log.info("viewer %s left (%d watching)", viewer_id[:8], len(self._viewers))
        self._set_active()

    async def _delete_whep(self, request: Any) -> Any:
        if not self._authorized(request):
            return self._web.Response(status=401, text="token required\n")
        viewer_id = request.match_info["id"]
        if viewer_id not in self._viewers:
            return self._web.Response(status=404, text="no such viewer\n")
        await self._drop(viewer_id)
        return self._web.Response(status=200)

    async def _patch_whep(self, request: Any) -> Any:
        # Trickle ICE is not needed: the answer carries every candidate (aiortc gathers first).
        return self._web.Response(status=405, text="trickle ICE is not supported; the answer has all candidates\n")

    def _set_active(self) -> None:
        active = bool(self._viewers)
        if active == self._active:
            return
        self._active = active
        if not active:
            with self._lock:
                if self._encoder is not None:
                    self._encoder.close()
                self._encoder = None
        try:
            self._on_active(active)
        except Exception as err:  # noqa: BLE001 - the node's subscribe/unsubscribe must not break the server
            self.last_error = f"on_active({active}): {err}"
            log.warning("%s", self.last_error)

    def _fan_out(self, packets: list[Any], keyframe: bool) -> None:
        for _pc, track in list(self._viewers.values()):
            for p in packets:
                track.offer(p, keyframe)

    # --- any thread ----------------------------------------------------------------------------
    def request_keyframe(self) -> None:
        self._keyframe = True

    @property
    def viewers(self) -> int:
        return len(self._viewers)

    def push(self, bgr: np.ndarray) -> bool:
        """Encode a frame for the viewers (call from a worker thread); False when skipped."""
        self.stats["frames_in"] += 1
        if not self._viewers:
            return False
        now = time.monotonic()
        period = 1.0 / self.opts.fps
        if now < self._next_due - period / 2:  # ahead of the rate; a late frame earns no burst beyond one period
            self.stats["frames_skipped_fps"] += 1
            return False
        self._next_due = max(self._next_due, now - period) + period
        with self._lock:
            if self._encoder is None:
                h, w = bgr.shape[:2]
                ow = self.opts.width or w - w % 2
                oh = self.opts.height or h - h % 2
                self._encoder = LiveEncoder(
                    self.opts.codec, ow, oh, self.opts.fps, self.opts.bitrate_kbps, self.opts.gop
                )
                self._keyframe = True
            key, self._keyframe = self._keyframe, False
            t0 = time.perf_counter()
            try:
                packets = self._encoder.encode(bgr, keyframe=key)
                ms = (time.perf_counter() - t0) * 1000
                self.encode_ms = ms if not self.encode_ms else 0.9 * self.encode_ms + 0.1 * ms
            except Exception as err:
                self.stats["encode_errors"] += 1
                self.last_error = f"encode: {type(err).__name__}: {err}"
                raise
        if not packets:
            return False
        self.stats["frames_encoded"] += 1
        is_key = any(p.is_keyframe for p in packets)
        self._loop.call_soon_threadsafe(self._fan_out, packets, is_key)
        return True

    def status(self) -> dict[str, object]:
        tracks = [t for _pc, t in list(self._viewers.values())]
        return {
            "viewers": len(tracks),
            "active": self._active,
            "codec": self.opts.codec,
            "url": f"http://{self.opts.host}:{self.opts.port}/",
            **self.stats,
            "viewer_packets_sent": sum(t.sent for t in tracks),
            "viewer_packets_skipped": sum(t.skipped for t in tracks),
            "viewer_queue_max": max((t.queue_max for t in tracks), default=0),
            "encode_ms": round(self.encode_ms, 1),
        }

    def close(self) -> None:
        """Close every viewer and the HTTP server; joins the loop thread."""
        if not self._loop.is_running():
            return

        async def _shutdown() -> None:
            for viewer_id in list(self._viewers):
                await self._drop(viewer_id)
            if self._runner is not None:
                await self._runner.cleanup()
            rest = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in rest:  # aiortc's connect/ICE tasks of viewers that were still starting
                t.cancel()
            await asyncio.gather(*rest, return_exceptions=True)

        try:
            asyncio.run_coroutine_threadsafe(_shutdown(), self._loop).result(10)
        except Exception as err:  # noqa: BLE001 - closing must not raise at node shutdown
            log.debug("webrtc shutdown: %s", err)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)


def _limit_ice_addresses(opts: WebRtcOptions) -> None:
    """Offer ICE candidates only on the addresses the node serves on.

    aioice gathers host candidates on every interface except 127.0.0.1 and has no option for it:
    a node bound to 127.0.0.1 would offer only other interfaces, and one bound to a LAN address
    would also offer the rest. Its module-level ``get_host_addresses`` is replaced (this process
    runs one live view).
    """
    import aioice.ice

    addresses = _ice_addresses(opts)
    if not addresses:
        return
    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: [
        a for a in addresses if (":" in a and use_ipv6) or (":" not in a and use_ipv4)
    ]


_FINGERPRINT = re.compile(
    r"^a=fingerprint:(sha-1|sha-224|sha-256|sha-384|sha-512) ([0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2})+)\s*$", re.MULTILINE
)


def _check_security_lines(sdp: str) -> None:
    """ICE credentials and a well-formed DTLS fingerprint, checked before any peer connection exists.

    aiortc accepts a malformed fingerprint and fails only in the DTLS handshake, holding a viewer
    slot until then; an offer without them is refused here with the reason.
    """
    for attr in ("a=ice-ufrag:", "a=ice-pwd:"):
        if attr not in sdp:
            raise OfferError(f"the offer has no {attr[2:-1]} (ICE credentials)")
    lines = [line for line in sdp.splitlines() if line.startswith("a=fingerprint:")]
    if not lines:
        raise OfferError("the offer has no a=fingerprint (DTLS)")
    for line in lines:
        if not _FINGERPRINT.match(line):
            raise OfferError(f"malformed DTLS fingerprint {line[:80]!r}")


def _ice_addresses(opts: WebRtcOptions) -> list[str]:
    """The addresses this node offers ICE candidates on; [] = every interface."""
    return list(opts.ice_addresses) or ([] if opts.host in ("0.0.0.0", "::", "") else [opts.host])


def _only_reachable_candidates(sdp: str, addresses: list[str]) -> str:
    """An offer without the browser's candidates that a loopback-only server cannot reach.

    A node serving on 127.0.0.1 would otherwise send connectivity checks to the browser's LAN
    addresses (they fail: 'source address mismatch'); the browser's own checks to our loopback
    candidate still find the pair (a peer-reflexive candidate).
    """
    if not addresses or not all(ipaddress.ip_address(a).is_loopback for a in addresses if _is_ip(a)):
        return sdp
    keep = []
    for line in sdp.splitlines(keepends=True):
        if line.startswith("a=candidate:"):
            fields = line.split()
            if len(fields) > 4 and not (_is_ip(fields[4]) and ipaddress.ip_address(fields[4]).is_loopback):
                continue
        keep.append(line)
    return "".join(keep)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        return False


def _html_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
