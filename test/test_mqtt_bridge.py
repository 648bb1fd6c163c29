"""End to end: test publisher (Detection2DArray + images) -> events_node -> mqtt_bridge_node ->
a real mosquitto (started here on a free port, stopped by PID) -> a paho subscriber in the test.

Covers: schema-valid events arrive; a broker restart and a SIGKILL of the bridge mid-burst lose
nothing (count and ids); TLS + password works, a wrong password or CA is refused with a clear log
line; hostile command payloads get error replies and valid commands still work afterwards.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import paho.mqtt.client as mqtt
from conftest import free_port, wait_for
from mqtt_tools import BASE, DEVICE, RULES, SITE, Feeder, Subscriber, burst, mqtt_keys

from nano_vision_ros.core.events import validate_event
from nano_vision_ros.site.mosquitto import Mosquitto


# --- helpers -------------------------------------------------------------------------------------
def start_pipeline(start_node, port: int, tmp_path: Path, *bridge_extra: str, rules: str = RULES):
    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text(rules)
    events = start_node(
        "events_node",
        "-r",
        "__ns:=/cam0",
        "-p",
        f"rules:={rules_file}",
        "-p",
        f"site_id:={SITE}",
        "-p",
        f"device_id:={DEVICE}",
        "-p",
        f"snapshot_dir:={tmp_path / 'snaps'}",
        "-p",
        "tick_period:=0.1",
        name="events",
    )
    bridge = start_bridge(start_node, port, tmp_path, *bridge_extra)
    return events, bridge


def start_bridge(start_node, port: int, tmp_path: Path, *extra: str, name: str = "bridge"):
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
        "stats_period:=1.0",
        *extra,
        name=name,
    )


def wait_all_delivered(sub, feeder, expected_events: int, timeout=120.0):
    end = time.monotonic() + timeout
    while len(feeder.keys()) < expected_events and time.monotonic() < end:
        time.sleep(0.05)
    assert len(feeder.keys()) >= expected_events, (
        f"only {len(feeder.keys())} of {expected_events} events published on ROS"
    )
    while not feeder.keys() <= mqtt_keys(sub) and time.monotonic() < end:
        time.sleep(0.05)
    missing = feeder.keys() - mqtt_keys(sub)
    assert not missing, f"{len(missing)} of {len(feeder.keys())} events never reached MQTT"
    # order: each event's publications arrive in sequence, and events in the order the node published them
    first: dict = {}
    for i, e in enumerate(sub.events()):
        first.setdefault((e["event_id"], e["sequence"]), i)
    with feeder._lock:
        ros_order = [(e["event_id"], e["sequence"]) for e in feeder.ros_events]
    mqtt_order = sorted(ros_order, key=first.__getitem__)
    if mqtt_order != ros_order:
        i = next(k for k, (a, b) in enumerate(zip(mqtt_order, ros_order)) if a != b)
        with feeder._lock:
            label = {
                (e["event_id"], e["sequence"]): (e["track_ids"][0], e["state"], e["published"][-12:])
                for e in feeder.ros_events
            }
        raise AssertionError(
            f"MQTT order differs from the events node's order at {i}: "
            f"ROS {[label[k] for k in ros_order[max(0, i - 3) : i + 4]]} "
            f"MQTT {[label[k] for k in mqtt_order[max(0, i - 3) : i + 4]]}"
        )


# --- tests ---------------------------------------------------------------------------------------
def test_pipeline_events_reach_mqtt_and_validate(start_node, ros_node, broker, tmp_path, samples):
    img = cv2.resize(cv2.imread(str(samples / "person.jpg")), (320, 240))
    sub = Subscriber(broker.port)
    feeder = Feeder(ros_node, img)
    _events, bridge = start_pipeline(start_node, broker.port, tmp_path, "-p", "ha_event_types:=[object]")
    feeder.wait_connected()
    wait_for(lambda: [m for m in sub.on(f"{BASE}/status") if m.payload == b"online"], 60, what="bridge online")
    for _ in range(5):
        feeder.frame([1, 2])
        time.sleep(0.05)
    wait_for(lambda: sum(e["state"] == "end" for e in sub.events()) >= 2, 30, what="two end events over MQTT")
    evs = sub.events()
    for e in evs:
        validate_event(e)
    assert sorted((e["track_ids"][0], e["state"]) for e in evs) == [(1, "end"), (1, "new"), (2, "end"), (2, "new")]
    ids = {e["track_ids"][0]: e["event_id"] for e in evs if e["state"] == "new"}
    assert all(e["event_id"] == ids[e["track_ids"][0]] for e in evs)
    new = next(e for e in evs if e["state"] == "new")
    assert (new["site_id"], new["device_id"], new["camera"], new["type"]) == (SITE, DEVICE, "cam0", "object")
    snap = cv2.imread(new["snapshot"]["path"])
    assert snap is not None and snap.shape == (240, 320, 3)
    assert new["snapshot"]["width"] == 320

    # health stats and Home Assistant discovery
    def settled():
        for m in sub.on(f"{BASE}/stats"):
            b = json.loads(m.payload)["bridge"]
            if b["events_received"] >= 4 and b["outbox_pending"] == 0 and b["acked"] >= 4:
                return json.loads(m.payload)
        return None

    stats = wait_for(settled, 15, what="stats message counting the 4 events, all acknowledged")
    assert stats["host"]["mem_total"] > 0 and "/" in stats["host"]["disk"] and stats["bridge"]["connected"] is True
    wait_for(
        lambda: any("/cam0/events_node" in k for k in json.loads(sub.on(f"{BASE}/stats")[-1].payload)["nodes"]),
        15,
        what="events_node diagnostics in stats",
    )
    ha = Subscriber(broker.port, topics=("homeassistant/#",), client_id="ha")
    wait_for(lambda: ha.messages, 10, what="retained HA discovery configs")
    cfgs = {m.topic: json.loads(m.payload) for m in ha.messages}
    bs = cfgs["homeassistant/binary_sensor/nv_s1_d1/cam0_object/config"]
    assert bs["state_topic"] == f"{BASE}/cam0/object/state" and bs["availability_topic"] == f"{BASE}/status"
    assert sub.on(f"{BASE}/cam0/object/state")[-1].payload == b"OFF"
    ha.close()
    # clean stop: retained status goes offline
    bridge.stop()
    wait_for(lambda: sub.on(f"{BASE}/status")[-1].payload == b"offline", 10, what="status offline")
    sub.close()


def test_broker_restart_mid_burst_loses_nothing(start_node, ros_node, broker, tmp_path):
    sub = Subscriber(broker.port)
    feeder = Feeder(ros_node)
    start_pipeline(start_node, broker.port, tmp_path)
    feeder.wait_connected()
    wait_for(lambda: sub.on(f"{BASE}/status"), 60, what="bridge online")
    burst(feeder, 1000, 40)
    broker.stop()  # broker restart: SIGTERM, it saves its sessions
    burst(feeder, 2000, 40)  # produced while the broker is down: they wait in the outbox
    time.sleep(1.0)
    broker.start()
    burst(feeder, 3000, 40)
    wait_all_delivered(sub, feeder, 240)
    keys = mqtt_keys(sub)
    assert len({k for k in keys if k[1] == 0}) == 120 and len({k for k in keys if k[1] == 1}) == 120
    sub.close()


def test_bridge_sigkill_mid_burst_and_restart_loses_nothing(start_node, ros_node, broker, tmp_path):
    sub = Subscriber(broker.port)
    feeder = Feeder(ros_node)
    _events, bridge = start_pipeline(start_node, broker.port, tmp_path)
    feeder.wait_connected()
    wait_for(lambda: sub.on(f"{BASE}/status"), 60, what="bridge online")
    burst(feeder, 1000, 30)
    os.killpg(bridge.pid, signal.SIGKILL)  # crash: no clean shutdown
    bridge.proc.wait(5)
    burst(feeder, 2000, 30)  # produced while no bridge runs: kept in the events topic's history
    bridge2 = start_bridge(start_node, broker.port, tmp_path, name="bridge2")
    burst(feeder, 3000, 30)
    wait_all_delivered(sub, feeder, 180)
    # the LWT told the backend about the crash
    assert b"offline" in [m.payload for m in sub.on(f"{BASE}/status")]
    assert bridge2.alive()
    sub.close()


class CuttableProxy:
    """A TCP forwarder 127.0.0.1:port -> broker whose `cut()` drops every connection (and refuses new
    ones) until `restore()`: a network cut between the device and the broker."""

    def __init__(self, target_port: int) -> None:
        import socket

        self.target = target_port
        self.port = free_port()
        self.down = threading.Event()
        self.conns: list = []
        self.lock = threading.Lock()
        self.srv = socket.create_server(("127.0.0.1", self.port))
        self.srv.settimeout(0.2)
        self.stop_ev = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        import socket

        while not self.stop_ev.is_set():
            try:
                c, _ = self.srv.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if self.down.is_set():
                c.close()
                continue
            try:
                u = socket.create_connection(("127.0.0.1", self.target))
            except OSError:
                c.close()
                continue
            with self.lock:
                self.conns += [c, u]
            for a, b in ((c, u), (u, c)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, a, b):
        try:
            while True:
                data = a.recv(65536)
                if not data or self.down.is_set():
                    break
                b.sendall(data)
        except OSError:
            pass
        for s in (a, b):
            try:
                s.close()
            except OSError:
                pass

    def cut(self):
        import socket

        self.down.set()
        with self.lock:
            for s in self.conns:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                    s.close()
                except OSError:
                    pass
            self.conns.clear()

    def restore(self):
        self.down.clear()

    def close(self):
        self.stop_ev.set()
        self.cut()
        self.srv.close()


def test_network_cut_mid_burst_loses_nothing(start_node, ros_node, broker, tmp_path):
    proxy = CuttableProxy(broker.port)
    sub = Subscriber(broker.port)  # the backend side stays connected to the broker
    feeder = Feeder(ros_node)
    _events, bridge = start_pipeline(start_node, proxy.port, tmp_path)
    feeder.wait_connected()
    wait_for(lambda: sub.on(f"{BASE}/status"), 60, what="bridge online")
    burst(feeder, 1000, 40, pace=0.005)
    proxy.cut()  # in the middle of sending: some PUBLISHes are unacknowledged, some not yet sent
    burst(feeder, 2000, 40)
    time.sleep(1.5)
    proxy.restore()
    burst(feeder, 3000, 40)
    wait_all_delivered(sub, feeder, 240)
    assert "disconnected from" in bridge.log()
    proxy.close()
    sub.close()


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_ca(d: Path, name: str) -> tuple[Path, Path]:
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        f"/CN={name}",
        "-keyout",
        f"{name}.key",
        "-out",
        f"{name}.crt",
        cwd=d,
    )
    return d / f"{name}.crt", d / f"{name}.key"


def make_server_cert(d: Path, ca: str) -> tuple[Path, Path]:
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    _openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        cwd=d,
    )
    _openssl(
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        f"{ca}.crt",
        "-CAkey",
        f"{ca}.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "san.ext",
        "-out",
        "server.crt",
        cwd=d,
    )
    return d / "server.crt", d / "server.key"


def test_tls_with_password_works_and_wrong_password_or_ca_is_refused(start_node, ros_node, tmp_path):
    d = tmp_path / "pki"
    d.mkdir()
    ca, _ = make_ca(d, "ca")
    other_ca, _ = make_ca(d, "otherca")
    cert, key = make_server_cert(d, "ca")
    (tmp_path / "good.pw").write_text("s3cret-pw\n")
    (tmp_path / "bad.pw").write_text("wrong\n")
    m = Mosquitto(
        port=free_port(),
        workdir=tmp_path / "mq",
        users={"device": "s3cret-pw", "backend": "b"},
        tls={"cafile": str(ca), "certfile": str(cert), "keyfile": str(key)},
    )
    m.start()
    try:
        sub = Subscriber(m.port, tls={"ca": str(ca)}, user=("backend", "b"))
        feeder = Feeder(ros_node)
        tls = ("-p", "tls:=true", "-p", "username:=device")
        start_pipeline(
            start_node, m.port, tmp_path, *tls, "-p", f"ca_file:={ca}", "-p", f"password_file:={tmp_path / 'good.pw'}"
        )
        feeder.wait_connected()
        wait_for(lambda: sub.on(f"{BASE}/status"), 60, what="bridge online over TLS")
        feeder.frame([5])
        wait_for(lambda: sub.events(), 30, what="an event over TLS")
        validate_event(sub.events()[0])
        bad_pw = start_node(
            "mqtt_bridge_node",
            "-p",
            f"port:={m.port}",
            *tls,
            "-p",
            f"ca_file:={ca}",
            "-p",
            f"password_file:={tmp_path / 'bad.pw'}",
            "-p",
            "client_id:=badpw",
            "-p",
            f"outbox_path:={tmp_path / 'o2.sqlite'}",
            name="badpw",
        )
        bad_ca = start_node(
            "mqtt_bridge_node",
            "-p",
            f"port:={m.port}",
            *tls,
            "-p",
            f"ca_file:={other_ca}",
            "-p",
            f"password_file:={tmp_path / 'good.pw'}",
            "-p",
            "client_id:=badca",
            "-p",
            f"outbox_path:={tmp_path / 'o3.sqlite'}",
            name="badca",
        )
        wait_for(lambda: "refused the connection" in bad_pw.log(), 30, what="wrong password refused")
        assert (
            "check username/password" in bad_pw.log()
            and "s3cret" not in bad_pw.log()
            and "wrong" not in bad_pw.log().replace("wrong CA", "")
        )
        wait_for(lambda: "TLS certificate verification failed" in bad_ca.log(), 30, what="wrong CA refused")
        assert bad_pw.alive() and bad_ca.alive()
        sub.close()
    finally:
        m.stop()


def hostile_payloads() -> list[tuple[str, bytes]]:
    rnd = random.Random(4)
    out: list[tuple[str, bytes]] = []
    names = ["set_threshold", "enroll_face", "delete_face", "snapshot", "reload_config"]
    bad_json = [
        b"{",
        b"nul\x00l",
        b"[]",
        b"null",
        b"1",
        b'"x"',
        b"{'a': 1}",
        b"\xff\xfe\xfa",
        b"[" * 50000,
        b'{"args": ' * 3000,
        b"NaN",
        b"{}{}",
    ]
    wrong = [
        {"args": []},
        {"args": {"score_threshold": "high"}},
        {"args": {"score_threshold": 5}},
        {"args": {"nms_threshold": -1}},
        {"request_id": 5, "args": {}},
        {"target": {"a": 1}},
        {"args": {"name": 123}},
        {"args": {"name": "bob"}},
        {"args": {"name": "bob", "image_b64": "x" * 20, "image_path": "/a"}},
        {"args": {"camera": "../../etc"}},
        {"args": {"evil": True}},
        {"request_id": "a b c"},
        {"unexpected": 1},
        {"target": "*; rm -rf /"},
        {"args": {"name": "x" * 500}},
        {"args": {"score_threshold": None}},
        {"args": {"score_threshold": True}},
        {"args": {"score_threshold": 1e309}},
    ]
    for name in names:
        out += [(name, b) for b in bad_json]
        out += [(name, json.dumps(w).encode()) for w in wrong]
        out += [(name, bytes(rnd.getrandbits(8) for _ in range(rnd.randint(1, 300)))) for _ in range(30)]
    out += [("enroll_face", b'{"args": {"name": "a", "image_b64": "' + b"A" * 1_500_000 + b'"}}')] * 3
    for unknown in [
        "format_disk",
        "SNAPSHOT",
        "enroll-face",
        "x" * 100,
        "ünïcode",
        "reload config",
        "shell",
        "__init__",
    ]:
        out += [(unknown, b"{}"), (unknown, b"\x00\x01")]
    rnd.shuffle(out)
    return out


def test_hostile_commands_get_error_replies_and_valid_commands_still_work(
    start_node, ros_node, broker, tmp_path, samples
):
    sub = Subscriber(broker.port, topics=(f"{BASE}/cmd/#", f"{BASE}/snapshot/#", f"{BASE}/status"))
    feeder = Feeder(ros_node, cv2.resize(cv2.imread(str(samples / "person.jpg")), (160, 120)))
    events, bridge = start_pipeline(start_node, broker.port, tmp_path, "-p", "command_timeout:=1.0")
    feeder.wait_connected()
    wait_for(lambda: sub.on(f"{BASE}/status"), 60, what="bridge online")
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="backend")
    pub.connect("127.0.0.1", broker.port)
    pub.loop_start()
    payloads = hostile_payloads()
    assert len(payloads) > 300
    for name, body in payloads:
        pub.publish(f"{BASE}/cmd/{name}", body, qos=1).wait_for_publish(5)

    def replies():
        with sub.lock:
            return [m for m in sub.messages if m.topic.endswith("/reply")]

    wait_for(lambda: len(replies()) >= len(payloads), 120, what=f"{len(payloads)} error replies (got {len(replies())})")
    bodies = [json.loads(m.payload) for m in replies()]
    assert all(b["ok"] is False and b["error"]["code"] for b in bodies)
    codes = {b["error"]["code"] for b in bodies}
    assert {"bad_json", "invalid", "unknown_command", "too_large"} <= codes
    assert bridge.alive() and events.alive()
    # valid commands still work: a snapshot from the events node, and rules reloaded
    for _ in range(10):  # frames travel best effort: send a few
        feeder.frame([])
        time.sleep(0.05)
    time.sleep(0.3)
    n0 = len(replies())
    pub.publish(f"{BASE}/cmd/snapshot", json.dumps({"request_id": "snap-1", "args": {"camera": "cam0"}}), qos=1)
    wait_for(
        lambda: any(json.loads(m.payload).get("request_id") == "snap-1" for m in replies()[n0:]),
        20,
        what="snapshot reply",
    )
    rep = next(json.loads(m.payload) for m in replies()[n0:] if json.loads(m.payload).get("request_id") == "snap-1")
    assert rep["ok"] is True, rep
    assert rep["replies"][0]["node"] == "/cam0/events_node"
    wait_for(lambda: sub.on(f"{BASE}/snapshot/cam0"), 10, what="snapshot JPEG on MQTT")
    jpg = cv2.imdecode(np.frombuffer(sub.on(f"{BASE}/snapshot/cam0")[0].payload, np.uint8), cv2.IMREAD_COLOR)
    assert jpg.shape == (120, 160, 3)
    pub.publish(f"{BASE}/cmd/reload_config", json.dumps({"request_id": "rl-1"}), qos=1)
    wait_for(lambda: any(json.loads(m.payload).get("request_id") == "rl-1" for m in replies()), 20, what="reload reply")
    rep = next(json.loads(m.payload) for m in replies() if json.loads(m.payload).get("request_id") == "rl-1")
    assert rep["ok"] is True and rep["replies"][0]["result"]["rules"] == ["people"]
    # a valid command that no node offers here is answered at once with a clear error
    pub.publish(f"{BASE}/cmd/delete_face", json.dumps({"request_id": "df-1", "args": {"name": "bob"}}), qos=1)
    wait_for(
        lambda: any(json.loads(m.payload).get("request_id") == "df-1" for m in replies()),
        20,
        what="unknown target reply",
    )
    rep = next(json.loads(m.payload) for m in replies() if json.loads(m.payload).get("request_id") == "df-1")
    assert (
        rep["ok"] is False and rep["error"]["code"] == "unknown_target" and "delete_face" in rep["error"]["message"]
    ), rep
    assert "rejected" in bridge.log()
    pub.loop_stop()
    sub.close()


def test_bad_bridge_config_exits_2_naming_the_parameter(start_node, tmp_path):
    p = start_node(
        "mqtt_bridge_node", "-p", "port:=70000", "-p", f"outbox_path:={tmp_path / 'o.sqlite'}", name="badport"
    )
    wait_for(lambda: not p.alive(), 30, what="bridge exit")
    assert p.proc.returncode == 2 and "parameter 'port'" in p.log()
    p = start_node(
        "mqtt_bridge_node",
        "-p",
        "password_env:=NV_TEST_NO_SUCH_VAR",
        "-p",
        "username:=u",
        "-p",
        f"outbox_path:={tmp_path / 'o.sqlite'}",
        name="nopw",
    )
    wait_for(lambda: not p.alive(), 30, what="bridge exit")
    assert p.proc.returncode == 2 and "NV_TEST_NO_SUCH_VAR is not set" in p.log()


def test_example_params_file_loads(start_node, broker, tmp_path):
    from conftest import REPO

    sub = Subscriber(broker.port, topics=("nano_vision/demo-site/demo-device/status",))
    p = start_node(
        "mqtt_bridge_node",
        "--params-file",
        str(REPO / "config" / "mqtt_bridge.yaml"),
        "-p",
        f"port:={broker.port}",
        "-p",
        f"outbox_path:={tmp_path / 'o.sqlite'}",
        name="example",
    )
    wait_for(
        lambda: sub.on("nano_vision/demo-site/demo-device/status"),
        30,
        what="bridge online with config/mqtt_bridge.yaml",
    )
    assert p.alive()
    sub.close()
