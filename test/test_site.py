"""Site file validation, graph building, the runner (real node processes over DDS), colcon build."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from conftest import REPO, wait_for

from nano_vision_ros.core.errors import ConfigError
from nano_vision_ros.site.config import load_site
from nano_vision_ros.site.graph import build_graph

NANO_VISION = str(Path(sys.executable).parent / "nano-vision")


def write_site(tmp_path: Path, body: str, params: str = "") -> Path:
    (tmp_path / "params.yaml").write_text(textwrap.dedent(params) or "/**:\n  ros__parameters: {}\n")
    site = tmp_path / "site.yaml"
    site.write_text(textwrap.dedent(body))
    return site


def test_repo_site_file_is_valid():
    site, path = load_site(REPO / "config" / "site.yaml")
    graph = build_graph(site, path)
    assert graph.nodes, "demo site has nodes"
    assert graph.env["FASTDDS_DEFAULT_PROFILES_FILE"].endswith("fastdds_shm.xml")
    assert all(Path(f).is_file() for n in graph.nodes for f in n.params_files)


def test_graph_namespaces_names_and_ros_args(tmp_path):
    site = write_site(
        tmp_path,
        """
        params_file: params.yaml
        cameras:
          - name: gate
            nodes: [camera, {kind: detector, name: helmet_detector, params: {task: helmet, score_threshold: 0.4}}]
          - name: yard
            nodes: [camera]
        site_nodes: [mqtt_bridge]
    """,
    )
    graph = build_graph(*load_site(site))
    labels = [n.label for n in graph.nodes]
    assert labels == ["gate/camera_node", "gate/helmet_detector", "yard/camera_node", "mqtt_bridge_node"]
    det = graph.nodes[1]
    args = det.ros_args()
    assert args[:3] == ["--ros-args", "-r", "__node:=helmet_detector"]
    assert "__ns:=/gate" in args and str(tmp_path / "params.yaml") in args
    assert "task:=helmet" in args and "score_threshold:=0.4" in args


@pytest.mark.parametrize(
    "body,needle",
    [
        ("cameras: [{name: cam0, nodes: [teleporter]}]", "unknown node kind 'teleporter'"),
        ("cameras: [{name: 0cam, nodes: [camera]}]", "not a valid ROS name"),
        ("cameras: [{name: a, nodes: [camera]}, {name: a, nodes: [camera]}]", "camera names used twice"),
        ("cameras: [{name: a, nodes: [camera, camera]}]", "node names used twice"),
        ("cameras: []", "nothing to run"),
        ("cameras: [{name: a, nodes: [camera]}]\nparams_file: nope.yaml", "params_file not found"),
        ("cameras: [{name: a, nodes: [camera]}]\nflavour: vanilla", "flavour"),
        ("cameras: [{name: a, nodes: [camera]]", "not valid YAML"),
    ],
)
def test_bad_site_files_are_named(tmp_path, body, needle):
    site = tmp_path / "site.yaml"
    site.write_text(body)
    with pytest.raises(ConfigError, match=needle.replace("(", r"\(").replace("[", r"\[")):
        build_graph(*load_site(site))


def test_dry_run_prints_commands(tmp_path):
    site = write_site(tmp_path, "params_file: params.yaml\ncameras: [{name: cam0, nodes: [camera]}]\n")
    out = subprocess.run(
        [NANO_VISION, "site", str(site), "--dry-run"], capture_output=True, text=True, check=True
    ).stdout
    assert "export FASTDDS_DEFAULT_PROFILES_FILE=" in out
    assert "camera_node --ros-args -r __node:=camera_node -r __ns:=/cam0 --params-file" in out


def _image_counter(ros_node, topics):
    from sensor_msgs.msg import Image

    from nano_vision_ros.ros import qos

    node = ros_node("site_probe")
    counts = {t: 0 for t in topics}

    def make_cb(topic):
        def cb(_msg: Image) -> None:
            counts[topic] += 1

        return cb

    for t in topics:
        node.create_subscription(Image, t, make_cb(t), qos.SENSOR)
    return counts


def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True, check=False).stdout
    return [int(x) for x in out.split()]


def test_runner_starts_and_stops_a_two_node_graph(tmp_path, ros_node):
    site = write_site(
        tmp_path,
        """
        params_file: params.yaml
        discovery_range: localhost
        startup_grace: 2.0
        cameras:
          - name: cam_a
            nodes: [camera]
          - name: cam_b
            nodes: [camera]
    """,
        params="""
        /**/camera_node:
          ros__parameters:
            source: "test://pattern"
            width: 320
            height: 240
            fps: 10.0
    """,
    )
    counts = _image_counter(ros_node, ["/cam_a/image_raw", "/cam_b/image_raw"])
    log = open(tmp_path / "runner.log", "w+")  # noqa: SIM115 - read back at the end
    runner = subprocess.Popen(
        [NANO_VISION, "site", str(site), "--no-services"], stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        wait_for(lambda: all(c >= 5 for c in counts.values()), timeout=30, what="frames from both cameras")
        kids = _children(runner.pid)
        assert len(kids) == 2, f"two node processes expected, found {kids}"
        runner.send_signal(signal.SIGINT)  # Ctrl-C to the runner only; it forwards to the nodes
        assert runner.wait(30) == 0
        for k in kids:
            assert not Path(f"/proc/{k}").exists() or "zombie" in Path(f"/proc/{k}/status").read_text().lower(), (
                f"node {k} still running"
            )
    finally:
        if runner.poll() is None:
            os.killpg(runner.pid, signal.SIGKILL)
        log.seek(0)
        text = log.read()
    assert "[cam_a/camera_node]" in text and "[cam_b/camera_node]" in text, text[-2000:]
    assert "[site] stopped" in text


def test_runner_fails_clearly_when_a_node_dies_at_startup(tmp_path):
    site = write_site(
        tmp_path,
        """
        params_file: params.yaml
        discovery_range: localhost
        startup_grace: 5.0
        cameras:
          - name: good
            nodes: [camera]
          - name: broken
            nodes: [{kind: camera, params: {source_kind: teleport}}]
    """,
        params="""
        /**/camera_node:
          ros__parameters:
            source: "test://pattern"
    """,
    )
    t0 = time.monotonic()
    # --no-check: the runner's own start-up failure path (`nano-vision check` would refuse the site first)
    res = subprocess.run(
        [NANO_VISION, "site", str(site), "--no-services", "--no-check"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert res.returncode == 1
    assert "broken/camera_node exited with code 2 during start-up" in res.stderr
    assert "source_kind" in res.stderr  # the node's own message names the bad parameter
    assert time.monotonic() - t0 < 60


def test_colcon_build_installs_every_node():
    res = subprocess.run(
        [str(REPO / "scripts" / "colcon_check.sh")], capture_output=True, text=True, timeout=600, check=False
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert "colcon build: OK" in res.stdout


def test_runner_names_a_service_port_already_in_use(tmp_path):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        site = write_site(
            tmp_path,
            f"""
            params_file: params.yaml
            services:
              mosquitto: {{enabled: true, port: {port}}}
            cameras: [{{name: cam0, nodes: [camera]}}]
        """,
        )
        res = subprocess.run([NANO_VISION, "site", str(site)], capture_output=True, text=True, timeout=60, check=False)
    assert res.returncode == 1
    assert f"127.0.0.1:{port} is already in use" in res.stderr and "services:" in res.stderr
    assert "started" not in res.stdout  # no node was started


@pytest.mark.parametrize("service", ["mosquitto", "nginx_rtmp", "clip_receiver"])
def test_service_module_runs_each_local_server_until_ctrl_c(tmp_path, service):
    """`python -m nano_vision_ros.site.services NAME` is how the launch file starts the demo's servers."""
    import socket

    from conftest import free_port

    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "nano_vision_ros.site.services",
            service,
            "--port",
            str(port),
            "--workdir",
            str(tmp_path / "work"),
            "--dir",
            str(tmp_path / "clips"),
            "--token-file",
            str(tmp_path / "token"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=tmp_path,
    )

    def listening() -> bool:
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0

    try:
        wait_for(listening, timeout=30, what=f"{service} on port {port}")
    finally:
        proc.send_signal(signal.SIGINT)
        out = proc.communicate(timeout=30)[0]
    assert proc.returncode == 0, out
    assert f"{service} running on 127.0.0.1:{port}" in out
    assert not listening(), f"{service} still listening after Ctrl-C"


def test_ports_and_ids_come_from_the_site_file_once(tmp_path):
    """The services' ports are written once (site file); their clients' parameters are derived."""
    site = write_site(
        tmp_path,
        """
        site_id: s9
        params_file: params.yaml
        services:
          mosquitto: {enabled: true, port: 18831}
          nginx_rtmp: {enabled: true, port: 19351}
          clip_receiver: {enabled: true, port: 19009, token_file: var/tok}
        cameras: [{name: gate, nodes: [camera, rtmp_streamer]}]
        site_nodes: [mqtt_bridge, uploader, {kind: metrics, params: {port: 9470}}]
    """,
    )
    graph = build_graph(*load_site(site))
    by = {n.label: n.parameters for n in graph.nodes}
    assert by["mqtt_bridge_node"] == {"site_id": "s9", "host": "127.0.0.1", "port": 18831}
    assert by["gate/rtmp_streamer_node"] == {"site_id": "s9", "url": "rtmp://127.0.0.1:19351/live/{camera}"}
    assert by["uploader_node"] == {"site_id": "s9", "host": "127.0.0.1", "port": 19009, "token_file": "var/tok"}
    assert by["metrics_node"] == {"site_id": "s9", "port": 9470}  # an entry's own params: kept
    # the shipped params file repeats none of them
    import yaml

    shipped = yaml.safe_load((REPO / "config" / "site_params.yaml").read_text())
    for section in shipped.values():
        assert not {"host", "port", "url", "token_file", "site_id", "device_id"} & set(section["ros__parameters"])
