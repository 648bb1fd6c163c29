"""Browser live view over WebRTC: webrtc_node (own process) fed by camera_node over DDS, watched by
a real headless Chromium (test/cdp.py); bad offers, tokens, viewers that leave, the missing extra."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
import yaml
from conftest import REPO, free_port, wait_for

# The page's own state, read through the DevTools protocol: the <video> element and the decoder.
PLAYBACK_JS = """(async () => {
  const v = document.getElementById('video');
  const q = v.getVideoPlaybackQuality();
  let decoded = 0;
  if (typeof pc !== 'undefined' && pc) {
    (await pc.getStats()).forEach(r => { if (r.type === 'inbound-rtp' && r.kind === 'video') decoded = r.framesDecoded; });
  }
  return {width: v.videoWidth, height: v.videoHeight, time: v.currentTime, frames: q.totalVideoFrames,
          decoded: decoded, state: document.getElementById('state').textContent};
})()"""


def http(method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None) -> tuple[int, str]:
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=15) as r:
            return r.status, r.read().decode(errors="replace")
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode(errors="replace")


def status(port: int, token: str = "") -> dict:
    code, text = http("GET", f"http://127.0.0.1:{port}/status" + (f"?token={token}" if token else ""))
    assert code == 200, text
    return json.loads(text)


@pytest.fixture
def browser(tmp_path):
    import cdp  # test/cdp.py

    if cdp.chromium_path() is None:
        pytest.fail("chromium is not installed: scripts/install_test_debs.sh (requirements/test.debs)")
    b = cdp.Chromium(tmp_path / "chromium")
    yield b
    b.close()


def wait_http(port: int) -> None:
    def up() -> bool:
        try:
            return http("GET", f"http://127.0.0.1:{port}/status")[0] in (200, 401)
        except OSError:  # not listening yet
            return False

    wait_for(up, 30, interval=0.2, what="webrtc_node's HTTP port")


@pytest.mark.timeout(150)
def test_chromium_plays_the_live_view_and_a_leaving_viewer_frees_everything(start_node, ros_node, browser, samples):
    port = free_port()
    cam = start_node(
        "camera_node",
        "-r",
        "__ns:=/wcam",
        "-p",
        f"source:={REPO / 'samples' / 'vtest.mp4'}",
        "-p",
        "loop:=true",
        name="camera",
    )
    web = start_node(
        "webrtc_node",
        "-r",
        "__ns:=/wcam",
        "-p",
        "image_topic:=image_raw",
        "-p",
        f"port:={port}",
        "-p",
        "fps:=10.0",
        name="webrtc",
    )
    probe = ros_node("webrtc_probe")
    wait_http(port)
    # idle without a viewer: no subscription, so the camera (or the detector's annotation) has no reader
    wait_for(lambda: probe.count_publishers("/wcam/image_raw") >= 1, 30, what="camera publishing")
    time.sleep(1.0)
    assert probe.count_subscribers("/wcam/image_raw") == 0
    assert status(port)["viewers"] == 0

    page = browser.open(f"http://127.0.0.1:{port}/")
    wait_for(lambda: page.evaluate(PLAYBACK_JS)["width"] > 0, 40, interval=0.5, what="the video to show a picture")
    first = page.evaluate(PLAYBACK_JS)
    time.sleep(2.0)
    later = page.evaluate(PLAYBACK_JS)
    assert (first["width"], first["height"]) == (768, 576)
    assert later["time"] > first["time"] + 1.0, (first, later)  # playing, not a still
    assert later["frames"] > first["frames"] + 5, (first, later)
    assert later["decoded"] > first["decoded"] + 5, (first, later)
    assert later["state"] == "live"
    assert probe.count_subscribers("/wcam/image_raw") == 1

    # a second viewer shares the one encode: packets sent to viewers grow twice as fast as frames encoded
    page2 = browser.open(f"http://127.0.0.1:{port}/")
    wait_for(lambda: page2.evaluate(PLAYBACK_JS)["frames"] > 3, 40, interval=0.5, what="the second viewer playing")
    s1 = status(port)
    time.sleep(2.0)
    s2 = status(port)
    assert s2["viewers"] == 2
    encoded = s2["frames_encoded"] - s1["frames_encoded"]
    sent = s2["viewer_packets_sent"] - s1["viewer_packets_sent"]
    assert encoded >= 10 and sent >= 1.6 * encoded, (s1, s2)
    assert probe.count_subscribers("/wcam/image_raw") == 1  # still one subscription

    # both tabs closed (the page says goodbye with DELETE /whep/<id>): no viewer, no subscription, no encoder
    for p in (page, page2):
        p.call("Page.close")
        p.close()
    wait_for(lambda: status(port)["viewers"] == 0, 40, interval=0.5, what="the viewers to be dropped")
    wait_for(lambda: probe.count_subscribers("/wcam/image_raw") == 0, 15, what="the subscription to go")
    s3 = status(port)
    time.sleep(1.5)
    assert status(port)["frames_encoded"] == s3["frames_encoded"] and not s3["active"]
    assert web.alive() and cam.alive()


@pytest.mark.timeout(90)
def test_bad_offers_are_400_tokens_are_checked_and_the_node_keeps_serving(start_node, tmp_path, browser):
    port = free_port()
    token_file = tmp_path / "token"
    token_file.write_text("s3cret-token\n")
    web = start_node(
        "webrtc_node", "-p", f"port:={port}", "-p", f"token_file:={token_file}", "-p", "max_viewers:=1", name="webrtc"
    )
    wait_http(port)
    base = f"http://127.0.0.1:{port}"
    auth = {"Authorization": "Bearer s3cret-token", "Content-Type": "application/sdp"}
    assert http("GET", base + "/")[0] == 401
    assert http("GET", base + "/?token=wrong")[0] == 401
    assert http("POST", base + "/whep", b"v=0\r\n", {"Content-Type": "application/sdp"})[0] == 401
    code, page = http("GET", base + "/?token=s3cret-token")
    assert code == 200 and "<video" in page

    # a real browser offer, then mangled copies of it
    tab = browser.open("about:blank")
    offer = tab.evaluate("""(async () => { const pc = new RTCPeerConnection();
        pc.addTransceiver('video', {direction: 'recvonly'});
        await pc.setLocalDescription(await pc.createOffer()); return pc.localDescription.sdp; })()""")
    assert "m=video" in offer
    no_video = offer.split("m=video")[0]
    only_vp9 = "\r\n".join(
        line for line in offer.split("\r\n") if not any(c in line for c in ("H264", "VP8", "profile-level-id"))
    )
    broken_fingerprint = offer.replace("a=fingerprint:sha-256 ", "a=fingerprint:sha-256 ZZ:")
    cases = [
        (b"hello", "not an SDP offer"),
        (b"\xff\xfe\x00garbage", "not UTF-8"),
        (no_video.encode(), "no video section"),
        (only_vp9.encode(), "does not accept video/H264"),
        (broken_fingerprint.encode(), "malformed DTLS fingerprint"),
        (b"v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=rtpmap:96 H264/90000\r\n" + b"a=x\r\n" * 10, "no ice-ufrag"),
        (offer.replace("m=video 9", "m=video nine").encode(), "bad offer: "),
    ]
    for body, needle in cases:
        code, text = http("POST", base + "/whep", body, auth)
        assert code == 400 and needle in text, (needle, code, text)
    assert http("POST", base + "/whep", b"v=0\r\n" + b"a=x" * 40000, auth)[0] == 413
    assert web.alive()
    st = status(port, "s3cret-token")
    assert st["bad_offers"] == len(cases) + 1 and st["viewers"] == 0 and not st["active"]

    # still serving: the untouched offer is answered, and a second viewer is refused (max_viewers 1)
    code, answer = http("POST", base + "/whep", offer.encode(), auth)
    assert code == 201 and answer.startswith("v=0") and "H264" in answer
    assert http("POST", base + "/whep", offer.encode(), auth)[0] == 503
    assert status(port, "s3cret-token")["viewers"] == 1
    assert http("DELETE", base + "/whep/not-a-viewer", None, auth)[0] == 404
    tab.close()
    assert web.alive()


def test_missing_extra_is_named(monkeypatch):
    """Without aiortc the server refuses with the packages to install (the node turns it into exit 2)."""
    from nano_vision_ros.core.errors import RuntimeMissingError
    from nano_vision_ros.core.streaming import webrtc

    monkeypatch.setitem(sys.modules, "aiortc", None)
    with pytest.raises(RuntimeMissingError, match=r"aiortc.*nano_vision_ros\[webrtc\]"):
        webrtc.WebRtcServer(webrtc.WebRtcOptions(port=free_port()), lambda on: None)


@pytest.mark.timeout(60)
def test_port_in_use_and_bad_parameters_exit_2(start_node):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        busy = s.getsockname()[1]
        node = start_node("webrtc_node", "-p", f"port:={busy}", name="busy")
        node.proc.wait(30)
        assert node.proc.returncode == 2 and "parameter 'port'" in node.log()
    node = start_node("webrtc_node", "-p", "width:=641", name="odd")
    node.proc.wait(30)
    assert node.proc.returncode == 2 and "parameter 'width'" in node.log()


def test_params_file_and_site_kind():
    from nano_vision_ros.nodes.webrtc_node import WebRtcConfig
    from nano_vision_ros.site.config import NODE_KINDS

    params = yaml.safe_load((REPO / "config" / "webrtc.yaml").read_text())["webrtc_node"]["ros__parameters"]
    assert set(params) == set(WebRtcConfig.model_fields)
    WebRtcConfig.model_validate(params)
    assert NODE_KINDS["webrtc"] == "webrtc_node"


def test_offer_filter_keeps_only_loopback_candidates_for_a_loopback_server():
    from nano_vision_ros.core.streaming.webrtc import _only_reachable_candidates

    sdp = (
        "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n"
        "a=candidate:1 1 udp 2122260223 192.0.2.7 40000 typ host\r\n"
        "a=candidate:2 1 udp 2122260223 127.0.0.1 40001 typ host\r\n"
        "a=candidate:3 1 udp 2122260223 abcd.local 40002 typ host\r\n"
    )
    out = _only_reachable_candidates(sdp, ["127.0.0.1"])
    assert "127.0.0.1 40001" in out and "192.0.2.7" not in out and ".local" not in out
    assert _only_reachable_candidates(sdp, []) == sdp  # every interface: the browser's candidates stay
    assert _only_reachable_candidates(sdp, ["192.0.2.1"]) == sdp


def test_node_module_runs_as_python_m():
    """`python -m nano_vision_ros.nodes.webrtc_node --help`-style start with a bad argument fails fast, clearly."""
    res = subprocess.run(
        [sys.executable, "-m", "nano_vision_ros.nodes.webrtc_node", "--ros-args", "-p", "codec:=mjpeg"],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 2 and "parameter 'codec'" in res.stderr + res.stdout


def test_token_file_is_read_and_a_missing_one_named(tmp_path):
    from nano_vision_ros.core.errors import ConfigError
    from nano_vision_ros.core.paths import read_token_file

    (tmp_path / "t").write_text("  abc \n")
    assert read_token_file(str(tmp_path / "t")) == "abc"
    with pytest.raises(ConfigError, match=r"parameter 'token_file': cannot read .*nope"):
        read_token_file(str(tmp_path / "nope"))


@pytest.mark.timeout(120)
def test_site_kind_in_a_camera_container_serves_an_aiortc_client(tmp_path, monkeypatch):
    """`webrtc` in a site file, packed with the camera in one container by the runner; a WHEP client
    built on aiortc (a second real WebRTC stack) receives and decodes frames of the camera's size."""
    import asyncio
    import os
    import signal
    import textwrap
    from pathlib import Path

    import aioice.ice
    from aiortc import RTCPeerConnection, RTCSessionDescription

    # this client, like the node, keeps ICE on loopback (aioice leaves 127.0.0.1 out by default)
    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: ["127.0.0.1"])
    port = free_port()
    (tmp_path / "params.yaml").write_text(
        textwrap.dedent("""
        /**/camera_node:
          ros__parameters: {source: "test://pattern", width: 320, height: 240, fps: 10.0}
        /cam0/webrtc_node:
          ros__parameters: {image_topic: image_raw, port: PORT}
    """).replace("PORT", str(port))
    )
    (tmp_path / "site.yaml").write_text(
        textwrap.dedent("""
        params_file: params.yaml
        discovery_range: localhost
        processes: per_camera
        cameras:
          - name: cam0
            nodes: [camera, webrtc]
    """)
    )
    log = open(tmp_path / "runner.log", "w+")  # noqa: SIM115 - read back at the end
    runner = subprocess.Popen(
        [str(Path(sys.executable).parent / "nano-vision"), "site", str(tmp_path / "site.yaml"), "--no-services"],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )

    async def watch() -> list[tuple[int, int]]:
        pc = RTCPeerConnection()
        pc.addTransceiver("video", direction="recvonly")
        got: list[tuple[int, int]] = []
        track_ready: asyncio.Future = asyncio.get_running_loop().create_future()
        pc.on("track", lambda track: track_ready.done() or track_ready.set_result(track))
        await pc.setLocalDescription(await pc.createOffer())
        code, answer = await asyncio.to_thread(
            http,
            "POST",
            f"http://127.0.0.1:{port}/whep",
            pc.localDescription.sdp.encode(),
            {"Content-Type": "application/sdp"},
        )
        assert code == 201, answer
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        track = await asyncio.wait_for(track_ready, 20)
        for _ in range(5):
            frame = await asyncio.wait_for(track.recv(), 20)
            got.append((frame.width, frame.height))
        await pc.close()
        return got

    try:
        wait_http(port)
        frames = asyncio.run(watch())
        assert frames == [(320, 240)] * 5
        wait_for(lambda: status(port)["viewers"] == 0, 30, interval=0.5, what="the aiortc viewer to be dropped")
        runner.send_signal(signal.SIGINT)
        assert runner.wait(30) == 0
    finally:
        if runner.poll() is None:  # a failure above: the runner stops its node processes (own sessions) first
            runner.send_signal(signal.SIGINT)
            try:
                runner.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(runner.pid, signal.SIGKILL)
        log.seek(0)
        text = log.read()
    assert "cam0/webrtc_node" in text and "live view of /cam0/image_raw" in text, text[-3000:]
