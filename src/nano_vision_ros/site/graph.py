"""The one place that turns a site file into nodes: used by the launch file and the runner."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nano_vision_ros.core.errors import ConfigError
from nano_vision_ros.site.config import NodeEntry, SiteConfig, resolve_relative

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


def environment(site: SiteConfig, site_path: Path) -> dict[str, str]:
    """Environment every node of the site gets (the Fast DDS shared-memory profile above all)."""
    env: dict[str, str] = {}
    if site.fastdds_profile:
        prof = resolve_relative(site.fastdds_profile, site_path)
        if not prof.is_file():
            raise ConfigError(f"fastdds_profile not found: {site.fastdds_profile}", "fastdds_profile")
        env["FASTDDS_DEFAULT_PROFILES_FILE"] = str(prof)
    if site.discovery_range != "default":
        env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = site.discovery_range.upper()
    env.setdefault("RMW_IMPLEMENTATION", os.environ.get("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp"))
    return env


def build_graph(site: SiteConfig, site_path: Path) -> SiteGraph:
    params_files: list[str] = []
    if site.params_file:
        pf = resolve_relative(site.params_file, site_path)
        if not pf.is_file():
            raise ConfigError(f"params_file not found: {site.params_file}", "params_file")
        params_files.append(str(pf))

    def spec(entry: NodeEntry, namespace: str, camera: str) -> NodeSpec:
        return NodeSpec(
            executable=entry.executable,
            name=entry.node_name,
            namespace=namespace,
            params_files=list(params_files),
            parameters=dict(entry.params),
            remappings=dict(entry.remappings),
            respawn=entry.respawn,
            respawn_delay=entry.respawn_delay,
            camera=camera,
        )

    nodes: list[NodeSpec] = []
    for cam in site.cameras:
        for entry in cam.nodes:
            nodes.append(spec(entry, f"/{cam.name}", cam.name))
    for entry in site.site_nodes:
        nodes.append(spec(entry, "", ""))
    return SiteGraph(nodes=nodes, env=environment(site, site_path), site=site, site_path=site_path)
