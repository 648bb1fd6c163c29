"""The one place that turns a site file into nodes: used by the launch file and the runner."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nano_vision_ros.core.errors import ConfigError
from nano_vision_ros.site.config import (
    IMAGE_KINDS,
    NodeEntry,
    SiteConfig,
    resolve_relative,
)

PACKAGE = "nano_vision_ros"


@dataclass
class NodeSpec:
    """A node process as ``ros2 launch`` would start it."""

    executable: str
    name: str
    namespace: str  # "" or "/cam0"
    params_files: list[str] = field(default_factory=list)
    parameters: dict[str, Any] = field(default_factory=dict)
    remappings: dict[str, str] = field(default_factory=dict)
    respawn: bool = False
    respawn_delay: float = 2.0
    camera: str = ""
    kind: str = ""
    board: str = ""  # the board (host) it runs on; "" on a single-board site

    @property
    def label(self) -> str:
        """Log prefix: cam0/camera_node or mqtt_bridge_node."""
        return f"{self.namespace.strip('/')}/{self.name}" if self.namespace else self.name

    def ros_args(self) -> list[str]:
        """`--ros-args …` as the launch system would pass them."""
        args = ["--ros-args", "-r", f"__node:={self.name}"]
        if self.namespace:
            args += ["-r", f"__ns:={self.namespace}"]
        for f in self.params_files:
            args += ["--params-file", f]
        for k, v in self.parameters.items():
            args += ["-p", f"{k}:={_param_text(v)}"]
        for src, dst in self.remappings.items():
            args += ["-r", f"{src}:={dst}"]
        return args

    def container_arg(self) -> str:
        """The node as one argument of nano_vision_ros.ros.container."""
        return json.dumps(
            {"executable": self.executable, "name": self.name, "namespace": self.namespace, "args": self.ros_args()},
            separators=(",", ":"),
        )


@dataclass
class ProcessSpec:
    """One OS process of the site: a single node (its console script) or a container of nodes."""

    label: str
    nodes: list[NodeSpec]
    env: dict[str, str] = field(default_factory=dict)  # on top of the site's environment

    @property
    def camera(self) -> str:
        """The camera when every node belongs to it (such processes stop first); else ""."""
        cams = {n.camera for n in self.nodes}
        return cams.pop() if len(cams) == 1 else ""

    @property
    def respawn(self) -> bool:
        return any(n.respawn for n in self.nodes)

    @property
    def respawn_delay(self) -> float:
        return max(n.respawn_delay for n in self.nodes)

    @property
    def is_container(self) -> bool:
        return len(self.nodes) > 1

    def command(self, executable: str | None = None) -> list[str]:
        """argv: the node's console script (path `executable`) or the container module."""
        if not self.is_container:
            return [executable or self.nodes[0].executable, *self.nodes[0].ros_args()]
        return [sys.executable, "-m", "nano_vision_ros.ros.container", *(n.container_arg() for n in self.nodes)]


def _param_text(v: Any) -> str:
    """A -p value in YAML so ints, floats, bools, lists keep their type."""
    import yaml

    return yaml.safe_dump(v, default_flow_style=True).strip().removesuffix("\n...").strip()


@dataclass
class SiteGraph:
    nodes: list[NodeSpec]
    env: dict[str, str]
    site: SiteConfig
    site_path: Path
    processes: list[ProcessSpec] = field(default_factory=list)
    board: str = ""  # the board this graph is for; "" = every board (one machine runs the whole site)

    def runs_service(self, name: str) -> bool:
        """Whether this board's runner starts the service `name` (mosquitto, nginx_rtmp, clip_receiver)."""
        entry = getattr(self.site.services, name)
        return entry.enabled and (not self.board or self.site.board_of(entry.board) == self.board)


def environment(site: SiteConfig, site_path: Path, board: str = "") -> dict[str, str]:
    """Environment every node of the site (or of one board) gets: the Fast DDS profile, discovery."""
    env: dict[str, str] = {}
    if site.fastdds_profile:
        env["FASTDDS_DEFAULT_PROFILES_FILE"] = transport_profile(site.fastdds_profile, site_path, "fastdds_profile")
    if site.discovery_range != "default":
        env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = site.discovery_range.upper()
    if board:
        b = site.board(board)
        if b.static_peers:
            env["ROS_STATIC_PEERS"] = ";".join(b.static_peers)
        if b.discovery_server:
            env["ROS_DISCOVERY_SERVER"] = b.discovery_server
    env.setdefault("RMW_IMPLEMENTATION", os.environ.get("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp"))
    return env


#: the wildcard addresses a service may listen on; its clients then connect to the board's address
_ANY_ADDRESS = frozenset({"", "0.0.0.0", "::"})


def service_address(site: SiteConfig, name: str, client_board: str = "") -> str:
    """Where a client on `client_board` reaches the service `name` of the site file."""
    entry = getattr(site.services, name)
    if entry.host not in _ANY_ADDRESS:
        return entry.host
    svc_board = site.board_of(entry.board)
    if svc_board and svc_board != site.board_of(client_board):
        host = site.board(svc_board).host
        if host:
            return host
    return "127.0.0.1"


def derived_parameters(site: SiteConfig, kind: str, board: str = "") -> dict[str, Any]:
    """The parameters a node of `kind` takes from the site file, not from the params file.

    The site file is the one place for what both sides of a connection must agree on: the port
    (and address) of each service the site runs (`services:` with `enabled: true`), the upload
    token file, and the site and device ids (when the site file sets them). Its clients get them here — mqtt_bridge `host`/`port`,
    rtmp_streamer `url`, uploader `host`/`port`/`token_file` — so the params file does not repeat
    them (a service the site does not run, e.g. a broker elsewhere: set the client's parameters in
    the params file). A node entry's own `params:` still win.
    """
    svc = site.services
    out: dict[str, Any] = {k: getattr(site, k) for k in ("site_id", "device_id") if k in site.model_fields_set}
    if kind == "mqtt_bridge" and svc.mosquitto.enabled:
        out.update(host=service_address(site, "mosquitto", board), port=svc.mosquitto.port)
    elif kind == "rtmp_streamer" and svc.nginx_rtmp.enabled:
        out["url"] = f"rtmp://{service_address(site, 'nginx_rtmp', board)}:{svc.nginx_rtmp.port}/live/{{camera}}"
    elif kind == "uploader" and svc.clip_receiver.enabled:
        out.update(
            host=service_address(site, "clip_receiver", board),
            port=svc.clip_receiver.port,
            token_file=svc.clip_receiver.token_file,
        )
    return out


def build_graph(site: SiteConfig, site_path: Path, board: str | None = None) -> SiteGraph:
    """The site's nodes and processes; with `board`, only those that run on that board."""
    if board is not None:
        site.board(board)  # unknown board: ConfigError naming the known ones
    params_files: list[str] = []
    if site.params_file:
        pf = resolve_relative(site.params_file, site_path)
        if not pf.is_file():
            raise ConfigError(f"params_file not found: {site.params_file}", "params_file")
        params_files.append(str(pf))

    def spec(entry: NodeEntry, namespace: str, camera: str, board: str) -> NodeSpec:
        return NodeSpec(
            executable=entry.executable,
            name=entry.node_name,
            namespace=namespace,
            params_files=list(params_files),
            parameters={**derived_parameters(site, entry.kind, board), **entry.params},
            remappings=dict(entry.remappings),
            respawn=entry.respawn,
            respawn_delay=entry.respawn_delay,
            camera=camera,
            kind=entry.kind,
            board=board,
        )

    def here(n: NodeSpec) -> bool:
        return board is None or n.board == board

    nodes: list[NodeSpec] = []
    processes: list[ProcessSpec] = []
    shared = ProcessSpec("site_container", [])  # every `one` camera and (site_processes: one) the site nodes
    for cam in site.cameras:
        cam_nodes = [spec(e, f"/{cam.name}", cam.name, site.board_of(e.board, cam.board)) for e in cam.nodes]
        cam_nodes = [n for n in cam_nodes if here(n)]
        nodes += cam_nodes
        packing = cam.processes or site.processes
        if packing == "per_node":
            processes += [ProcessSpec(n.label, [n]) for n in cam_nodes]
        elif packing == "per_camera" and cam_nodes:
            processes.append(ProcessSpec(f"{cam.name}_container", cam_nodes))
        else:
            shared.nodes += cam_nodes
    site_nodes = [n for n in (spec(e, "", "", site.board_of(e.board)) for e in site.site_nodes) if here(n)]
    nodes += site_nodes
    if site.site_processes == "one" or shared.nodes:
        shared.nodes += site_nodes
    else:
        processes += [ProcessSpec(n.label, [n]) for n in site_nodes]
    if shared.nodes:
        processes.append(shared if len(shared.nodes) > 1 else ProcessSpec(shared.nodes[0].label, shared.nodes))
    small = transport_profile(site.fastdds_small_profile, site_path, "fastdds_small_profile")
    if small:
        for proc in processes:
            if not any(n.kind in IMAGE_KINDS for n in proc.nodes):
                proc.env["FASTDDS_DEFAULT_PROFILES_FILE"] = small
    return SiteGraph(
        nodes=nodes,
        env=environment(site, site_path, board or ""),
        site=site,
        site_path=site_path,
        processes=processes,
        board=board or "",
    )


def transport_profile(value: str, site_path: Path, key: str) -> str:
    """A Fast DDS profile file named in the site file, resolved; "" when not set."""
    if not value:
        return ""
    prof = resolve_relative(value, site_path)
    if not prof.is_file():
        raise ConfigError(f"{key} not found: {value}", key)
    return str(prof)
