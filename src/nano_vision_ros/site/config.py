"""The site file (config/site.yaml): cameras, the nodes attached to each, site-wide nodes, services."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from nano_vision_ros.core import paths
from nano_vision_ros.core.config_yaml import ConfigProblems, load_yaml, validate_yaml
from nano_vision_ros.core.errors import ConfigError

#: node kind -> console script (one per node; see setup.py)
NODE_KINDS: dict[str, str] = {
    "camera": "camera_node",
    "detector": "detector_node",
    "events": "events_node",
    "rtmp_streamer": "rtmp_streamer_node",
    "recorder": "recorder_node",
    "face": "face_node",
    "plate": "plate_node",
    "mqtt_bridge": "mqtt_bridge_node",
    "uploader": "uploader_node",
    "webrtc": "webrtc_node",  # browser live view (WebRTC, docs/WEBRTC.md); per camera, needs the webrtc extra
    "metrics": "metrics_node",  # Prometheus /metrics from /diagnostics (docs/METRICS.md); a site node
    "foxglove": "foxglove_node",  # Foxglove WebSocket live view without ROS (docs/FOXGLOVE.md); a site node
}

#: kinds whose nodes publish frames: their process gets the frame-sized shared-memory segment
IMAGE_KINDS = frozenset({"camera", "detector"})

#: how a camera's nodes are packed into processes: each its own (`per_node`), the camera's nodes in
#: one container (`per_camera`), or with every `one` camera and the site nodes in one container.
Packing = Literal["per_node", "per_camera", "one"]

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


def _check_name(value: str, what: str) -> str:
    if not _NAME.match(value):
        raise ValueError(f"{what} {value!r} is not a valid ROS name (letters, digits, '_'; starts with a letter)")
    return value


class NodeEntry(BaseModel):
    """One node of the graph. In YAML either a kind (`detector`) or a mapping with options."""

    model_config = ConfigDict(extra="forbid")
    kind: str
    name: str = ""  # ROS node name; default: the executable name (e.g. detector_node)
    params: dict[str, Any] = Field(default_factory=dict)  # per-node overrides of the params file
    remappings: dict[str, str] = Field(default_factory=dict)
    respawn: bool = False
    respawn_delay: float = Field(2.0, ge=0)
    board: str = ""  # the board (host) it runs on; "": its camera's board, else the first board

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, v: str) -> str:
        if v not in NODE_KINDS:
            raise ValueError(f"unknown node kind {v!r}; known: {', '.join(NODE_KINDS)}")
        return v

    @field_validator("name")
    @classmethod
    def _valid_name(cls, v: str) -> str:
        return _check_name(v, "node name") if v else v

    @property
    def executable(self) -> str:
        return NODE_KINDS[self.kind]

    @property
    def node_name(self) -> str:
        return self.name or self.executable


def _entries(v: Any) -> Any:
    return [{"kind": e} if isinstance(e, str) else e for e in (v or [])]


class CameraEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    nodes: list[NodeEntry] = Field(default_factory=list)
    processes: Packing | None = None  # None: the site's `processes`
    board: str = ""  # the board that captures it (its frames stay there); "": the first board

    _norm = field_validator("nodes", mode="before")(lambda cls, v: _entries(v))

    @field_validator("name")
    @classmethod
    def _valid(cls, v: str) -> str:
        return _check_name(v, "camera name")

    @model_validator(mode="after")
    def _unique(self) -> CameraEntry:
        names = [n.node_name for n in self.nodes]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(
                f"camera {self.name}: node names used twice: {', '.join(sorted(dup))} (give each a distinct name)"
            )
        return self


class ServiceEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    enabled: bool = False
    port: int = Field(0, ge=0, le=65535)
    host: str = "127.0.0.1"
    board: str = ""  # the board whose runner starts it; "": the first board


class ReceiverEntry(ServiceEntry):
    """The clip server (`nano-vision receive`) for the demo; paths relative to the working folder."""

    dir: str = "var/received_clips"
    token_file: str = "var/upload_token"
    status_port: int = Field(0, ge=0, le=65535)  # upload progress, GET /status (docs/UPLOAD_PROTOCOL.md); 0 = off


class Services(BaseModel):
    model_config = ConfigDict(extra="forbid")
    mosquitto: ServiceEntry = Field(default_factory=lambda: ServiceEntry(port=1883))
    nginx_rtmp: ServiceEntry = Field(default_factory=lambda: ServiceEntry(port=1935))
    clip_receiver: ReceiverEntry = Field(default_factory=lambda: ReceiverEntry(port=9009))


class BoardEntry(BaseModel):
    """One host of a multi-board site and how its nodes find the other boards (docs/BOARDS.md)."""

    model_config = ConfigDict(extra="forbid")
    name: str
    host: str = ""  # informational: the board's address on the site LAN
    # unicast discovery where multicast is blocked: the other boards' addresses (ROS_STATIC_PEERS)
    static_peers: list[str] = Field(default_factory=list)
    # a Fast DDS discovery server, "IP:PORT[;IP:PORT]" (ROS_DISCOVERY_SERVER); "" = none
    discovery_server: str = ""

    @field_validator("name")
    @classmethod
    def _valid(cls, v: str) -> str:
        return _check_name(v, "board name")

    @field_validator("static_peers")
    @classmethod
    def _peers(cls, v: list[str]) -> list[str]:
        for peer in v:
            if not peer or any(c in peer for c in "; \t"):
                raise ValueError(f"static peer {peer!r}: give one address or host name per list item")
        return v


class SiteConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    site_id: str = "site"
    device_id: str = "device"
    params_file: str = ""
    fastdds_profile: str = "config/fastdds_shm.xml"
    # processes whose nodes never publish frames get this profile (a small segment); "" = fastdds_profile
    fastdds_small_profile: str = ""
    processes: Packing = "per_node"  # default packing of each camera's nodes
    site_processes: Literal["per_node", "one"] = "per_node"  # site nodes: own processes, or the shared one
    discovery_range: Literal["default", "localhost", "subnet"] = "default"
    services: Services = Field(default_factory=Services)
    boards: list[BoardEntry] = Field(default_factory=list)  # empty: one board runs everything
    cameras: list[CameraEntry] = Field(default_factory=list)
    site_nodes: list[NodeEntry] = Field(default_factory=list)
    startup_grace: float = Field(3.0, ge=0, description="seconds a node must stay up to count as started")
    stop_timeout: float = Field(10.0, gt=0)

    _norm = field_validator("site_nodes", mode="before")(lambda cls, v: _entries(v))

    @model_validator(mode="after")
    def _unique_cameras(self) -> SiteConfig:
        names = [c.name for c in self.cameras]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"camera names used twice: {', '.join(sorted(dup))}")
        if not self.cameras and not self.site_nodes:
            raise ValueError("the site has no cameras and no site_nodes: nothing to run")
        boards = [b.name for b in self.boards]
        dup = {n for n in boards if boards.count(n) > 1}
        if dup:
            raise ValueError(f"board names used twice: {', '.join(sorted(dup))}")
        lonely = [b.name for b in self.boards if not (b.static_peers or b.discovery_server)]
        if len(self.boards) > 1 and self.discovery_range == "localhost" and lonely:
            raise ValueError(
                f"discovery_range: localhost keeps board(s) {', '.join(lonely)} to themselves; a site "
                "with boards needs `subnet` (multicast on the LAN), or static_peers / discovery_server "
                "on every board"
            )
        refs = [(f"camera {c.name}", c.board) for c in self.cameras]
        refs += [(f"camera {c.name} node {n.node_name}", n.board) for c in self.cameras for n in c.nodes]
        refs += [(f"site node {n.node_name}", n.board) for n in self.site_nodes]
        refs += [(f"service {k}", getattr(self.services, k).board) for k in Services.model_fields]
        for what, board in refs:
            if board and board not in boards:
                known = f"known: {', '.join(boards)}" if boards else "the site file has no `boards:`"
                raise ValueError(f"{what}: unknown board {board!r} ({known})")
        return self

    def board_names(self) -> list[str]:
        return [b.name for b in self.boards]

    def board_of(self, *choices: str) -> str:
        """The board an entry runs on: the first non-empty choice, else the first board ("" without boards)."""
        for c in choices:
            if c:
                return c
        return self.boards[0].name if self.boards else ""

    def board(self, name: str) -> BoardEntry:
        for b in self.boards:
            if b.name == name:
                return b
        known = ", ".join(self.board_names()) or "none (the site file has no `boards:`)"
        raise ConfigError(f"unknown board {name!r}; boards of this site: {known}", "board")


def load_site(path: str | Path) -> tuple[SiteConfig, Path]:
    """Parse and validate a site file; returns the config and the file's resolved path."""
    resolved = paths.resolve(path)
    if not resolved.is_file():
        raise ConfigError(f"site file not found: {path}", "site")
    doc = load_yaml(resolved)
    if doc.data is None:
        doc.data = {}
    if not isinstance(doc.data, dict):
        raise ConfigProblems([f"{doc.where()}: expected a mapping at the top level (site_id, cameras, …)"], "site")
    return validate_yaml(SiteConfig, doc, parameter="site"), resolved


def resolve_relative(value: str, base: Path) -> Path:
    """A path from the site file: absolute, relative to the site file, or package-relative."""
    p = Path(value).expanduser()
    if p.is_absolute():
        return p
    if (base.parent / p).exists():
        return (base.parent / p).resolve()
    return paths.resolve(value)
