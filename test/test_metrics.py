"""Prometheus metrics: core mapping of diagnostics to metrics, and a real scrape of metrics_node
while camera_node and detector_node run in their own processes."""

from __future__ import annotations

import os
import urllib.request
from pathlib import Path

from conftest import free_port, wait_for
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import CollectorRegistry

from nano_vision_ros.core.metrics import MAX_NODES, MetricsCollector, MetricsStore, Status, camera_of, proc_usage
from nano_vision_ros.core.mqtt.outbox import Outbox


class _Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def _samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    return [(s.name, s.labels, s.value) for fam in text_string_to_metric_families(text) for s in fam.samples]


def _value(samples, name: str, **labels: str) -> float | None:
    found = [v for n, lb, v in samples if n == name and all(lb.get(k) == x for k, x in labels.items())]
    assert len(found) <= 1, f"{name}{labels}: {len(found)} series"
    return found[0] if found else None


def _scrape(store: MetricsStore, **kw) -> list:
    reg = CollectorRegistry(auto_describe=False)
    reg.register(MetricsCollector(store, **kw))
    return _samples(generate_latest(reg).decode())


# values as the nodes' Diagnostics publish them (strings; floats with 3 decimals)
DETECTOR = {
    "state": "active",
    "task": "coco_objects",
    "frames": "120",
    "fps": "4.875",
    "preprocess_ms": "3.250",
    "inference_ms": "61.500",
    "postprocess_ms": "1.125",
    "dropped": "7",
    "errors": "2",
    "last_frame_error": "",
    "backend": "onnxruntime",
    "bad_frames": "3",
    "bad_frames_step": "2",
    "bad_frames_encoding": "1",
}
CAMERA = {
    "state": "reconnecting",
    "source": "file",
    "fps": "0.0",
    "frames": "55",
    "drops": "1",
    "throttled": "0",
    "reconnects": "4",
    "attempts": "2",
    "width": "640",
    "height": "480",
    "last_error": "gone",
    "frame_id": "cam0",
}
UPLOADER = {
    "queue_queued": "3",
    "queue_uploading": "1",
    "queue_done": "10",
    "queue_failed": "2",
    "uploaded": "10",
    "failures": "5",
    "bytes_sent": "1048576",
    "current": "",
    "last_error": "",
    "bad_notices": "0",
}


def test_detector_camera_uploader_map_to_standard_names_and_labels() -> None:
    clock = _Clock()
    store = MetricsStore(stale_after=5.0, clock=clock)
    store.update(Status("/cam0/detector_node", 1, "active", "host", DETECTOR))
    store.update(Status("/cam0/camera_node", 2, "reconnecting", "host", CAMERA))
    store.update(Status("/uploader_node", 0, "ok", "host", UPLOADER))
    s = _scrape(store, hostname="host")
    det = {"node": "/cam0/detector_node", "camera": "cam0"}
    assert _value(s, "nano_vision_node_up", **det) == 1
    assert _value(s, "nano_vision_node_level", **det) == 1
    assert _value(s, "nano_vision_node_fps", **det) == 4.875
    assert _value(s, "nano_vision_node_latency_seconds", stage="inference", **det) == 0.0615
    assert _value(s, "nano_vision_node_latency_seconds", stage="preprocess", **det) == 0.00325
    assert _value(s, "nano_vision_node_dropped_total", **det) == 7
    assert _value(s, "nano_vision_node_errors_total", **det) == 2
    assert _value(s, "nano_vision_node_frames_total", **det) == 120
    assert _value(s, "nano_vision_node_bad_frames_total", kind="step", **det) == 2
    assert _value(s, "nano_vision_node_bad_frames_total", kind="encoding", **det) == 1
    cam = {"node": "/cam0/camera_node", "camera": "cam0"}
    assert _value(s, "nano_vision_camera_state", state="reconnecting", **cam) == 1
    assert _value(s, "nano_vision_camera_state", state="streaming", **cam) == 0
    assert _value(s, "nano_vision_camera_reconnects_total", **cam) == 4
    assert _value(s, "nano_vision_camera_state", node="/cam0/detector_node") is None  # not a camera
    up = {"node": "/uploader_node", "camera": ""}
    assert _value(s, "nano_vision_upload_queue_depth", **up) == 4  # queued + uploading
    assert _value(s, "nano_vision_upload_queue_items", state="failed", **up) == 2
    assert _value(s, "nano_vision_upload_sent_bytes_total", **up) == 1048576
    assert _value(s, "nano_vision_node_errors_total", **up) == 5  # failures
    # free text (state, last_error, backend) never becomes a series or a label
    assert not any("active" in lb.values() or "onnxruntime" in lb.values() for _, lb, _v in s)


def test_outbox_from_a_real_outbox(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "outbox.sqlite", 100)
    for i in range(3):
        box.put(f"t/{i}", b"x")
    values = {k: str(v) for k, v in box.stats().items()} | {"connected": "False", "events_received": "3"}
    box.close()
    store = MetricsStore()
    store.update(Status("/mqtt_bridge_node", 1, "not connected", "", values))
    s = _scrape(store)
    lb = {"node": "/mqtt_bridge_node", "camera": ""}
    assert _value(s, "nano_vision_outbox_depth", **lb) == 3
    assert _value(s, "nano_vision_outbox_oldest_age_seconds", **lb) is not None
    assert _value(s, "nano_vision_outbox_dropped_total", reason="updates", **lb) == 0
    assert _value(s, "nano_vision_mqtt_connected", **lb) == 0


def test_silent_node_goes_down_then_is_forgotten() -> None:
    clock = _Clock()
    store = MetricsStore(stale_after=5.0, forget_after=60.0, clock=clock)
    store.update(Status("/cam0/detector_node", 0, "ok", "", DETECTOR))
    clock.t += 4.0
    s = _scrape(store)
    assert _value(s, "nano_vision_node_up", node="/cam0/detector_node") == 1
    clock.t += 2.0
    s = _scrape(store)
    assert _value(s, "nano_vision_node_up", node="/cam0/detector_node") == 0
    assert _value(s, "nano_vision_node_level", node="/cam0/detector_node") == 3
    assert _value(s, "nano_vision_node_report_age_seconds", node="/cam0/detector_node") == 6.0
    assert _value(s, "nano_vision_node_fps", node="/cam0/detector_node") is None  # a frozen fps would lie
    store.update(Status("/cam0/detector_node", 0, "ok", "", DETECTOR))  # back
    assert _value(_scrape(store), "nano_vision_node_up", node="/cam0/detector_node") == 1
    clock.t += 61.0
    assert _value(_scrape(store), "nano_vision_node_up", node="/cam0/detector_node") is None


def test_hostile_values_are_bounded_and_ignored() -> None:
    store = MetricsStore()
    junk = {"fps": "nan", "dropped": "lots", "x" * 30 + "_ms": "1", "Bad-Key_ms": "2", "errors": "1e400"}
    junk.update({f"s{i}_ms": "1.0" for i in range(100)})
    store.update(Status("/evil", 7, "", "", junk))
    s = _scrape(store)
    assert _value(s, "nano_vision_node_fps", node="/evil") is None
    assert _value(s, "nano_vision_node_dropped_total", node="/evil") is None
    assert _value(s, "nano_vision_node_level", node="/evil") == 3  # clamped
    assert len([1 for n, lb, _ in s if n == "nano_vision_node_latency_seconds"]) <= 32
    for i in range(MAX_NODES + 10):
        store.update(Status(f"/n{i}", 0, "", "", {}))
    assert len(store) == MAX_NODES and store.refused >= 10


def test_camera_label_and_process_usage_of_this_process() -> None:
    assert camera_of("/cam0/detector_node", {}) == "cam0"
    assert camera_of("/uploader_node", {}) == ""
    assert camera_of("/events_node", {"camera": "gate"}) == "gate"
    cpu, rss = proc_usage(os.getpid())
    assert cpu > 0 and rss > 10 * 2**20
    assert proc_usage(2**22 + 12345) is None
    store = MetricsStore()
    store.update(Status("/cam0/detector_node", 0, "", "host", {"pid": str(os.getpid())}))
    store.update(Status("/remote/detector_node", 0, "", "other-host", {"pid": str(os.getpid())}))
    s = _scrape(store, hostname="host", self_node=("/metrics_node", os.getpid()))
    assert _value(s, "process_resident_memory_bytes", node="/cam0/detector_node", pid=str(os.getpid())) > 0
    assert _value(s, "process_cpu_seconds_total", node="/cam0/detector_node") > 0
    assert _value(s, "process_cpu_seconds_total", node="/remote/detector_node") is None  # not this host's pid
    assert _value(s, "process_cpu_seconds_total", node="/metrics_node") > 0


def _get(port: int) -> list:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        assert r.status == 200
        return _samples(r.read().decode())


def test_scrape_while_camera_and_detector_run(start_node, samples) -> None:
    port = free_port()
    metrics = start_node("metrics_node", "-p", f"port:={port}", "-p", "stale_after:=3.0", name="metrics")
    cam = start_node(
        "camera_node", "-r", "__ns:=/cam0", "-p", f"source:={samples / 'vtest.avi'}", "-p", "fps:=5.0", name="camera"
    )
    det = start_node("detector_node", "-r", "__ns:=/cam0", "-p", "task:=coco_objects", name="detector")
    state: dict[str, list] = {}

    def scrape_ok() -> bool:
        try:
            state["s"] = _get(port)
        except OSError:
            return False
        s = state["s"]
        return all(
            (_value(s, "nano_vision_node_fps", node=n, camera="cam0") or 0) > 0
            for n in ("/cam0/camera_node", "/cam0/detector_node")
        )

    wait_for(scrape_ok, 120, interval=0.5, what="fps > 0 for camera and detector on /metrics")
    s = state["s"]
    det_l = {"node": "/cam0/detector_node", "camera": "cam0"}
    assert _value(s, "nano_vision_node_up", **det_l) == 1
    assert _value(s, "nano_vision_camera_state", node="/cam0/camera_node", state="streaming") == 1
    assert (_value(s, "nano_vision_node_latency_seconds", stage="infer", **det_l) or 0) > 0
    assert (_value(s, "nano_vision_node_latency_seconds", stage="total", **det_l) or 0) > 0
    assert _value(s, "nano_vision_node_dropped_total", **det_l) is not None
    assert _value(s, "process_resident_memory_bytes", pid=str(det.pid), **det_l) > 10 * 2**20
    assert _value(s, "process_cpu_seconds_total", pid=str(cam.pid), node="/cam0/camera_node") > 0
    assert _value(s, "nano_vision_node_up", node="/metrics_node") == 1  # its own diagnostics
    assert _value(s, "process_cpu_seconds_total", pid=str(metrics.pid), node="/metrics_node") is not None

    det.stop()
    wait_for(
        lambda: _value(_get(port), "nano_vision_node_up", **det_l) == 0,
        30,
        interval=0.5,
        what="detector up=0 after the staleness period",
    )
    s = _get(port)
    assert _value(s, "nano_vision_node_fps", **det_l) is None
    assert _value(s, "nano_vision_node_up", node="/cam0/camera_node") == 1
    assert metrics.alive()


def test_port_in_use_is_a_named_config_error(start_node) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        node = start_node("metrics_node", "-p", f"port:={port}", name="metrics_busy")
        wait_for(lambda: not node.alive(), 30, what="metrics_node exits on a busy port")
        assert node.proc.returncode == 2
        assert "port" in node.log() and str(port) in node.log()


def test_container_hosts_metrics_node_beside_a_camera(tmp_path: Path, samples) -> None:
    """metrics_node in a composition container with camera_node: both nodes, one pid."""
    import json
    import sys

    from conftest import NodeProcess

    port = free_port()
    specs = [
        {
            "executable": "camera_node",
            "name": "camera_node",
            "namespace": "/cam9",
            "args": [
                "--ros-args",
                "-r",
                "__node:=camera_node",
                "-r",
                "__ns:=/cam9",
                "-p",
                f"source:={samples / 'vtest.avi'}",
                "-p",
                "fps:=5.0",
            ],
        },
        {
            "executable": "metrics_node",
            "name": "metrics_node",
            "namespace": "/",
            "args": ["--ros-args", "-r", "__node:=metrics_node", "-p", f"port:={port}"],
        },
    ]
    proc = NodeProcess(
        [sys.executable, "-m", "nano_vision_ros.ros.container", *map(json.dumps, specs)], tmp_path / "container.log"
    )
    state: dict[str, list] = {}
    try:

        def ready() -> bool:
            try:
                state["s"] = _get(port)
            except OSError:
                return False
            return (_value(state["s"], "nano_vision_node_fps", node="/cam9/camera_node") or 0) > 0

        wait_for(ready, 90, interval=0.5, what="camera fps > 0 from metrics_node in the container")
        s = state["s"]
        pid = str(proc.pid)
        assert _value(s, "process_cpu_seconds_total", node="/cam9/camera_node", pid=pid) > 0
        assert _value(s, "process_cpu_seconds_total", node="/metrics_node", pid=pid) > 0
    finally:
        proc.stop()
        sys.stderr.write(proc.log()[-3000:])


def test_metrics_is_a_site_node_kind(tmp_path: Path) -> None:
    from nano_vision_ros.site.config import load_site
    from nano_vision_ros.site.graph import build_graph

    site = tmp_path / "site.yaml"
    site.write_text(
        "cameras: [{name: cam0, nodes: [camera]}]\n"
        "site_nodes: [mqtt_bridge, {kind: metrics, params: {port: 9470, stale_after: 3.0}}]\n"
    )
    graph = build_graph(*load_site(site))
    node = next(n for n in graph.nodes if n.kind == "metrics")
    assert node.executable == "metrics_node" and node.namespace == "" and node.label == "metrics_node"
    args = node.ros_args()
    assert "port:=9470" in args and "stale_after:=3.0" in args
