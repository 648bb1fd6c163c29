"""Several nodes in one process (site file `processes:`): the graph a probe node sees (node names,
namespaces, topics, parameter values) is the same as with one process per node; the runner starts
one process per camera; a bad node in a container fails the start naming it; Ctrl-C stops all."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from conftest import wait_for

from nano_vision_ros.site.config import load_site
from nano_vision_ros.site.graph import build_graph

NANO_VISION = str(Path(sys.executable).parent / "nano-vision")
PARAMS = """
    /**/camera_node:
      ros__parameters:
        source: "test://pattern"
        width: 320
        height: 240
        fps: 5.0
    /cam_b/camera_node:
      ros__parameters:
        fps: 4.0
    /**/events_node:
      ros__parameters:
        snapshot_dir: {snap}
"""


def _site(tmp_path: Path, processes: str, cam_b_nodes: str = "[camera, events]") -> Path:
    (tmp_path / "params.yaml").write_text(textwrap.dedent(PARAMS).format(snap=tmp_path / "snaps"))
    site = tmp_path / f"site_{processes}.yaml"
    site.write_text(
        textwrap.dedent(f"""
        params_file: params.yaml
        discovery_range: localhost
        fastdds_small_profile: {Path(__file__).resolve().parent.parent / "config" / "fastdds_small.xml"}
        startup_grace: 3.0
        processes: {processes}
        cameras:
          - name: cam_a
            nodes: [camera, events]
          - name: cam_b
            nodes: {cam_b_nodes}
    """)
    )
    return site


def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True, check=False).stdout
    return [int(x) for x in out.split()]


def _get_params(node, target: str, names: list[str]) -> list:
    from rcl_interfaces.srv import GetParameters
    from rclpy.parameter import parameter_value_to_python

    client = node.create_client(GetParameters, f"{target}/get_parameters")
    wait_for(lambda: client.wait_for_service(timeout_sec=0.5), timeout=30, what=f"{target}/get_parameters")
    fut = client.call_async(GetParameters.Request(names=names))
    wait_for(fut.done, timeout=30, what=f"{target} parameters")
    node.destroy_client(client)
    return [parameter_value_to_python(v) for v in fut.result().values]


def _observe(tmp_path: Path, processes: str, ros_node) -> dict:
    """Run the site, and from a probe node: node names, topics, a few parameters, frames; then Ctrl-C."""
    from sensor_msgs.msg import Image

    from nano_vision_ros.ros import qos

    site = _site(tmp_path, processes)
    probe = ros_node(f"composition_probe_{processes}")
    frames = {"/cam_a/image_raw": 0, "/cam_b/image_raw": 0}

    def counter(topic):
        def cb(_m: Image) -> None:
            frames[topic] += 1

        return cb

    subs = [probe.create_subscription(Image, t, counter(t), qos.SENSOR) for t in frames]
    log = open(tmp_path / f"runner_{processes}.log", "w+")  # noqa: SIM115 - read back at the end
    runner = subprocess.Popen(
        [NANO_VISION, "site", str(site), "--no-services"], stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    expected = {
        ("camera_node", "/cam_a"),
        ("events_node", "/cam_a"),
        ("camera_node", "/cam_b"),
        ("events_node", "/cam_b"),
    }
    try:
        wait_for(
            lambda: all(c >= 3 for c in frames.values()), timeout=60, what=f"frames from both cameras ({processes})"
        )
        names = wait_for(
            lambda: n if expected <= (n := set(probe.get_node_names_and_namespaces())) else None,
            timeout=30,
            what="all four nodes in the graph",
        )
        ours = {n for n in names if n[1] in ("/cam_a", "/cam_b")}

        def cam_topics() -> set[str]:
            return {t for t, _ in probe.get_topic_names_and_types() if t.startswith(("/cam_a/", "/cam_b/"))}

        # discovery of every endpoint takes a while on a loaded machine: wait until both events
        # nodes' inputs are seen, then until the set stops changing
        wait_for(
            lambda: {"/cam_a/clips", "/cam_b/clips", "/cam_a/plates", "/cam_b/plates"} <= cam_topics(),
            timeout=60,
            what=f"the events nodes' topics in the graph ({processes})",
        )
        seen: list[set[str]] = [set()]

        def stable() -> bool:
            now = cam_topics()
            same = now == seen[0]
            seen[0] = now
            return same

        wait_for(stable, timeout=30, interval=2.0, what="a stable topic list")
        topics = seen[0]
        params = {
            ns: _get_params(probe, f"{ns}/camera_node", ["fps", "width", "source"]) for ns in ("/cam_a", "/cam_b")
        }
        params["events"] = _get_params(probe, "/cam_b/events_node", ["snapshot_dir"])
        kids = _children(runner.pid)
        runner.send_signal(signal.SIGINT)
        code = runner.wait(60)
        alive = [
            k
            for k in kids
            if Path(f"/proc/{k}").exists() and "zombie" not in Path(f"/proc/{k}/status").read_text().lower()
        ]
    finally:
        for s in subs:
            probe.destroy_subscription(s)
        if runner.poll() is None:
            os.killpg(runner.pid, signal.SIGKILL)
        log.seek(0)
        text = log.read()
    assert code == 0, text[-3000:]
    assert not alive, f"processes still running after Ctrl-C: {alive}"
    assert "Traceback" not in text, text[-3000:]
    return {"nodes": ours, "topics": topics, "params": params, "processes": len(kids), "log": text}


def test_graph_packs_processes_as_the_site_file_says(tmp_path):
    per_cam = build_graph(*load_site(_site(tmp_path, "per_camera")))
    assert [p.label for p in per_cam.processes] == ["cam_a_container", "cam_b_container"]
    assert [n.label for n in per_cam.processes[1].nodes] == ["cam_b/camera_node", "cam_b/events_node"]
    one = build_graph(*load_site(_site(tmp_path, "one")))
    assert [p.label for p in one.processes] == ["site_container"] and len(one.processes[0].nodes) == 4
    per_node = build_graph(*load_site(_site(tmp_path, "per_node")))
    assert [p.label for p in per_node.processes] == [n.label for n in per_node.nodes]
    # a process whose nodes publish no frames gets the small shared-memory segment; the camera's does not
    small = {p.label: p.env.get("FASTDDS_DEFAULT_PROFILES_FILE", "") for p in per_node.processes}
    assert small["cam_a/events_node"].endswith("fastdds_small.xml") and small["cam_a/camera_node"] == ""
    assert all(p.env == {} for p in per_cam.processes)  # a container with a camera keeps the frame-sized one
    # one camera may choose its own packing
    mixed = _site(tmp_path, "per_camera")
    mixed.write_text(mixed.read_text().replace("  - name: cam_b\n", "  - name: cam_b\n    processes: per_node\n"))
    labels = [p.label for p in build_graph(*load_site(mixed)).processes]
    assert labels == ["cam_a_container", "cam_b/camera_node", "cam_b/events_node"]


def test_per_camera_site_shows_the_same_graph_as_per_node(tmp_path, ros_node):
    per_node = _observe(tmp_path, "per_node", ros_node)
    per_camera = _observe(tmp_path, "per_camera", ros_node)
    assert per_node["processes"] == 4 and per_camera["processes"] == 2
    assert per_camera["nodes"] == per_node["nodes"] and len(per_camera["nodes"]) == 4
    assert per_camera["topics"] == per_node["topics"]
    assert {"/cam_a/image_raw", "/cam_b/image_raw", "/cam_a/events", "/cam_b/events"} <= per_camera["topics"]
    assert per_camera["params"] == per_node["params"]
    assert per_camera["params"]["/cam_b"] == [4.0, 320, "test://pattern"]  # the per-camera override reached its node
    assert per_camera["params"]["/cam_a"][0] == 5.0
    assert (
        "started cam_a_container" in per_camera["log"] and "cam_a/camera_node, cam_a/events_node" in per_camera["log"]
    )


def test_bad_node_in_a_container_fails_the_start_naming_it(tmp_path):
    site = _site(tmp_path, "per_camera", cam_b_nodes="[camera, {kind: events, params: {min_score: 7.5}}]")
    t0 = time.monotonic()
    # --no-check: the container's own start-up failure path (`nano-vision check` would refuse the site first)
    res = subprocess.run(
        [NANO_VISION, "site", str(site), "--no-services", "--no-check"],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert res.returncode == 1, res.stdout[-2000:] + res.stderr[-2000:]
    assert "cam_b_container exited with code 2 during start-up" in res.stderr
    assert "cam_b/events_node" in res.stderr and "min_score" in res.stderr, res.stderr[-2000:]
    assert time.monotonic() - t0 < 90


@pytest.mark.parametrize(
    "arg,needle",
    [
        ('{"executable": "teleport_node", "args": []}', "teleport_node"),
        ("not json", "not JSON"),
        ('{"name": "x"}', "'executable' and 'args'"),
    ],
)
def test_container_names_a_bad_node_argument(arg, needle):
    res = subprocess.run(
        [sys.executable, "-m", "nano_vision_ros.ros.container", arg],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert res.returncode == 2 and needle in res.stderr, res.stderr


def test_executor_choice_is_checked(monkeypatch):
    """NANO_VISION_EXECUTOR picks the executor (default `events`); a wrong name is a clear error."""
    import rclpy
    from rclpy.executors import MultiThreadedExecutor, SingleThreadedExecutor

    from nano_vision_ros.core.errors import ConfigError
    from nano_vision_ros.ros.runtime import EXECUTORS, make_executor

    monkeypatch.setenv("NANO_VISION_EXECUTOR", "fastest")
    with pytest.raises(ConfigError, match="must be one of multi, single, events.*'fastest'"):
        make_executor()
    assert EXECUTORS == ("multi", "single", "events")
    rclpy.init()  # the Python executors need an initialised default context
    try:
        monkeypatch.delenv("NANO_VISION_EXECUTOR")
        made = {"": make_executor()}
        for kind in EXECUTORS:
            monkeypatch.setenv("NANO_VISION_EXECUTOR", kind)
            made[kind] = make_executor()
        # rclpy.experimental.EventsExecutor is a factory of the C++ class of that name
        assert [type(made[k]).__name__ for k in ("", "events", "single", "multi")] == ["EventsExecutor"] * 2 + [
            SingleThreadedExecutor.__name__,
            MultiThreadedExecutor.__name__,
        ]
        for ex in made.values():
            ex.shutdown()
    finally:
        rclpy.try_shutdown()
