"""Several boards (hosts) in one site file: `boards:`, `--board NAME`, discovery between boards.

The unit tests check which nodes, services and discovery settings each board gets. The end-to-end
test (test_two_boards_over_veth) runs two boards as two Linux network namespaces joined by a veth
pair: board A runs camera + events, board B mosquitto + the MQTT bridge; the link is cut for 20 s
mid-burst and every event still reaches MQTT once, in order; the bytes on the link show that no
frames crossed.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import REPO

from nano_vision_ros.core.errors import ConfigError
from nano_vision_ros.site.config import load_site
from nano_vision_ros.site.graph import build_graph

NANO_VISION = str(Path(sys.executable).parent / "nano-vision")

TWO_BOARDS = """
    params_file: params.yaml
    discovery_range: subnet
    boards:
      - {name: a, host: 10.213.77.1, static_peers: [10.213.77.2]}
      - {name: b, host: 10.213.77.2, static_peers: [10.213.77.1]}
    services:
      mosquitto: {enabled: true, port: 1884, board: b}
      nginx_rtmp: {enabled: true, port: 1936}
    cameras:
      - name: cam0
        board: a
        nodes: [camera, detector, events, {kind: recorder, board: b}]
      - name: cam1
        nodes: [camera]
    site_nodes:
      - {kind: mqtt_bridge, board: b}
      - uploader
"""


def write_site(tmp_path: Path, body: str) -> Path:
    (tmp_path / "params.yaml").write_text("/**:\n  ros__parameters: {}\n")
    site = tmp_path / "site.yaml"
    site.write_text(textwrap.dedent(body))
    return site


def test_each_board_gets_its_nodes_services_and_peers(tmp_path):
    site, path = load_site(write_site(tmp_path, TWO_BOARDS))
    a, b, whole = build_graph(site, path, "a"), build_graph(site, path, "b"), build_graph(site, path)
    # an entry without `board` runs on the first board; a camera node may name another board
    assert [n.label for n in a.nodes] == [
        "cam0/camera_node",
        "cam0/detector_node",
        "cam0/events_node",
        "cam1/camera_node",
        "uploader_node",
    ]
    assert [n.label for n in b.nodes] == ["cam0/recorder_node", "mqtt_bridge_node"]
    assert len(whole.nodes) == len(a.nodes) + len(b.nodes)  # no --board: the whole site on one machine
    assert {p.label for p in a.processes} | {p.label for p in b.processes} == {p.label for p in whole.processes}
    assert a.env["ROS_STATIC_PEERS"] == "10.213.77.2" and b.env["ROS_STATIC_PEERS"] == "10.213.77.1"
    assert a.env["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "SUBNET"
    assert "ROS_STATIC_PEERS" not in whole.env
    assert (a.runs_service("mosquitto"), b.runs_service("mosquitto")) == (False, True)
    assert (a.runs_service("nginx_rtmp"), b.runs_service("nginx_rtmp")) == (True, False)
    assert whole.runs_service("mosquitto") and whole.runs_service("nginx_rtmp")
    assert not b.runs_service("clip_receiver")  # not enabled: on no board


def test_discovery_server_is_passed_to_the_board(tmp_path):
    site, path = load_site(
        write_site(
            tmp_path,
            """
        boards: [{name: edge1, discovery_server: "192.168.1.10:11811"}, {name: edge2}]
        site_nodes: [mqtt_bridge]
    """,
        )
    )
    assert build_graph(site, path, "edge1").env["ROS_DISCOVERY_SERVER"] == "192.168.1.10:11811"
    assert "ROS_DISCOVERY_SERVER" not in build_graph(site, path, "edge2").env
    assert build_graph(site, path, "edge2").nodes == []  # a board may run nothing (yet)


def test_single_board_site_is_unchanged(tmp_path):
    site, path = load_site(REPO / "config" / "site.yaml")
    graph = build_graph(site, path)
    assert graph.board == "" and all(n.board == "" for n in graph.nodes)
    assert "ROS_STATIC_PEERS" not in graph.env
    assert graph.runs_service("mosquitto")
    with pytest.raises(ConfigError, match="unknown board 'a'.*no `boards:`"):
        build_graph(site, path, "a")


@pytest.mark.parametrize(
    "body,needle",
    [
        (
            "boards: [{name: a}]\ncameras: [{name: cam0, board: z, nodes: [camera]}]",
            "camera cam0: unknown board 'z' (known: a)",
        ),
        ("cameras: [{name: cam0, board: a, nodes: [camera]}]", "unknown board 'a' (the site file has no `boards:`)"),
        (
            "boards: [{name: a}]\nsite_nodes: [{kind: mqtt_bridge, board: b}]",
            "site node mqtt_bridge_node: unknown board 'b'",
        ),
        (
            "boards: [{name: a}]\nservices: {mosquitto: {board: q}}\nsite_nodes: [uploader]",
            "service mosquitto: unknown board 'q'",
        ),
        ("boards: [{name: a}, {name: a}]\nsite_nodes: [uploader]", "board names used twice: a"),
        ("boards: [{name: 1a}]\nsite_nodes: [uploader]", "board name '1a' is not a valid ROS name"),
        (
            "boards: [{name: a, static_peers: ['10.0.0.1;10.0.0.2']}]\nsite_nodes: [uploader]",
            "one address or host name per list item",
        ),
        (
            "discovery_range: localhost\nboards: [{name: a}, {name: b}]\nsite_nodes: [uploader]",
            "localhost keeps board(s) a, b to themselves",
        ),
    ],
)
def test_bad_boards_are_refused_with_a_clear_error(tmp_path, body, needle):
    with pytest.raises(ConfigError) as err:
        load_site(write_site(tmp_path, body))
    assert needle in str(err.value)


def test_cli_board_dry_run_and_unknown_board(tmp_path):
    site = write_site(tmp_path, TWO_BOARDS)
    out = subprocess.run(
        [NANO_VISION, "site", str(site), "--board", "b", "--dry-run"],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert "export ROS_STATIC_PEERS=10.213.77.1" in out.stdout
    assert "mqtt_bridge_node" in out.stdout and "camera_node" not in out.stdout
    bad = subprocess.run(
        [NANO_VISION, "site", str(site), "--board", "c", "--dry-run"],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2 and "unknown board 'c'; boards of this site: a, b" in bad.stderr


# --- two boards for real: network namespaces + veth ------------------------------------------------
SITE, DEVICE = "s1", "d1"
BASE = f"nano_vision/{SITE}/{DEVICE}"
MQTT_PORT = 1884  # inside board B's own namespace: no other server can hold it
CUT_S = 20.0
FRAME_RATE_BPS = 768 * 576 * 3 * 10  # what one 768x576 bgr8 camera at 10 fps would put on the link


def _lines(path: Path) -> list[dict]:
    import json

    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            pass  # a line being written
    return out


def _board_site(tmp: Path, static_peers: bool) -> Path:
    rules = tmp / "rules.yaml"
    rules.write_text("rules: [{name: people, type: object, labels: [person], end_after: 0.4, cooldown: 0}]\n")
    (tmp / "params.yaml").write_text(
        textwrap.dedent(f"""
        /**:
          ros__parameters: {{site_id: {SITE}, device_id: {DEVICE}}}
        /**/camera_node:
          ros__parameters: {{source: samples/vtest.mp4, loop: true}}
        /**/events_node:
          ros__parameters: {{rules: {rules}, snapshot_dir: {tmp / "snaps"}, tick_period: 0.1}}
        mqtt_bridge_node:
          ros__parameters: {{host: 127.0.0.1, port: {MQTT_PORT}, events_topics: [/cam0/events],
                             outbox_path: {tmp / "outbox.sqlite"}, reconnect_max: 1.0, stats_period: 1.0}}
    """)
    )
    peers_a, peers_b = ("[10.213.77.2]", "[10.213.77.1]") if static_peers else ("[]", "[]")
    site = tmp / "site.yaml"
    site.write_text(
        textwrap.dedent(f"""
        site_id: {SITE}
        device_id: {DEVICE}
        params_file: params.yaml
        fastdds_profile: {REPO / "config" / "fastdds_shm.xml"}
        fastdds_small_profile: {REPO / "config" / "fastdds_small.xml"}
        discovery_range: subnet
        boards:
          - {{name: a, host: 10.213.77.1, static_peers: {peers_a}}}
          - {{name: b, host: 10.213.77.2, static_peers: {peers_b}}}
        services:
          mosquitto: {{enabled: true, port: {MQTT_PORT}, board: b}}
          nginx_rtmp: {{enabled: false}}
          clip_receiver: {{enabled: false}}
        cameras:
          - {{name: cam0, board: a, nodes: [camera, events]}}
        site_nodes:
          - {{kind: mqtt_bridge, board: b}}
    """)
    )
    return site


@pytest.mark.parametrize("discovery", ["static_peers", "multicast"])
def test_two_boards_over_veth_cut_20s_loses_nothing_and_no_frames_cross(tmp_path, discovery):
    """Discovery by static peers (ROS_STATIC_PEERS), or by multicast alone (discovery_range: subnet)."""
    import os
    import time

    from conftest import wait_for
    from netns_boards import TwoBoards, netns_unavailable

    why = netns_unavailable()
    if why:
        pytest.skip(why)
    site = _board_site(tmp_path, static_peers=discovery == "static_peers")
    ctl = tmp_path / "ctl"
    ctl.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("ROS_AUTOMATIC_DISCOVERY_RANGE", "ROS_STATIC_PEERS")}
    env_a = {**env, **build_graph(*load_site(site), "a").env}
    env_b = {**env, **build_graph(*load_site(site), "b").env}
    scripts = str(Path(__file__).with_name("board_scripts.py"))
    boards = TwoBoards()
    try:
        b = boards.start(
            "b",
            [NANO_VISION, "site", str(site), "--board", "b", "--workdir", str(tmp_path / "wb")],
            tmp_path / "board_b.log",
            env_b,
        )
        sub = boards.start(
            "b", [sys.executable, scripts, "mqtt", str(ctl), str(MQTT_PORT), BASE], tmp_path / "sub.log", env_b
        )
        a = boards.start(
            "a",
            [NANO_VISION, "site", str(site), "--board", "a", "--workdir", str(tmp_path / "wa")],
            tmp_path / "board_a.log",
            env_a,
        )
        feeder = boards.start("a", [sys.executable, scripts, "feeder", str(ctl)], tmp_path / "feeder.log", env_a)

        def logs() -> str:
            return "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in sorted(tmp_path.glob("*.log")))

        def alive() -> bool:
            assert all(p.poll() is None for p in (a, b, sub, feeder)), f"a board process exited:\n{logs()}"
            return True

        wait_for(
            lambda: alive() and (ctl / "mqtt_connected").exists(), 60, what=f"MQTT subscriber on board B\n{logs()}"
        )
        wait_for(
            lambda: alive() and (ctl / "connected").exists(), 90, what="events_node subscribed to the feeder (board A)"
        )
        wait_for(
            lambda: alive() and any(m["topic"] == f"{BASE}/status" for m in _lines(ctl / "mqtt.jsonl")),
            90,
            what=f"bridge on board B online\n{logs()}",
        )
        wait_for(lambda: (ctl / "frames").exists(), 60, what="frames flowing on board A")

        # steady state: camera frames on board A, only discovery/status between the boards
        time.sleep(3)
        f0, b0, t0 = int((ctl / "frames").read_text()), boards.link_bytes(), time.monotonic()
        time.sleep(10)
        f1, b1, t1 = int((ctl / "frames").read_text()), boards.link_bytes(), time.monotonic()
        link_bps, fps = (b1 - b0) / (t1 - t0), (f1 - f0) / (t1 - t0)
        (tmp_path / "link_rate.txt").write_text(f"link {link_bps:.0f} B/s, frames on A {fps:.1f}/s\n")
        print(f"[boards] steady link {link_bps:.0f} B/s both ways while board A saw {fps:.1f} frames/s")
        assert fps > 2, f"board A's camera is not publishing frames ({fps:.1f}/s): the measurement would prove nothing"
        assert link_bps < FRAME_RATE_BPS / 20, f"{link_bps:.0f} B/s crossed the link: frames left board A"

        def keys(evs: list[dict]) -> list[tuple]:
            return [(e["event_id"], e["sequence"]) for e in evs]

        def mqtt_events() -> list[dict]:
            import json

            return [json.loads(m["payload"]) for m in _lines(ctl / "mqtt.jsonl") if m["topic"] == f"{BASE}/events"]

        (ctl / "go1").write_text("1000 40 0.05")
        time.sleep(1.0)
        boards.link(up=False)  # mid-burst: some events are on the wire, some not yet published
        cut_at = time.monotonic()
        wait_for(lambda: (ctl / "done1").exists(), 30, what="burst 1")
        (ctl / "go2").write_text("2000 40 0.05")  # produced while the link is down
        wait_for(lambda: (ctl / "done2").exists(), 30, what="burst 2")
        time.sleep(max(0.0, CUT_S - (time.monotonic() - cut_at)))
        during = {e["track_ids"][0] for e in mqtt_events()}
        assert not during & set(range(2000, 2040)), "events produced during the cut reached MQTT: the link was not cut"
        boards.link(up=True)
        (ctl / "go3").write_text("3000 40 0.02")
        wait_for(lambda: (ctl / "done3").exists(), 30, what="burst 3")

        wait_for(
            lambda: len({e["track_ids"][0] for e in _lines(ctl / "ros_events.jsonl")}) >= 120,
            60,
            what="events for all 120 tracks published on board A",
        )
        ros = keys(_lines(ctl / "ros_events.jsonl"))
        wait_for(
            lambda: set(ros) <= set(keys(mqtt_events())),
            180,
            what=f"every event through board B to MQTT ({len(set(ros) - set(keys(mqtt_events())))} missing)",
        )
        got = keys(mqtt_events())
        assert len(got) == len(set(got)), "an event reached MQTT twice"
        first = {k: i for i, k in reversed(list(enumerate(got)))}
        assert sorted(ros, key=first.__getitem__) == ros, "MQTT order differs from the order board A published"
        (ctl / "stop").touch()
        for p in (feeder, sub, a, b):
            boards.stop(p)
    finally:
        (ctl / "stop").touch()
        boards.close()


def test_launch_file_board_argument_starts_that_boards_part(tmp_path):
    """launch/site.launch.py `board:=NAME`: the same selection as `nano-vision site --board`."""
    import importlib.util

    from launch.actions import ExecuteProcess, SetEnvironmentVariable

    from launch import LaunchContext

    spec = importlib.util.spec_from_file_location("site_launch", REPO / "launch" / "site.launch.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    site = write_site(tmp_path, TWO_BOARDS)

    def actions(board: str) -> list:
        ctx = LaunchContext()
        ctx.launch_configurations.update(
            {"site_config": str(site), "start_services": "true", "board": board, "check": "false"}
        )  # the fixed ports of TWO_BOARDS may be taken here
        return mod._nodes(ctx)

    def names(acts: list) -> list[str]:  # the services (plain processes, not nodes)
        from launch_ros.actions import Node

        return sorted(
            "".join(getattr(t, "text", "") for t in a.name)
            for a in acts
            if isinstance(a, ExecuteProcess) and not isinstance(a, Node) and a.name
        )

    def env(acts: list) -> dict[str, str]:
        out = {}
        for a in acts:
            if isinstance(a, SetEnvironmentVariable):
                out[a.name[0].text] = a.value[0].text
        return out

    a, b, everything = actions("a"), actions("b"), actions("")
    assert "mosquitto" in names(b) and "mosquitto" not in names(a) and "nginx_rtmp" in names(a)
    assert env(a)["ROS_STATIC_PEERS"] == "10.213.77.2" and env(b)["ROS_STATIC_PEERS"] == "10.213.77.1"
    assert "ROS_STATIC_PEERS" not in env(everything)
    node_actions = [len([x for x in acts if not isinstance(x, SetEnvironmentVariable)]) for acts in (a, b, everything)]
    assert node_actions[0] + node_actions[1] == node_actions[2]
    with pytest.raises(ConfigError, match="unknown board 'zz'"):
        actions("zz")
