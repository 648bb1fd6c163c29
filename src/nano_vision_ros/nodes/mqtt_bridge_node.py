"""mqtt_bridge_node: events to the backend over MQTT with store-and-forward; remote commands in.

Every event received on the ``events_topics`` (nano_vision_msgs/Event; its MQTT JSON is made from the
event model by ros/events.py) is written to a SQLite outbox first and deleted only
on the broker's PUBACK (see core/mqtt/outbox.py for the bound policy). Topics under
``<topic_prefix>/<site_id>/<device_id>/``: ``events``, ``status`` (retained online, LWT offline),
``stats`` (periodic health), ``snapshot/<camera>`` (JPEG on request), ``cmd/<name>`` ->
``cmd/<name>/reply``; Home Assistant discovery under ``<ha_prefix>/``. See docs/nodes/mqtt_bridge_node.md.

Commands: the MQTT thread only queues the raw message (bounded); one thread validates; a valid
request goes to the lane of its (target, command), each lane a bounded queue served by its own
thread (started on demand, gone when the lane is empty). A lane calls the nodes' services
(ros.services.ServiceCommands: ``/cam0/face_node/enroll_face`` …, found in the ROS graph by
target) asynchronously with ``command_timeout``. A target that never answers fills only its own
lane (``busy`` for it alone); every other target is still served.
"""

from __future__ import annotations

import collections
import json
import os
import queue
import threading
import time
from typing import Any, Literal

from diagnostic_msgs.msg import DiagnosticArray
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from nano_vision_msgs.msg import Event as EventMsg
from nano_vision_ros.core.errors import ConfigError
from nano_vision_ros.core.mqtt import homeassistant as ha
from nano_vision_ros.core.mqtt.client import LinkSettings, MqttLink, read_secret
from nano_vision_ros.core.mqtt.commands import (
    KNOWN_COMMANDS,
    CommandRejected,
    CommandValidator,
    aggregate_reply,
    error_reply,
)
from nano_vision_ros.core.mqtt.health import HealthStats
from nano_vision_ros.core.mqtt.outbox import Outbox, OutboxError
from nano_vision_ros.core.options import options_from
from nano_vision_ros.ros import diagnostics
from nano_vision_ros.ros.events import event_from_msg
from nano_vision_ros.ros.params import load_config
from nano_vision_ros.ros.runtime import run_node
from nano_vision_ros.ros.services import ServiceCommands, UnknownTarget

_HELD_MAX = 10_000  # events held in memory while the outbox refuses writes (disk full)


def _default_outbox() -> str:
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(base, "nano_vision", "mqtt_outbox.sqlite")


class MqttBridgeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    site_id: str = Field("site", description="site id (topic level)")
    device_id: str = Field("device", description="device id (topic level)")
    host: str = Field("127.0.0.1", min_length=1, description="broker host")
    port: int = Field(1883, ge=1, le=65535, description="broker port")
    client_id: str = Field("", description="MQTT client id; default nano-vision-<site>-<device>")
    keepalive: int = Field(30, ge=5, le=3600, description="MQTT keepalive (s)")
    username: str = Field("", description="user name ('' = anonymous)")
    password_file: str = Field("", description="file whose first line is the password (never logged)")
    password_env: str = Field("", description="environment variable holding the password (if no file)")
    tls: bool = Field(False, description="connect with TLS")
    ca_file: str = Field("", description="CA certificate(s) that sign the broker's certificate ('' = system CAs)")
    cert_file: str = Field("", description="client certificate for mutual TLS")
    key_file: str = Field("", description="client key for mutual TLS")
    tls_insecure: bool = Field(False, description="skip the broker host name check (testing only)")
    topic_prefix: str = Field("nano_vision", description="first topic level(s)")
    events_topics: list[str] = Field(
        default_factory=lambda: ["events"],
        min_length=1,
        description="ROS event topics to forward, e.g. [/cam0/events, /cam1/events]",
    )
    history_depth: int = Field(
        500, ge=1, le=100000, description="events received from publishers' history on (re)start"
    )
    outbox_path: str = Field(
        "", description="SQLite outbox file; default $XDG_STATE_HOME/nano_vision/mqtt_outbox.sqlite"
    )
    outbox_max_messages: int = Field(100_000, ge=10, description="bound of the outbox (oldest updates dropped first)")
    outbox_synchronous: Literal["NORMAL", "FULL", "EXTRA"] = Field(
        "FULL", description="SQLite synchronous mode: FULL (power-loss safe) or NORMAL"
    )
    window: int = Field(100, ge=1, le=1000, description="outbox messages in flight (published, not yet acknowledged)")
    reconnect_min: float = Field(0.5, gt=0, description="first reconnect delay (s), doubled up to reconnect_max")
    reconnect_max: float = Field(30.0, gt=0, description="largest reconnect delay (s)")
    stats_period: float = Field(10.0, ge=0, description="period of …/stats (s); 0 = off")
    disk_paths: list[str] = Field(default_factory=lambda: ["/"], description="file systems reported in stats")
    commands: bool = Field(True, description="accept commands on …/cmd/<name>")
    allowed_commands: list[str] = Field(default_factory=lambda: list(KNOWN_COMMANDS), description="allow-list")
    command_max_bytes: int = Field(1_000_000, ge=64, description="largest command payload accepted")
    command_timeout: float = Field(5.0, gt=0, description="longest wait for the nodes' service responses (s)")
    command_queue_size: int = Field(
        8, ge=1, le=1000, description="commands waiting per (target, command) lane; beyond: busy"
    )
    command_max_lanes: int = Field(
        16, ge=1, le=256, description="(target, command) lanes with work at once; beyond: busy"
    )
    snapshot_max_bytes: int = Field(
        2_000_000, ge=1000, description="largest snapshot JPEG published on …/snapshot/<camera>"
    )
    ha_discovery: bool = Field(True, description="publish Home Assistant MQTT discovery configs")
    ha_prefix: str = Field("homeassistant", description="Home Assistant discovery prefix")
    ha_event_types: list[str] = Field(
        default_factory=lambda: list(ha.DEFAULT_TYPES), description="binary sensors per camera"
    )
    diagnostics_period: float = Field(1.0, gt=0)

    @field_validator("site_id", "device_id")
    @classmethod
    def _level(cls, v: str) -> str:
        if not ha.TOPIC_PART.match(v):
            raise ValueError("must be letters, digits, '_', '-' or '.' (it is an MQTT topic level)")
        return v

    @field_validator("topic_prefix", "ha_prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        if not v or any(c in v for c in "+#\0") or v.startswith("/") or v.endswith("/"):
            raise ValueError("must be a topic without wildcards and without leading/trailing '/'")
        return v

    @field_validator("outbox_synchronous", mode="before")
    @classmethod
    def _sync(cls, v: Any) -> Any:
        """SQLite's names are case-free: `full` is FULL."""
        return v.upper() if isinstance(v, str) else v

    @model_validator(mode="after")
    def _check(self) -> MqttBridgeConfig:
        unknown = [c for c in self.allowed_commands if c not in KNOWN_COMMANDS]
        if unknown:
            raise ValueError(f"allowed_commands: unknown {unknown}; known: {list(KNOWN_COMMANDS)}")
        if bool(self.cert_file) != bool(self.key_file):
            raise ValueError("cert_file and key_file go together (mutual TLS)")
        for name in ("ca_file", "cert_file", "key_file", "password_file"):
            path = getattr(self, name)
            if path and not os.path.isfile(path):
                raise ValueError(f"{name}: file not found: {path}")
        if self.reconnect_max < self.reconnect_min:
            raise ValueError("reconnect_max must be >= reconnect_min")
        return self


def _camera_of(topic: str) -> str:
    parts = [p for p in topic.split("/") if p]
    return parts[-2] if len(parts) >= 2 else "camera"


class MqttBridgeNode(Node):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__("mqtt_bridge_node", **kwargs)
        self.cfg = c = load_config(self, MqttBridgeConfig)
        try:
            password = read_secret(c.password_file, c.password_env)
        except ValueError as err:
            raise ConfigError(f"parameter 'password_file'/'password_env': {err}", "password_file") from None
        self.base = f"{c.topic_prefix}/{c.site_id}/{c.device_id}"
        self.t_events = f"{self.base}/events"
        self.t_status = f"{self.base}/status"
        self.t_stats = f"{self.base}/stats"
        self.cameras = sorted({_camera_of(self.resolve_topic_name(t)) for t in c.events_topics})
        try:
            self.outbox = Outbox(
                c.outbox_path or _default_outbox(), c.outbox_max_messages, synchronous=c.outbox_synchronous
            )
        except (OutboxError, ValueError) as err:
            raise ConfigError(f"parameter 'outbox_path': {err}", "outbox_path") from None
        self.validator = CommandValidator(c.allowed_commands, c.command_max_bytes)
        settings = options_from(  # the link's fields by name (test_options: they cannot drift)
            LinkSettings,
            c,
            client_id=c.client_id or f"nano-vision-{c.site_id}-{c.device_id}",
            password=password,
            will_topic=self.t_status,
        )
        self.received = 0
        self.duplicates = 0
        self.events_lost = 0  # only beyond _HELD_MAX held events, or held at stop
        self.store_error = ""
        self.bad_events = 0
        self.commands_ok = 0
        self.commands_rejected = 0
        self._active = ha.ActiveEvents()
        self._nodes: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self.health = HealthStats(c.disk_paths)
        self.cmd_services = ServiceCommands(self)
        self._cmd_q: queue.Queue[tuple[str, bytes] | None] = queue.Queue(maxsize=64)
        self._lanes: dict[tuple[str, str], collections.deque[dict[str, Any]]] = {}
        self._lanes_lock = threading.Lock()
        self._cmd_thread = threading.Thread(target=self._command_loop, name="mqtt-commands", daemon=True)
        self._cmd_thread.start()
        self.link = MqttLink(settings, self.outbox, on_connected=self._on_connected, on_message=self._on_mqtt_message)
        self._ingest: queue.Queue[tuple[str, str, str, dict] | None] = queue.Queue()
        self._ingest_thread = threading.Thread(target=self._ingest_loop, name="mqtt-ingest", daemon=True)
        self._ingest_thread.start()
        ev_qos = QoSProfile(
            depth=c.history_depth,
            history=HistoryPolicy.KEEP_LAST,
            reliability=ReliabilityPolicy.RELIABLE,
            durability=DurabilityPolicy.TRANSIENT_LOCAL,
        )
        self.subs = [self.create_subscription(EventMsg, t, self._on_event, ev_qos) for t in c.events_topics]
        self.diag_sub = self.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 50)
        self.stats_timer = self.create_timer(c.stats_period, self._publish_stats) if c.stats_period > 0 else None
        self.diag = diagnostics.Diagnostics(self, self._collect, c.diagnostics_period)
        self.link.start()
        self.get_logger().info(
            f"forwarding {', '.join(self.resolve_topic_name(t) for t in c.events_topics)} to "
            f"{self.link.url} {self.t_events} (outbox {self.outbox.path}, {len(self.outbox)} pending)"
        )

    # -- events -----------------------------------------------------------------------------------
    def _on_event(self, msg: EventMsg) -> None:
        """A typed event -> its MQTT JSON (made from the event model: the backend's contract)."""
        try:
            model = event_from_msg(msg)
        except ValueError as err:
            self.bad_events += 1
            self.get_logger().error(
                f"not a valid event, not forwarded: {msg.event_id[:64]!r}: {err}", throttle_duration_sec=5.0
            )
            return
        ev = model.to_json()
        self._ingest.put((json.dumps(ev, separators=(",", ":")), model.state, f"{model.event_id}:{model.sequence}", ev))

    def _ingest_loop(self) -> None:
        """Store events in batches: one transaction (one fsync) for all that arrived meanwhile.

        An event still in this queue when the process dies is not lost: the events node's topic
        history delivers it again to the restarted bridge. When the outbox refuses a batch (disk
        full, database locked), the batch is held in memory (at most `_HELD_MAX` events, oldest
        dropped and counted in `events_lost` beyond that) and retried every second until it is
        stored: an event received while the disk is full still reaches the backend."""
        held: list[tuple[str, str, str, dict]] = []
        stopping = False
        while not stopping:
            batch = list(held)
            try:
                item = self._ingest.get(timeout=1.0) if held else self._ingest.get()
            except queue.Empty:
                pass  # retry the held batch
            else:
                if item is None:
                    stopping = True
                else:
                    batch.append(item)
            while not stopping and len(batch) < 500 + len(held):
                try:
                    nxt = self._ingest.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stopping = True
                    break
                batch.append(nxt)
            if not batch:
                continue
            try:
                ids = self.outbox.put_many([(self.t_events, data, state, key) for data, state, key, _ in batch])
            except OutboxError as err:
                over = len(batch) - _HELD_MAX
                if over > 0:
                    self.events_lost += over
                    batch = batch[over:]
                held = batch
                self.store_error = str(err)
                self.get_logger().error(
                    f"{len(held)} events held in memory, not stored yet: {err}", throttle_duration_sec=5.0
                )
                if stopping:
                    self.events_lost += len(held)
                    self.get_logger().error(f"stopping with {len(held)} events the outbox never accepted: {err}")
                continue
            if held:
                self.get_logger().info(f"outbox accepts events again; {len(held)} held events stored")
            held = []
            self.store_error = ""
            self.link.notify()
            for row, (_, _, _, ev) in zip(ids, batch):
                if row is None:
                    self.duplicates += 1
                    continue
                self.received += 1
                self._ha_state(ev)

    # -- Home Assistant (core.mqtt.homeassistant) -------------------------------------------------
    def _ha_state(self, ev: dict[str, Any]) -> None:
        if not self.cfg.ha_discovery:
            return
        with self._lock:
            state = self._active.update(ev)
        if state is None:
            return
        cam, typ, on = state
        self.link.publish_now(ha.state_topic(self.base, cam, typ), "ON" if on else "OFF", qos=1, retain=True)
        self.link.publish_now(ha.last_event_topic(self.base, cam), json.dumps(ev), qos=0, retain=True)

    def _on_connected(self, link: MqttLink) -> None:
        if self.cfg.commands:
            link.subscribe(f"{self.base}/cmd/+", qos=1)
        if not self.cfg.ha_discovery:
            return
        for topic, payload in ha.discovery_configs(
            base=self.base,
            prefix=self.cfg.ha_prefix,
            site_id=self.cfg.site_id,
            device_id=self.cfg.device_id,
            status_topic=self.t_status,
            cameras=self.cameras,
            types=self.cfg.ha_event_types,
        ):
            link.publish_now(topic, payload, qos=1, retain=True)

    # -- commands ---------------------------------------------------------------------------------
    def _on_mqtt_message(self, topic: str, payload: bytes) -> None:
        prefix = f"{self.base}/cmd/"
        if not topic.startswith(prefix):
            return
        try:
            self._cmd_q.put_nowait((topic[len(prefix) :], payload))
        except queue.Full:
            self._reject(topic[len(prefix) :], CommandRejected("busy", "too many commands queued; retry later"))

    def _reply_topic(self, name: str) -> str:
        """``cmd/<name>/reply``; for a name that cannot be a topic level there, ``cmd/_invalid/reply``."""
        if 0 < len(name.encode("utf-8", "replace")) <= 256 and not any(c in name for c in "/+#\0"):
            return f"{self.base}/cmd/{name}/reply"
        return f"{self.base}/cmd/_invalid/reply"

    def _reject(self, name: str, err: CommandRejected) -> None:
        with self._lock:
            self.commands_rejected += 1
        self.get_logger().warning(
            f"command {name[:64]!r} rejected: {err.code}: {str(err)[:200]}", throttle_duration_sec=1.0
        )
        self.link.publish_now(self._reply_topic(name), json.dumps(error_reply(name, err)), qos=1)

    def _command_loop(self) -> None:
        """Validate and hand each request to its lane; never waits for a node."""
        while True:
            item = self._cmd_q.get()
            if item is None:
                return
            name, payload = item
            try:
                self._dispatch(name, payload)
            except Exception as err:  # noqa: BLE001 - never let a command stop the thread
                self._reject(name, CommandRejected("internal", f"{type(err).__name__}: {err}"[:300]))

    def _dispatch(self, name: str, payload: bytes) -> None:
        try:
            req = self.validator.parse(name, payload)
        except CommandRejected as err:
            self._reject(name, err)
            return
        if name == "snapshot" and req["target"] == "*" and req["args"].get("camera"):
            req["target"] = req["args"]["camera"]
        key = (str(req["target"]), name)
        busy, start = "", False
        with self._lanes_lock:
            lane = self._lanes.get(key)
            if lane is None and len(self._lanes) >= self.cfg.command_max_lanes:
                busy = f"{len(self._lanes)} targets have commands in progress (limit {self.cfg.command_max_lanes}); retry later"
            elif lane is not None and len(lane) >= self.cfg.command_queue_size:
                busy = (
                    f"{len(lane)} {name} commands for target {key[0]!r} are waiting (limit {self.cfg.command_queue_size}); "
                    "that target is slow or not answering, retry later"
                )
            else:
                if lane is None:
                    lane = self._lanes[key] = collections.deque()
                    start = True
                lane.append(req)
        if busy:
            self._reject(name, CommandRejected("busy", busy, req["request_id"]))
        elif start:
            threading.Thread(target=self._lane_loop, args=(key,), name=f"mqtt-cmd-{name}", daemon=True).start()

    def _lane_loop(self, key: tuple[str, str]) -> None:
        """Serve one (target, command) lane in order; the thread ends when the lane is empty."""
        while True:
            with self._lanes_lock:
                lane = self._lanes[key]
                if not lane:
                    del self._lanes[key]
                    return
                req = lane.popleft()
            try:
                self._handle_command(req)
            except Exception as err:  # noqa: BLE001 - never let a command stop the lane
                self._reject(
                    req["command"], CommandRejected("internal", f"{type(err).__name__}: {err}"[:300], req["request_id"])
                )

    def _handle_command(self, req: dict[str, Any]) -> None:
        name = req["command"]
        try:
            replies = self.cmd_services.call(req, self.cfg.command_timeout)
        except UnknownTarget as err:
            self._reject(name, CommandRejected("unknown_target", str(err), req["request_id"]))
            return
        except ValueError as err:  # args the request cannot be built from
            self._reject(name, CommandRejected("invalid", str(err)[:300], req["request_id"]))
            return
        reply = aggregate_reply(req, replies, self.cfg.command_timeout)
        with self._lock:
            if reply["ok"]:
                self.commands_ok += 1
            else:
                self.commands_rejected += 1
        self.get_logger().info(
            f"command {name} ({req['request_id']}): {'ok' if reply['ok'] else reply['error']['message']}"
        )
        self.link.publish_now(f"{self.base}/cmd/{name}/reply", json.dumps(reply, default=str), qos=1)
        if name == "snapshot" and reply["ok"]:
            for r in replies:
                self._publish_snapshot(r.get("result"))

    def _publish_snapshot(self, result: Any) -> None:
        try:
            snap = ha.snapshot_to_publish(result, self.cfg.snapshot_max_bytes)  # the file policy
        except OSError as err:
            self.get_logger().warning(f"snapshot {result.get('path')} not published: {err}")
            return
        if snap is not None:
            self.link.publish_now(f"{self.base}/snapshot/{snap[0]}", snap[1], qos=1)

    # -- stats ------------------------------------------------------------------------------------
    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        for st in msg.status:
            values = {kv.key: kv.value for kv in st.values[:40]}
            with self._lock:
                self._nodes[st.name] = {
                    "level": int.from_bytes(st.level, "little") if isinstance(st.level, bytes) else int(st.level),
                    "message": st.message[:200],
                    "values": values,
                    "time": time.time(),
                }

    def _publish_stats(self) -> None:
        now = time.time()
        with self._lock:
            nodes = {k: v for k, v in self._nodes.items() if now - v["time"] < max(30.0, 3 * self.cfg.stats_period)}
        body = {
            "time": now,
            "site_id": self.cfg.site_id,
            "device_id": self.cfg.device_id,
            "host": self.health.collect(),
            "nodes": nodes,
            "bridge": self._bridge_stats(),
        }
        self.link.publish_now(self.t_stats, json.dumps(body, default=str), qos=0)

    def _bridge_stats(self) -> dict[str, Any]:
        s: dict[str, Any] = {
            "events_received": self.received,
            "duplicates": self.duplicates,
            "bad_events": self.bad_events,
            "events_lost": self.events_lost,
            "store_error": self.store_error,
            "commands_ok": self.commands_ok,
            "commands_rejected": self.commands_rejected,
        }
        s.update(self.outbox.stats())
        s.update(self.link.stats())
        return s

    def _collect(self) -> tuple[int, str, dict[str, object]]:
        s = self._bridge_stats()
        if s["store_error"]:
            return diagnostics.ERROR, f"outbox refuses events (held in memory, retried): {s['store_error']}"[:200], s
        if not s["connected"]:
            return diagnostics.WARN, f"not connected to {self.link.url}: {s['last_error'] or 'connecting'}", s
        return diagnostics.OK, f"connected, {s['outbox_pending']} pending", s

    def destroy_node(self) -> None:
        # also called by rclpy's context cleanup on a node whose __init__ failed half-way
        if getattr(self, "_ingest", None) is not None:
            self._ingest.put(None)  # store what arrived, then stop
            self._ingest_thread.join(5.0)
        if getattr(self, "link", None) is not None:
            self.link.stop()
        if getattr(self, "_cmd_q", None) is not None:
            try:
                self._cmd_q.put_nowait(None)
            except queue.Full:
                pass
        if getattr(self, "health", None) is not None:
            self.health.close()
        if getattr(self, "outbox", None) is not None:
            self.outbox.close()
        return super().destroy_node()


def main(args: list[str] | None = None) -> int:
    return run_node(MqttBridgeNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
