"""Commands that would block, a target that never answers, and hostile MQTT topics/packets.

Issue 15: an ``enroll_face`` whose ``image_path`` is a FIFO blocked face_node's commands for good
and, through the bridge's one queue, every command of every node. Here: paths the services read are
regular files inside ``allowed_image_dirs`` (opened without blocking); every service handler is
time-bounded and has its own callback group (ros.services.BoundedServices); the bridge queues per
(target, command), so a target that never answers gets ``busy`` alone. Every service of the nodes
is called from rclpy too, hostile requests included. And: command topics with odd names and raw
garbage sent to mosquitto leave the bridge connected, delivering events and answering commands.
Real mosquitto, real nodes over DDS.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import threading
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from conftest import NodeProcess, call_service, event_msg, wait_for

SITE, DEVICE = "s15", "d15"
BASE = f"nano_vision/{SITE}/{DEVICE}"


class Backend:
    """The MQTT back end: publishes commands, records replies and events."""

    def __init__(self, port: int, client_id: str = "backend") -> None:
        self.port = port
        self.msgs: list[tuple[str, bytes]] = []
        self.lock = threading.Lock()
        self.online = threading.Event()
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
        self.c.on_message = self._on_message
        self.c.on_connect = lambda cl, *a: cl.subscribe(f"{BASE}/#", qos=1)
        self.c.connect("127.0.0.1", port)
        self.c.loop_start()

    def _on_message(self, client, userdata, msg) -> None:
        with self.lock:
            self.msgs.append((msg.topic, msg.payload))
        if msg.topic == f"{BASE}/status" and msg.payload == b"online":
            self.online.set()

    def replies(self) -> list[dict]:
        with self.lock:
            got = [json.loads(p) for t, p in self.msgs if t.endswith("/reply")]
        return [r for r in got if isinstance(r, dict) and "ok" in r]  # not what a test itself sent to a …/reply topic

    def on(self, topic: str) -> list[bytes]:
        with self.lock:
            return [p for t, p in self.msgs if t == topic]

    def send(self, name: str, args: dict | None = None, target: str = "cam0", rid: str | None = None) -> str:
        rid = rid or f"{name[:20]}-{uuid.uuid4().hex[:12]}"
        body = {"request_id": rid, "target": target, "args": args or {}}
        self.c.publish(f"{BASE}/cmd/{name}", json.dumps(body), qos=1).wait_for_publish(10)
        return rid

    def reply(self, rid: str, timeout: float = 60.0) -> dict:
        return wait_for(
            lambda: next((r for r in self.replies() if r.get("request_id") == rid), None),
            timeout,
            what=f"MQTT reply {rid}",
        )

    def call(self, name: str, args: dict | None = None, target: str = "cam0", timeout: float = 60.0) -> dict:
        return self.reply(self.send(name, args, target), timeout)

    def close(self) -> None:
        self.c.loop_stop()
        self.c.disconnect()


def start_bridge(start_node, port: int, tmp_path: Path, *extra: str):
    return start_node(
        "mqtt_bridge_node",
        "-p",
        f"port:={port}",
        "-p",
        f"site_id:={SITE}",
        "-p",
        f"device_id:={DEVICE}",
        "-p",
        "events_topics:=[/cam0/events]",
        "-p",
        f"outbox_path:={tmp_path / 'outbox.sqlite'}",
        "-p",
        "reconnect_max:=1.0",
        "-p",
        "stats_period:=0.0",
        "-p",
        "ha_discovery:=false",
        *extra,
        name="bridge",
    )


def _in_thread(fn, timeout: float = 10.0):
    """fn() on a thread; fails (instead of hanging the test) if it has not returned in `timeout`."""
    out: dict = {}

    def run():
        try:
            out["value"] = fn()
        except BaseException as err:  # noqa: BLE001 - handed to the test
            out["error"] = err

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(timeout)
    assert not t.is_alive(), "the read blocked"
    if "error" in out:
        raise out["error"]
    return out["value"]


# --- the safe reader (core, no ROS) --------------------------------------------------------------
def test_safe_reader_refuses_what_could_block_or_escape(tmp_path: Path, samples: Path) -> None:
    from nano_vision_ros.core.safe_files import (
        UnsafePathError,
        read_image,
        read_regular_file,
    )

    allowed = tmp_path / "enroll"
    allowed.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    good = allowed / "astronaut.png"
    shutil.copy(samples / "astronaut.png", good)
    fifo = allowed / "fifo.png"
    os.mkfifo(fifo)
    (allowed / "to_fifo.png").symlink_to(fifo)
    secret = outside / "secret.png"
    shutil.copy(samples / "astronaut.png", secret)
    (allowed / "escape.png").symlink_to(secret)
    (allowed / "big.bin").write_bytes(b"\0" * 5000)
    (allowed / "text.png").write_text("not an image")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(allowed / "sock"))
    dirs = [str(allowed)]
    try:
        img = _in_thread(lambda: read_image(str(good), dirs, 10_000_000))
        assert img.ndim == 3 and img.shape[2] == 3
        cases = [
            (str(fifo), "a FIFO, not a regular file"),
            (str(allowed / "to_fifo.png"), "a FIFO, not a regular file"),  # the symlink is followed, the target checked
            (str(allowed / "escape.png"), "outside the allowed directories"),
            (str(secret), "outside the allowed directories"),
            (f"{allowed}/../outside/secret.png", "outside the allowed directories"),
            ("/dev/zero", "outside the allowed directories"),
            ("enroll/astronaut.png", "must be an absolute path"),
            (str(allowed), "a directory, not a regular file"),
            (str(allowed / "missing.png"), "does not exist"),
            (str(allowed / "sock"), "cannot be opened"),
            (str(allowed / "big.bin"), "larger than the limit of 4000"),
            (f"{good}\0.png", "NUL"),
        ]
        for path, why in cases:
            with pytest.raises(UnsafePathError, match=why.replace("(", r"\(")):
                _in_thread(lambda path=path: read_regular_file(path, dirs, 4000))
        with pytest.raises(ValueError, match="does not decode as an image"):
            read_image(str(allowed / "text.png"), dirs, 4000)
        # devices and FIFOs are refused even where every directory is allowed (the CLI's case)
        with pytest.raises(UnsafePathError, match="a character device"):
            _in_thread(lambda: read_regular_file("/dev/zero", None, 4000))
        with pytest.raises(UnsafePathError, match="a FIFO"):
            _in_thread(lambda: read_regular_file(str(fifo), None, 4000))
        with pytest.raises(UnsafePathError, match="no directory is allowed"):
            read_regular_file(str(good), [""], 4000)
    finally:
        sock.close()


@contextlib.contextmanager
def _spun_node(name: str, namespace: str, kind: str, setup=None):
    """A node in its own context, spun on a thread by the executor `kind` that ros.runtime makes
    (NANO_VISION_EXECUTOR: events, the default, single or multi), in the same spin_once loop."""
    import rclpy
    from rclpy.context import Context
    from rclpy.executors import MultiThreadedExecutor, SingleThreadedExecutor
    from rclpy.experimental import EventsExecutor

    ctx = Context()
    rclpy.init(context=ctx)
    node = rclpy.create_node(name, namespace=namespace, context=ctx)
    if setup is not None:
        setup(node)
    make = {"events": EventsExecutor, "single": SingleThreadedExecutor, "multi": MultiThreadedExecutor}[kind]
    executor = MultiThreadedExecutor(num_threads=2, context=ctx) if kind == "multi" else make(context=ctx)
    executor.add_node(node)
    stop = threading.Event()

    def spin() -> None:  # as ros.runtime.run_nodes spins (EventsExecutor.spin() on a thread can deadlock a caller)
        while not stop.is_set() and ctx.ok():
            executor.spin_once(timeout_sec=0.2)

    spinner = threading.Thread(target=spin, daemon=True)
    spinner.start()
    try:
        yield node
    finally:
        stop.set()
        spinner.join(5)
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown(context=ctx)


# --- a bounded service: a handler that never returns ----------------------------------------------
@pytest.mark.parametrize("kind", ["events", "single", "multi"])
def test_bounded_service_answers_timeout_for_a_stuck_handler_and_other_services_keep_answering(
    ros_node, kind: str
) -> None:
    """On every executor ros.runtime offers, one-threaded ones included: no service callback waits
    for its handler, so a stuck handler holds neither the executor nor another service."""
    from nano_vision_msgs.srv import DeleteFace, ListFaces
    from nano_vision_ros.ros.services import BoundedServices

    release = threading.Event()
    entered: list[str] = []
    hosts: list[BoundedServices] = []

    def delete(req, resp):
        if req.name == "hang":
            entered.append("hang")
            release.wait(120)
        resp.message = f"pong {req.name}"
        return resp

    def listing(req, resp):
        resp.message = "listed"
        return resp

    def setup(server):
        server.services_host = host = BoundedServices(server, timeout=1.5, max_overrun=2, queue_depth=2)
        host.add(DeleteFace, "delete_face", delete)
        host.add(ListFaces, "list_faces", listing)
        hosts.append(host)

    srv = f"/camX/stuck_{kind}/delete_face"
    client_node = ros_node(f"stuck_client_{kind}")
    hang_client = client_node.create_client(DeleteFace, srv)

    def call(name: str):
        return call_service(client_node, DeleteFace, srv, 30, name=name)

    def hang():
        assert hang_client.wait_for_service(timeout_sec=30)
        n = len(entered)
        fut = hang_client.call_async(DeleteFace.Request(name="hang"))
        wait_for(lambda: len(entered) > n, 30, what="the stuck handler entered")
        return fut

    with _spun_node(f"stuck_{kind}", "/camX", kind, setup=setup):
        try:
            r = call("a")
            assert r.success and r.message == "pong a", r
            fut = hang()
            # while delete_face is stuck in its handler, list_faces answers at once
            r = call_service(client_node, ListFaces, f"/camX/stuck_{kind}/list_faces", 30)
            assert r.success and r.message == "listed" and not fut.done(), r
            # requests behind the stuck one wait in its queue (2 places); one more is busy at once
            queued = [hang_client.call_async(DeleteFace.Request(name=f"q{i}")) for i in range(2)]
            wait_for(lambda: hosts[0]._lanes[0].queue.qsize() == 2, 30, what="two requests queued")
            r = call("over")
            assert not r.success and r.message == "busy: 2 earlier delete_face request(s) already waiting", r
            assert not fut.done()
            wait_for(fut.done, 30, what="timeout answer")
            r = fut.result()
            assert not r.success and r.message.startswith("timeout: delete_face did not finish within 1.5s"), r
            # the queued ones are served in order once the stuck one was answered
            for i, q in enumerate(queued):
                wait_for(q.done, 30, what=f"queued request q{i}")
                assert q.result().success and q.result().message == f"pong q{i}", q.result()
            r = call("b")  # served while the first hang still runs
            assert r.success and r.message == "pong b", r
            fut = hang()
            wait_for(fut.done, 30, what="second timeout answer")
            assert fut.result().message.startswith("timeout"), fut.result()
            # two handlers overrunning: the service says so at once instead of starting more threads
            r = call("c")
            assert not r.success and "busy: 2 earlier delete_face request(s) still running" in r.message, r
            r = call_service(client_node, ListFaces, f"/camX/stuck_{kind}/list_faces", 30)
            assert r.success, r  # the other service is not affected
            h = hosts[0]
            assert entered == ["hang", "hang"] and h.timed_out == 2
            assert (h.handled, h.failed) == (6, 4), (h.handled, h.failed)  # a q0 q1 b + 2 listings; 2 timeouts, over, c
            release.set()
            wait_for(lambda: call("d").success, 30, interval=0.2, what="serving again once the stuck handlers ended")
        finally:
            release.set()


def test_a_stuck_command_does_not_stall_a_node_process_under_the_default_executor(ros_node, tmp_path: Path) -> None:
    """A real node process (test/stuck_node.py, spun by ros.runtime with no NANO_VISION_EXECUTOR,
    i.e. the default one-threaded EventsExecutor): while one delete_face handler never returns, its
    subscription echoes every ping, its timer ticks and list_faces answers before the stuck request
    is answered with its timeout."""
    import sys

    from std_msgs.msg import Int32

    from nano_vision_msgs.srv import DeleteFace, ListFaces

    env = {k: v for k, v in os.environ.items() if k != "NANO_VISION_EXECUTOR"}
    script = Path(__file__).with_name("stuck_node.py")
    proc = NodeProcess(
        [sys.executable, str(script), "--ros-args", "-r", "__ns:=/camP"], tmp_path / "stuck_node.log", env=env
    )
    try:
        client = ros_node("stuck_proc_client")
        pongs: list[int] = []
        ticks: list[int] = []
        client.create_subscription(Int32, "/camP/stuck_node/pong", lambda m: pongs.append(m.data), 50)
        client.create_subscription(Int32, "/camP/stuck_node/tick", lambda m: ticks.append(m.data), 50)
        ping = client.create_publisher(Int32, "/camP/stuck_node/ping", 50)
        r = call_service(client, ListFaces, "/camP/stuck_node/list_faces", 60)
        assert r.success and r.message == "listed", r
        wait_for(lambda: ping.get_subscription_count() and ticks, 30, what="the node's subscription and timer")
        ping.publish(Int32(data=0))
        wait_for(lambda: 0 in pongs, 30, what="the first pong")

        hang_client = client.create_client(DeleteFace, "/camP/stuck_node/delete_face")
        assert hang_client.wait_for_service(timeout_sec=30)
        fut = hang_client.call_async(DeleteFace.Request(name="hang"))
        # served while the handler is stuck: 5 pings echoed, the timer ticking, the other service
        ticks_before = len(ticks)
        for i in range(1, 6):
            ping.publish(Int32(data=i))
        r = call_service(client, ListFaces, "/camP/stuck_node/list_faces", 30)
        assert r.success and r.message == "listed", r
        wait_for(lambda: set(range(1, 6)) <= set(pongs), 30, what="pongs while delete_face is stuck")
        wait_for(lambda: len(ticks) >= ticks_before + 3, 30, what="ticks while delete_face is stuck")
        assert not fut.done(), "the stuck request was answered before the others: the test would prove nothing"
        wait_for(fut.done, 30, what="the timeout answer")
        r = fut.result()
        assert not r.success and r.message == "timeout: delete_face did not finish within 1.5s", r
        r = call_service(client, DeleteFace, "/camP/stuck_node/delete_face", 30, name="after")
        assert r.success and r.message == "pong after", r
        assert proc.alive(), proc.log()
    finally:
        rc = proc.stop()
        log = proc.log()
    assert rc == 0, log
    assert "still running after 1.5s: answered timeout" in log, log


# --- the scenario: every service from rclpy, then over MQTT ---------------------------------
def test_hostile_requests_to_every_service_and_a_silent_target_do_not_starve_other_commands(
    start_node, ros_node, broker, tmp_path: Path, samples: Path
) -> None:
    from rcl_interfaces.srv import GetParameters

    from nano_vision_msgs.srv import (
        DeleteFace,
        EnrollFace,
        ListFaces,
        ReloadConfig,
        SetThreshold,
        Snapshot,
    )

    enroll_dir = tmp_path / "enroll"
    enroll_dir.mkdir()
    fifo = enroll_dir / "face.jpg"
    os.mkfifo(fifo)
    (enroll_dir / "link.jpg").symlink_to(fifo)
    shutil.copy(samples / "astronaut.png", enroll_dir / "eileen.png")
    rules = tmp_path / "rules.yaml"
    rules.write_text("rules: [{name: people, type: object, labels: [person], end_after: 0.4, cooldown: 0}]")
    face = start_node(
        "face_node",
        "-r",
        "__ns:=/cam0",
        "-p",
        f"gallery:={tmp_path / 'faces.db'}",
        "-p",
        "detector.kind:=centerface",
        "-p",
        f"allowed_image_dirs:=[{enroll_dir}]",
        "-p",
        "command_timeout:=30.0",
        "-p",
        "max_image_bytes:=1000000",
        name="face",
    )
    events = start_node(
        "events_node",
        "-r",
        "__ns:=/cam0",
        "-p",
        f"rules:={rules}",
        "-p",
        f"site_id:={SITE}",
        "-p",
        f"device_id:={DEVICE}",
        "-p",
        f"snapshot_dir:={tmp_path / 'snaps'}",
        name="events",
    )
    det = start_node("detector_node", "-r", "__ns:=/cam0", "-p", "task:=coco_objects", name="detector")
    bridge = start_bridge(
        start_node, broker.port, tmp_path, "-p", "command_timeout:=40.0", "-p", "command_queue_size:=4"
    )
    be = Backend(broker.port)
    node = ros_node("services_client")
    release = threading.Event()

    def enroll(**fields):
        return call_service(node, EnrollFace, "/cam0/face_node/enroll_face", 60, **fields)

    def ghost_setup(n):  # a target whose reload_config exists but never answers (within the bridge's 40 s)
        n.create_service(
            ReloadConfig, "/ghost/events_node/reload_config", lambda req, resp: (release.wait(60), resp)[1]
        )
        n.create_service(Snapshot, "/ghost/events_node/snapshot", lambda req, resp: resp)  # answers: a probe

    try:
        wait_for(lambda: "faces: centerface" in face.log(), 120, what="face_node configured")
        wait_for(lambda: "loaded" in det.log(), 120, what="detector_node configured")
        # -- from rclpy: the path that used to block face_node for good is answered at once, naming the problem
        r = enroll(name="Fifo", image_path=str(fifo))
        assert not r.success and "is a FIFO, not a regular file" in r.message, r
        r = enroll(name="Huge", image=bytes(1_500_000))
        assert not r.success and "larger than the limit of 1000000" in r.message, r
        r = enroll(name="Both", image_path=str(enroll_dir / "eileen.png"), image=b"\xff\xd8")
        assert not r.success and "not both" in r.message, r
        r = enroll(name="Nothing")
        assert not r.success and "needs image_path or image" in r.message, r
        r = enroll(name="", image_path=str(enroll_dir / "eileen.png"))
        assert not r.success and "identity name" in r.message, r
        r = call_service(node, DeleteFace, "/cam0/face_node/delete_face", name="nobody")
        assert not r.success and "no identity named 'nobody'" in r.message, r
        r = enroll(name="Eileen", image_path=str(enroll_dir / "eileen.png"))
        assert r.success and r.name == "Eileen" and r.faces == 1 and r.total >= 1, r
        r = call_service(node, ListFaces, "/cam0/face_node/list_faces")
        assert r.success and [i.name for i in r.identities] == ["Eileen"] and r.identities[0].created.sec > 0, r
        r = call_service(node, SetThreshold, "/cam0/detector_node/set_threshold", score_threshold=7.0)
        assert not r.success and "parameter 'score_threshold'" in r.message, r
        r = call_service(node, SetThreshold, "/cam0/detector_node/set_threshold")
        assert not r.success and "give score_threshold" in r.message, r
        r = call_service(node, SetThreshold, "/cam0/detector_node/set_threshold", score_threshold=0.45)
        assert r.success and r.score_threshold == pytest.approx(0.45) and r.nms_threshold > 0, r
        # one path with `ros2 param set`: the service set the parameter
        p = call_service(node, GetParameters, "/cam0/detector_node/get_parameters", names=["score_threshold"])
        assert p.values[0].double_value == pytest.approx(0.45), p
        r = call_service(node, Snapshot, "/cam0/events_node/snapshot", camera="cam7")
        assert not r.success and "serves camera 'cam0', not 'cam7'" in r.message, r
        r = call_service(node, Snapshot, "/cam0/events_node/snapshot")
        assert not r.success and "no frame received yet" in r.message, r  # no camera in this test
        r = call_service(node, ReloadConfig, "/cam0/events_node/reload_config")
        assert r.success and list(r.rules) == ["people"], r

        # -- over MQTT: the same refusals reach the back end
        wait_for(be.online.is_set, 60, what="bridge online")
        r = be.call("enroll_face", {"name": "Fifo", "image_path": str(fifo)}, timeout=60)
        assert r["ok"] is False and "is a FIFO, not a regular file" in r["error"]["message"], r
        r = be.call("enroll_face", {"name": "Link", "image_path": str(enroll_dir / "link.jpg")})
        assert r["ok"] is False and "a FIFO" in r["error"]["message"], r
        r = be.call("enroll_face", {"name": "Zero", "image_path": "/dev/zero"})
        assert r["ok"] is False and "outside the allowed directories" in r["error"]["message"], r
        r = be.call("enroll_face", {"name": "Eileen", "image_path": str(enroll_dir / "eileen.png")}, timeout=120)
        assert r["ok"] is True and r["replies"][0]["result"]["name"] == "Eileen", r
        r = be.call("reload_config", target="nowhere")
        assert r["ok"] is False and r["error"]["code"] == "unknown_target" and "'nowhere'" in r["error"]["message"], r

        with _spun_node("ghost_server", "/ghost", "multi", setup=ghost_setup):  # raw services that block
            # a target that never answers, flooded: 12 commands each wait the bridge's 40 s timeout
            wait_for(
                lambda: be.call("snapshot", target="ghost")["error"]["code"] != "unknown_target",
                60,
                interval=0.5,
                what="the silent target discovered by the bridge",
            )
            ghost = [be.send("reload_config", target="ghost") for _ in range(12)]
            # valid commands for the other nodes are answered now, not after 12 x 40 s, and not 'busy'
            r = be.call("delete_face", {"name": "Eileen"}, timeout=60)
            assert r["ok"] is True and r["replies"][0]["node"] == "/cam0/face_node", r
            r = be.call("reload_config", timeout=60)  # target cam0
            assert r["ok"] is True and r["replies"][0]["result"] == {"camera": "cam0", "rules": ["people"]}, r
            r = be.call("set_threshold", {"score_threshold": 0.4}, timeout=60)
            assert r["ok"] is True and r["replies"][0]["node"] == "/cam0/detector_node", r
            # the silent target alone got 'busy': 1 in flight + 4 waiting, 7 refused, naming the target
            busy = wait_for(
                lambda: (
                    [x for x in be.replies() if x.get("request_id") in ghost and x["error"]["code"] == "busy"]
                    if len([x for x in be.replies() if x.get("request_id") in ghost]) >= 7
                    else None
                ),
                30,
                what="busy replies for the silent target",
            )
            assert 7 <= len(busy) <= 8 and all("target 'ghost'" in b["error"]["message"] for b in busy), busy
            assert not any(
                x["error"] and x["error"]["code"] == "busy" for x in be.replies() if x.get("request_id") not in ghost
            )
            assert bridge.alive() and face.alive() and events.alive() and det.alive()
            release.set()
    finally:
        release.set()
        be.close()


# --- hostile topic names and raw packets -----------------------------------------------------------
def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n % 128, n // 128
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _utf8(s: bytes) -> bytes:
    return len(s).to_bytes(2, "big") + s


def _connect_packet(client_id: bytes) -> bytes:
    body = _utf8(b"MQTT") + bytes([4, 0x02, 0, 30]) + _utf8(client_id)
    return bytes([0x10]) + _varint(len(body)) + body


def _publish_packet(topic: bytes, payload: bytes) -> bytes:
    body = _utf8(topic) + payload
    return bytes([0x30]) + _varint(len(body)) + body


def _raw(port: int, data: bytes, read: bool = True) -> bytes:
    """Send bytes on a fresh TCP connection to the broker; what came back before it closed (or 2 s)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        try:
            s.sendall(data)
        except OSError:
            return b""
        got = b""
        s.settimeout(2)
        try:
            while read and len(got) < 1 << 16:
                chunk = s.recv(4096)
                if not chunk:
                    break
                got += chunk
        except OSError:
            pass
        return got


def test_odd_command_topics_and_garbage_packets_leave_the_bridge_serving(
    start_node, ros_node, broker, tmp_path: Path
) -> None:
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

    from nano_vision_msgs.msg import Event
    from nano_vision_msgs.srv import ReloadConfig
    from nano_vision_ros.ros.services import BoundedServices

    node = ros_node("hostile_events", "/cam0")
    host = BoundedServices(node)
    host.add(ReloadConfig, "reload_config", lambda req, resp: (setattr(resp, "rules", ["r"]), resp)[1])
    ev_pub = node.create_publisher(
        Event,
        "/cam0/events",
        QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL),
    )
    bridge = start_bridge(start_node, broker.port, tmp_path, "-p", "command_timeout:=10.0", "-p", "stats_period:=1.0")
    be = Backend(broker.port)

    def still_serving(after: str) -> None:
        msg = event_msg("cam0", "intrusion")
        eid = msg.event_id
        ev_pub.publish(msg)
        wait_for(
            lambda: any(json.loads(p).get("event_id") == eid for p in be.on(f"{BASE}/events")),
            60,
            what=f"an event delivered after {after}",
        )
        r = be.call("reload_config", timeout=60)
        assert r["ok"] is True and r["replies"][0]["result"] == {"camera": "cam0", "rules": ["r"]}, (after, r)
        assert bridge.alive(), after

    try:
        wait_for(be.online.is_set, 60, what="bridge online")
        still_serving("start")
        # wildcards in a topic name: paho refuses to publish them at all
        for bad in (f"{BASE}/cmd/+", f"{BASE}/cmd/#", f"{BASE}/cmd/re+load", f"{BASE}/cmd/a#"):
            with pytest.raises(ValueError):
                be.c.publish(bad, b"{}", qos=1)
        # sent raw anyway, a wildcard, NUL, control character or bad UTF-8 in a PUBLISH topic: mosquitto drops that client
        for topic in (
            f"{BASE}/cmd/+".encode(),
            f"{BASE}/cmd/#".encode(),
            f"{BASE}/cmd/re\0load".encode(),
            f"{BASE}/cmd/reload_config\t".encode(),
            f"{BASE}/cmd/\xff\xfe".encode("latin-1"),
        ):
            got = _raw(
                broker.port, _connect_packet(b"evil-" + uuid.uuid4().hex[:8].encode()) + _publish_packet(topic, b"{}")
            )
            assert got[:1] == b"\x20", got  # CONNACK, then the broker closed the connection
        still_serving("wildcard/NUL/invalid UTF-8 topics")
        # names the bridge receives (one topic level under cmd/) but refuses, each with an error reply
        n0 = len(be.replies())
        odd = ["x" * 65_000, " ", "reload config", "ünïcode", "$SYS", "..", "reload_config~", "%00", "'; DROP TABLE"]
        for name in odd:
            be.c.publish(f"{BASE}/cmd/{name}", b"{}", qos=1).wait_for_publish(10)
        wait_for(lambda: len(be.replies()) >= n0 + len(odd), 60, what="a reply to every odd name")
        bad = be.replies()[n0:]
        assert all(r["ok"] is False and r["error"]["code"] == "bad_name" for r in bad), bad
        assert be.on(f"{BASE}/cmd/_invalid/reply"), "the 65000-character name is answered on cmd/_invalid/reply"
        # multi-level names are not commands: no reply, nothing executed
        for name in ("reload_config/x", "a/b/c/d", "reload_config/reply", "/", "//reload_config"):
            be.c.publish(f"{BASE}/cmd/{name}", b"{}", qos=1).wait_for_publish(10)
        still_serving("odd and multi-level names")
        assert len(be.replies()) == n0 + len(odd) + 1  # only still_serving's own reply came since
        # garbage and malformed packets straight on the broker's socket
        rnd = __import__("random").Random(15)
        garbage = [bytes(rnd.getrandbits(8) for _ in range(rnd.randint(1, 2000))) for _ in range(20)]
        garbage += [
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
            b"\x10\xff\xff\xff\xff\x7f",
            b"\x10\x05\x00\x04MQ",
            b"\x10\x0c\x00\x04MQTT\x63\x02\x00\x1e\x00\x00",  # unknown protocol level
            _connect_packet(b"") + b"\x30\xff\xff\xff\x7f" + b"A" * 1000,  # PUBLISH claiming 256 MB
            _connect_packet(b"evil-dup") + b"\x10" + _varint(3) + b"abc",  # a second CONNECT
            b"\xf0\x00",
            b"\x00" * 4096,
        ]
        for data in garbage:
            _raw(broker.port, data, read=False)
        idle = [socket.create_connection(("127.0.0.1", broker.port), timeout=5) for _ in range(20)]  # half-open, silent
        try:
            still_serving("garbage packets and silent connections")
        finally:
            for s in idle:
                s.close()
        # the bridge never lost its MQTT connection through all of it
        n_stats = len(be.on(f"{BASE}/stats"))
        wait_for(lambda: len(be.on(f"{BASE}/stats")) > n_stats, 30, what="a fresh stats message")
        stats = json.loads(be.on(f"{BASE}/stats")[-1])["bridge"]
        assert stats["connected"] is True and stats["connects"] == 1 and stats["disconnects"] == 0, stats
    finally:
        host.destroy()
        be.close()


def test_enroll_image_path_refused_when_no_directory_is_allowed(
    start_node, ros_node, tmp_path: Path, samples: Path
) -> None:
    """Over DDS, with ``allowed_image_dirs:=['']``: image_path is refused, image bytes still work."""
    from nano_vision_msgs.srv import EnrollFace

    img = tmp_path / "a.png"
    shutil.copy(samples / "astronaut.png", img)
    face = start_node(
        "face_node",
        "-r",
        "__ns:=/gate9",
        "-p",
        f"gallery:={tmp_path / 'faces.db'}",
        "-p",
        "detector.kind:=centerface",
        "-p",
        "allowed_image_dirs:=['']",
        "-p",
        "command_timeout:=30.0",
        name="face",
    )
    node = ros_node("enroll_client")
    wait_for(lambda: "faces: centerface" in face.log(), 120, what="face_node configured")
    r = call_service(node, EnrollFace, "/gate9/face_node/enroll_face", name="A", image_path=str(img))
    assert not r.success and "no directory is allowed" in r.message, r
    r = call_service(node, EnrollFace, "/gate9/face_node/enroll_face", name="A", image=img.read_bytes())
    assert r.success and r.name == "A", r
