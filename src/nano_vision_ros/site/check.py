"""``nano-vision check [SITE]``: validate a whole site before anything starts.

What a node would refuse at its start (or worse, accept and run wrong) is found here for every node
at once, each problem as ``file:line: what (hint)``: the site file; the params file against each
node's own parameter model (names and values, as ``ros.params`` checks them in the node); the
detectors' task profiles and model files (they exist, load with ONNX Runtime and their outputs fit
the decoder and labels); event rules, and zones and lines inside the camera's image size; the
services' ports (free now, not used twice); folders the nodes write (writable) and files they read
(TLS, passwords, tokens: readable). Exit 1 with every problem, exit 0 with one OK line.

``nano-vision site`` and ``launch/site.launch.py`` run it first, in a child process
(``python -m nano_vision_ros.site.check``), so the models and node modules it loads do not stay in
the runner's memory.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import os
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from nano_vision_ros.core import paths
from nano_vision_ros.core.config_yaml import ConfigProblems, YamlDoc, flatten, load_yaml, unflatten
from nano_vision_ros.core.errors import ConfigError, ModelError, RuntimeMissingError
from nano_vision_ros.ros.naming import expand_camera
from nano_vision_ros.site.config import NodeEntry, Services, SiteConfig, load_site
from nano_vision_ros.site.graph import build_graph, derived_parameters

#: node kind -> the pydantic model its parameters are read into (``load_config(self, Model)``)
CONFIG_MODELS: dict[str, str] = {
    "camera": "nano_vision_ros.nodes.camera_node:CameraNodeConfig",
    "detector": "nano_vision_ros.nodes.detector_node:DetectorConfig",
    "events": "nano_vision_ros.nodes.events_node:EventsNodeConfig",
    "rtmp_streamer": "nano_vision_ros.nodes.rtmp_streamer_node:StreamerConfig",
    "recorder": "nano_vision_ros.nodes.recorder_node:RecorderConfig",
    "face": "nano_vision_ros.nodes.face_node:FaceNodeConfig",
    "plate": "nano_vision_ros.nodes.plate_node:PlateNodeConfig",
    "mqtt_bridge": "nano_vision_ros.nodes.mqtt_bridge_node:MqttBridgeConfig",
    "uploader": "nano_vision_ros.nodes.uploader_node:UploaderConfig",
    "webrtc": "nano_vision_ros.nodes.webrtc_node:WebRtcConfig",
    "metrics": "nano_vision_ros.nodes.metrics_node:MetricsConfig",
    "foxglove": "nano_vision_ros.nodes.foxglove_node:FoxgloveConfig",
}
#: node kinds that are servers themselves (`host` + `port` parameters): their ports are checked too
SERVER_KINDS = frozenset({"metrics", "webrtc", "foxglove"})

# parameter names by what they hold (checked when not empty)
_READ_FILES = ("password_file", "ca_file", "cert_file", "key_file", "tls_ca", "token_file", "gallery_db")
_WRITE_DIRS = ("output_dir", "snapshot_dir")
_WRITE_FILES = ("outbox_path", "queue_db")
_MODEL_SUFFIXES = (".onnx", ".engine", ".trt", ".dat", ".pdmodel", ".xml", ".caffemodel", ".prototxt")


def config_model(kind: str) -> type[BaseModel]:
    module, _, name = CONFIG_MODELS[kind].partition(":")
    return getattr(importlib.import_module(module), name)


@dataclass
class Param:
    value: Any
    where: str  # file:line it came from
    source: str = "params"  # params | site (the entry's params:) | derived (from services:)


@dataclass
class NodeView:
    """One node of the site with the parameters it will get and where each comes from."""

    entry: NodeEntry
    fqn: str
    camera: str
    loc: tuple[Any, ...] = ()  # the entry's place in the site file
    params: dict[str, Param] = field(default_factory=dict)
    config: BaseModel | None = None


def _for_node(node: NodeView, value: Any) -> Any:
    """A parameter value as the node sees it: a ``{camera}`` template expanded for its namespace."""
    return expand_camera(value, node.fqn.rpartition("/")[0] or "/") if isinstance(value, str) else value


def _same_for(node: NodeView, derived: Any, given: Any) -> bool:
    """Whether a params-file value is what the site derives for this node: a ``{camera}`` template
    (the streamer's url) is compared as the node expands it, so a literal url of its camera agrees."""
    return bool(_for_node(node, derived) == _for_node(node, given))


def _match(pattern: str, fqn: str) -> bool:
    """rcl's params-file node keys: exact `/ns/name`, `*` = one name part, `**` = any number."""
    pat = [p for p in ("/" + pattern.lstrip("/")).split("/") if p]
    parts = [p for p in fqn.split("/") if p]

    def m(i: int, j: int) -> bool:
        if i == len(pat):
            return j == len(parts)
        if pat[i] == "**":
            return any(m(i + 1, k) for k in range(j, len(parts) + 1))
        return j < len(parts) and pat[i] in ("*", parts[j]) and m(i + 1, j + 1)

    return m(0, 0)


def _by_file_and_line(found: list[str]) -> list[str]:
    """Problems grouped by file (in the order files first appear), by line inside each."""
    order: dict[str, int] = {}
    keyed = []
    for text in found:
        head = text.partition(": ")[0]
        file, _, line = head.rpartition(":")
        if not line.isdigit():
            file, line = head, "0"
        order.setdefault(file, len(order))
        keyed.append((order[file], int(line), text))
    return [t for *_, t in sorted(keyed, key=lambda k: (k[0], k[1]))]


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def _writable(path: Path) -> bool:
    """Whether `path` (a folder) exists writable or could be created (nearest existing parent writable)."""
    p = path
    while not p.exists():
        if p.parent == p:
            return False
        p = p.parent
    return p.is_dir() and os.access(p, os.W_OK | os.X_OK)


class SiteCheck:
    """Collects every problem of a site (``.problems``), never stopping at the first."""

    def __init__(
        self,
        site_path: str | Path,
        board: str | None = None,
        *,
        ports: bool = True,
        models: bool = True,
        services: bool = True,
    ) -> None:
        self.site_arg = str(site_path)
        self.board = board
        self.check_ports = ports
        self.check_services = services  # False: the site's servers are not started (their ports are not ours)
        self.check_models = models
        self.problems: list[str] = []
        self.notes: list[str] = []  # what could not be checked here (e.g. a TensorRT engine without TensorRT)
        self.nodes: list[NodeView] = []
        self.site: SiteConfig | None = None
        self.site_doc: YamlDoc | None = None

    # -- helpers ----------------------------------------------------------------------------
    def _add(self, where: str, text: str, hint: str = "") -> None:
        self.problems.append(f"{where}: {text}" + (f"; {hint}" if hint else ""))

    def _site_where(self, *loc: Any) -> str:
        assert self.site_doc is not None
        return self.site_doc.where(tuple(loc))

    # -- steps ------------------------------------------------------------------------------
    def run(self) -> list[str]:
        try:
            self.site, path = load_site(self.site_arg)
            self.site_doc = load_yaml(path)
        except ConfigProblems as err:
            self.problems += err.problems
            path = paths.resolve(self.site_arg)
            self.site = self._lenient_site(path)  # go on without the bad keys: every other problem too
            if self.site is None:
                return self.problems
        except ConfigError as err:
            self._add(self.site_arg, str(err), "give the site file's path (default config/site.yaml)")
            return self.problems
        self.site_path = path
        try:
            build_graph(self.site, path, self.board)
        except ConfigError as err:  # a file the site file names (params_file, Fast DDS profiles), a board
            key = err.parameter or ""
            top = self.site_doc.data if self.site_doc is not None and isinstance(self.site_doc.data, dict) else {}
            self._add(
                self._site_where(key) if key in top else str(path),
                str(err),
                "paths are relative to the site file, then the working folder, then the package",
            )
        self._collect_nodes()
        self._params_file()
        for node in self.nodes:
            self._validate(node)
        for node in self.nodes:
            if node.entry.kind == "events":
                self._rules(node)  # from the raw parameter: its problems even when other parameters fail
            if node.config is not None:
                self._files(node)
                if node.entry.kind == "detector" and self.check_models:
                    self._detector(node)
        self._services()
        self.problems = _by_file_and_line(self.problems)
        return self.problems

    def _lenient_site(self, path: Path) -> SiteConfig | None:
        """The site without the keys its problems point at (defaults in their place), if that validates."""
        try:
            doc = load_yaml(path)
        except ConfigProblems:
            return None
        self.site_doc = doc
        import copy

        data = copy.deepcopy(doc.data)
        for _ in range(10):
            if not isinstance(data, dict):
                return None
            try:
                return SiteConfig.model_validate(data)
            except ValidationError as err:
                dropped = False
                for e in err.errors():
                    where = doc.data_path(tuple(e.get("loc", ())))
                    if e.get("type") == "missing" or not where:
                        return None
                    parent = data
                    for part in where[:-1]:
                        parent = parent[part]
                    if isinstance(parent, dict) and where[-1] in parent:
                        del parent[where[-1]]
                        dropped = True
                    elif isinstance(parent, list) and isinstance(where[-1], int) and where[-1] < len(parent):
                        return None  # dropping an item would move the indices: lines would lie; stop here
                if not dropped:
                    return None
        return None

    def _here(self, *boards: str) -> bool:
        assert self.site is not None
        return self.board is None or self.site.board_of(*boards) == self.board

    def _collect_nodes(self) -> None:
        site = self.site
        assert site is not None
        for ci, cam in enumerate(site.cameras):
            for ni, e in enumerate(cam.nodes):
                if self._here(e.board, cam.board):
                    self._node(
                        e,
                        f"/{cam.name}/{e.node_name}",
                        cam.name,
                        ("cameras", ci, "nodes", ni),
                        site.board_of(e.board, cam.board),
                    )
        for si, e in enumerate(site.site_nodes):
            if self._here(e.board):
                self._node(e, f"/{e.node_name}", "", ("site_nodes", si), site.board_of(e.board))

    def _node(self, entry: NodeEntry, fqn: str, camera: str, loc: tuple[Any, ...], board: str) -> None:
        assert self.site is not None
        view = NodeView(entry, fqn, camera, loc)
        for name, value in derived_parameters(self.site, entry.kind, board).items():
            svc = {"mqtt_bridge": "mosquitto", "rtmp_streamer": "nginx_rtmp", "uploader": "clip_receiver"}.get(
                entry.kind
            )
            where = (
                self._site_where(name) if name in ("site_id", "device_id") else self._site_where("services", svc or "")
            )
            view.params[name] = Param(value, where, "derived")
        for name, value in flatten(entry.params).items():
            view.params[name] = Param(value, self._site_where(*loc, "params", *name.split(".")), "site")
        self.nodes.append(view)

    def _all_fqns(self) -> list[str]:
        """Every node of the site, on every board."""
        site = self.site
        assert site is not None
        return [f"/{c.name}/{e.node_name}" for c in site.cameras for e in c.nodes] + [
            f"/{e.node_name}" for e in site.site_nodes
        ]

    def _params_file(self) -> None:
        """Params file sections merged into each node (under what the site derives or sets itself)."""
        site = self.site
        if site is None or not site.params_file:
            return
        from nano_vision_ros.site.config import resolve_relative

        pf = resolve_relative(site.params_file, self.site_path)
        if not pf.is_file():
            return  # reported by build_graph
        try:
            doc = load_yaml(pf)
        except ConfigProblems as err:
            self.problems += err.problems
            return
        self.params_doc = doc
        data = doc.data or {}
        if not isinstance(data, dict):
            self._add(doc.where(), "a params file is a mapping of node names to `ros__parameters:`")
            return
        for key, section in data.items():
            if not isinstance(section, dict) or "ros__parameters" not in section:
                close = difflib.get_close_matches("ros__parameters", list(section) if isinstance(section, dict) else [])
                hint = (
                    f"did you mean 'ros__parameters' (not {close[0]!r})?"
                    if close
                    else "write `NODE: {ros__parameters: {…}}`"
                )
                self._add(doc.where((key,)), f"section '{key}' has no `ros__parameters:`", hint)
                continue
            for extra in (k for k in section if k != "ros__parameters"):
                self._add(doc.where((key, extra)), f"section '{key}': key '{extra}' unknown (only `ros__parameters:`)")
            values = section["ros__parameters"] or {}
            if not isinstance(values, dict):
                self._add(doc.where((key, "ros__parameters")), "ros__parameters must be a mapping of parameter names")
                continue
            matched = [n for n in self.nodes if _match(str(key), n.fqn)]
            every = self._all_fqns()  # a section may be for another board's nodes
            if not any(_match(str(key), f) for f in every) and str(key) not in ("/**", "**"):
                known = ", ".join(every)
                self._add(
                    doc.where((key,)),
                    f"section '{key}' matches no node of this site",
                    f"the site's nodes: {known} (wildcards: /**/NAME)",
                )
            for name, value in flatten(values).items():
                where = doc.where((key, "ros__parameters", *name.split(".")))
                for n in matched:
                    old = n.params.get(name)
                    if old is not None and old.source == "derived" and not _same_for(n, old.value, value):
                        given = _for_node(n, old.value)
                        shown = f"{old.value!r}" + (f" (= {given!r} for this node)" if given != old.value else "")
                        self._add(
                            where,
                            f"{n.fqn}: parameter '{name}' is {value!r} here but the site file's "
                            f"services give {shown} ({old.where})",
                            "set it in one place: remove it here, or set `enabled: false` on the service",
                        )
                    if old is None or old.source == "params":
                        n.params[name] = Param(value, where)

    def _validate(self, node: NodeView) -> None:
        from nano_vision_ros.ros.params import ROS_OWN, ROS_OWN_PREFIXES, SITE_WIDE, parameter_names

        try:
            model = config_model(node.entry.kind)
        except ImportError as err:
            self._add(self._site_where(*node.loc), f"{node.fqn}: node module cannot be imported: {err}")
            return
        known = set(parameter_names(model))
        values: dict[str, Any] = {}
        for name, p in node.params.items():
            if name in known:
                values[name] = p.value
            elif name not in SITE_WIDE and name not in ROS_OWN and not name.startswith(ROS_OWN_PREFIXES):
                close = difflib.get_close_matches(name, sorted(known), n=2, cutoff=0.6)
                hint = (
                    f"did you mean {' or '.join(repr(c) for c in close)}?" if close else "not a parameter of this node"
                )
                self._add(p.where, f"{node.fqn}: unknown parameter '{name}'", hint)
        try:
            node.config = model.model_validate(unflatten({k: v for k, v in values.items() if v is not None}))
        except ValidationError as err:
            for e in err.errors():
                name = ".".join(str(x) for x in e.get("loc", ()) if not isinstance(x, int))
                msg = str(e.get("msg", "invalid")).removeprefix("Value error, ")
                if name:
                    text = f"parameter '{name}': {msg} (got {e.get('input')!r})"
                else:  # a check across parameters; its message starts with the parameter when it is about one
                    name = msg.split(":", 1)[0] if msg.split(":", 1)[0] in node.params else ""
                    text = msg
                self._add(
                    self._where_of(node, name),
                    f"{node.fqn}: {text}"[:500],
                    f"see docs/nodes/{node.entry.executable}.md",
                )

    def _where_of(self, node: NodeView, name: str) -> str:
        """Where a parameter's value comes from (params file, site file); else the node's entry."""
        parts = name.split(".") if name else []
        for i in range(len(parts), 0, -1):
            p = node.params.get(".".join(parts[:i]))
            if p is not None:
                return p.where
        return self._site_where(*node.loc)

    # -- files and folders ------------------------------------------------------------------
    def _files(self, node: NodeView) -> None:
        assert self.site is not None and node.config is not None  # the caller checks both
        cfg = flatten(node.config.model_dump())
        receiver = self.site.services.clip_receiver
        for name, value in cfg.items():
            if not isinstance(value, str) or not value:
                continue
            leaf = name.rsplit(".", 1)[-1]
            where = self._where_of(node, name)
            if leaf in _READ_FILES:
                if leaf == "token_file" and receiver.enabled and value == receiver.token_file:
                    continue  # the site's clip receiver creates it at start
                p = paths.resolve(value)
                if not p.is_file() or not os.access(p, os.R_OK):
                    self._add(
                        where,
                        f"{node.fqn}: {name} {value!r}: {'not readable' if p.is_file() else 'file not found'}",
                        "give an existing file (relative paths: working folder, then the package)",
                    )
            elif leaf in _WRITE_DIRS or leaf in _WRITE_FILES:
                d = Path(value).expanduser()
                d = d if leaf in _WRITE_DIRS else d.parent
                if not _writable(d):
                    self._add(
                        where,
                        f"{node.fqn}: {name} {value!r}: folder {d} cannot be written or created",
                        "choose a folder this user can write",
                    )
            elif (
                "model" in leaf
                and value.lower().endswith(_MODEL_SUFFIXES)
                and node.entry.kind != "detector"
                and not paths.resolve(value).is_file()
            ):
                self._add(where, f"{node.fqn}: {name} {value!r}: model file not found")
        if node.entry.kind == "camera":
            url = str(cfg.get("camera_info_url", ""))
            if url and not paths.resolve(url).is_file():
                self._add(
                    self._where_of(node, "camera_info_url"), f"{node.fqn}: camera_info_url {url!r}: file not found"
                )

    # -- detector: task profile, model --------------------------------------------------------
    def _detector(self, node: NodeView) -> None:
        from nano_vision_ros.core.detection.profiles import build_detector, find_profile, load_profile

        cfg: Any = node.config
        try:
            profile_path = find_profile(cfg.task)
            profile = load_profile(cfg.task)
        except ConfigProblems as err:
            self.problems += err.problems
            return
        except ConfigError as err:
            self._add(self._where_of(node, "task"), f"{node.fqn}: {err}")
            return
        if profile.pipeline:
            return  # a pipeline class loads its own models at configure
        where = self._where_of(node, "model") if cfg.model else self._where_of(node, "task")
        try:
            det = build_detector(profile, **cfg.overrides().model_dump())
        except RuntimeMissingError as err:
            self.notes.append(f"{where}: {node.fqn}: model not loaded here ({err})")
            return
        except (ModelError, ConfigError) as err:
            self._add(where, f"{node.fqn}: {err}", f"the model must fit the task's decoder and labels ({profile_path})")
            return
        close = getattr(det, "close", None)
        if callable(close):
            close()

    # -- events: rules, zones and lines in the image ---------------------------------------
    def _rules(self, node: NodeView) -> None:
        from nano_vision_ros.core.events.config import rules_from_doc

        p = node.params.get("rules")
        text = str(p.value) if p is not None else ""
        if not text.strip():
            return
        where, offset, source = (p.where if p else ""), 0, ""
        if p is not None and p.source == "params" and ":" in p.where:
            source, _, line = p.where.rpartition(":")
            offset = int(line) if "\n" in text else int(line) - 1
        stripped = text.strip()
        if "\n" not in stripped and stripped.endswith((".yaml", ".yml")):
            path = paths.resolve(stripped)
            if not path.is_file():
                self._add(where, f"{node.fqn}: rules file not found: {stripped}")
                return
            doc = load_yaml(path)
        else:
            try:
                doc = load_yaml(text=text, source=source or where, line_offset=offset)
            except ConfigProblems as err:
                self.problems += err.problems
                return
        _, found = rules_from_doc(doc)  # a bare list of rules too
        for pr in found:
            where, _, text = pr.partition(": ")
            self._add(where, f"{node.fqn}: rules: {text}", "see docs/EVENTS.md")
        size = self._image_size(node.camera)
        if size is not None:
            self._shapes(node, doc, doc.data, (), size)

    def _shapes(self, node: NodeView, doc: YamlDoc, data: Any, loc: tuple[Any, ...], size: tuple[int, int]) -> None:
        """Every `polygon` / `line` / `points` list of [x, y] in the rules inside the image."""
        w, h = size
        if isinstance(data, dict):
            for k, v in data.items():
                if k in ("polygon", "line", "points") and isinstance(v, list):
                    for i, pt in enumerate(v):
                        if (
                            isinstance(pt, (list, tuple))
                            and len(pt) == 2
                            and all(isinstance(c, (int, float)) for c in pt)
                            and not (0 <= pt[0] <= w and 0 <= pt[1] <= h)
                        ):
                            self._add(
                                doc.where((*loc, k, i)),
                                f"{node.fqn}: rules: point {list(pt)} of "
                                f"'{'.'.join(str(x) for x in (*loc, k))}' is outside the camera's {w}x{h} image",
                                "zones and lines are in image pixels of the published frames",
                            )
                else:
                    self._shapes(node, doc, v, (*loc, k), size)
        elif isinstance(data, list):
            for i, v in enumerate(data):
                self._shapes(node, doc, v, (*loc, i), size)

    def _image_size(self, camera: str) -> tuple[int, int] | None:
        """The published frame size of the camera's camera node, when it can be known before start."""
        cam = next((n for n in self.nodes if n.camera == camera and n.entry.kind == "camera"), None)
        cfg: Any = cam.config if cam else None
        if cfg is None:
            return None
        w, h = int(cfg.width), int(cfg.height)
        if not (w and h):
            w = h = 0
            src = str(cfg.source)
            path = paths.resolve(src)
            if path.is_file():
                import cv2

                cap = cv2.VideoCapture(str(path))
                try:
                    w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
                finally:
                    cap.release()
        if not (w and h):
            return None
        rw, rh = int(cfg.resize_width), int(cfg.resize_height)
        if rw and rh:
            return rw, rh
        if rw:
            return rw, round(h * rw / w)
        if rh:
            return round(w * rh / h), rh
        return w, h

    # -- services: ports, folders ------------------------------------------------------------
    def _services(self) -> None:
        site = self.site
        assert site is not None
        used: dict[int, str] = {}
        for name in Services.model_fields:
            svc = getattr(site.services, name)
            if not svc.enabled or not self._here(svc.board) or not self.check_services:
                continue
            where = self._site_where("services", name, "port")
            if svc.port in used:
                self._add(
                    where, f"services.{name}: port {svc.port} is also {used[svc.port]}", "give each server its own port"
                )
            used[svc.port] = f"services.{name}"
            if self.check_ports and svc.port and not _port_free(svc.host, svc.port):
                self._add(
                    where,
                    f"services.{name}: port {svc.host}:{svc.port} is already in use",
                    "another server holds it: change its port under `services:` (its clients follow), or set "
                    "`enabled: false` to use the running server (then set its clients' parameters in the params file)",
                )
            extra = getattr(svc, "status_port", 0)  # the clip receiver's progress page
            if extra:
                where = self._site_where("services", name, "status_port")
                if extra in used:
                    self._add(
                        where,
                        f"services.{name}.status_port {extra} is also {used[extra]}",
                        "give each server its own port",
                    )
                used[extra] = f"services.{name}.status_port"
                if self.check_ports and not _port_free(svc.host, extra):
                    self._add(
                        where,
                        f"services.{name}: status port {svc.host}:{extra} is already in use",
                        "choose another `status_port` (0 = off)",
                    )
        for node in self.nodes:
            cfg: Any = node.config
            if node.entry.kind in SERVER_KINDS and cfg is not None:
                where = self._where_of(node, "port")
                if cfg.port and cfg.port in used:  # 0: any free port
                    self._add(
                        where, f"{node.fqn}: port {cfg.port} is also {used[cfg.port]}", "give each server its own port"
                    )
                if cfg.port:
                    used[cfg.port] = node.fqn
                if self.check_ports and cfg.port and not _port_free(cfg.host, cfg.port):
                    self._add(
                        where, f"{node.fqn}: port {cfg.host}:{cfg.port} is already in use", "choose another `port`"
                    )
        rx = site.services.clip_receiver
        if rx.enabled and self._here(rx.board):
            for key, folder in (("dir", Path(rx.dir)), ("token_file", Path(rx.token_file).parent)):
                if not _writable(folder.expanduser()):
                    self._add(
                        self._site_where("services", "clip_receiver", key),
                        f"services.clip_receiver.{key}: folder {folder} cannot be written or created",
                    )

    def summary(self) -> str:
        assert self.site is not None
        what = (
            ["parameters", "task profiles"] + (["models"] if self.check_models else []) + ["rules", "files", "folders"]
        )
        what += ["ports"] if self.check_ports else []
        board = f" board {self.board}" if self.board else ""
        return f"OK: site {self.site_arg}{board}: {len(self.nodes)} node(s); {', '.join(what)} checked"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", nargs="?", default="config/site.yaml", help="site file (default: config/site.yaml)")
    p.add_argument("--board", default=None, help="check only this board's part of a multi-board site")
    p.add_argument("--no-ports", action="store_true", help="do not check that the services' ports are free")
    p.add_argument("--no-models", action="store_true", help="do not load the detectors' models")
    p.add_argument(
        "--no-services",
        action="store_true",
        help="the site's local servers will not be started: do not check their ports",
    )


def run(args: argparse.Namespace) -> int:
    check = SiteCheck(
        args.config, args.board, ports=not args.no_ports, models=not args.no_models, services=not args.no_services
    )
    found = check.run()
    for note in check.notes:
        print(f"note: {note}", file=sys.stderr)
    if found:
        for line in found:
            print(line, file=sys.stderr)
        print(f"nano-vision check: {len(found)} problem(s) in site {args.config}", file=sys.stderr)
        return 1
    print(check.summary())
    return 0


def check_in_child(
    site: str | Path, board: str | None = None, *, ports: bool = True, services: bool = True
) -> tuple[int, str]:
    """Run the check in a child interpreter (models and node modules do not stay in this process);
    returns its exit code and its report (the problems, or the OK line)."""
    cmd = [sys.executable, "-m", "nano_vision_ros.site.check", str(site)]
    if board:
        cmd += ["--board", board]
    if not ports:
        cmd.append("--no-ports")
    if not services:
        cmd.append("--no-services")
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    return out.returncode, (out.stderr if out.returncode else out.stdout).strip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="nano-vision check", description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
