"""Prometheus metrics from the nodes' diagnostics (ROS-free; the metrics node only feeds it).

Every node already reports what an operator needs (fps, stage latencies, drops, errors, camera
state, outbox, upload queue) as one diagnostics status a second. Rather than a second reporting
path in every node, ``MetricsStore`` keeps the latest status per node and ``MetricsCollector``
turns it, at scrape time, into metrics with standard names and labels (docs/METRICS.md).

- Labels: ``node`` (fully qualified name), ``camera`` (the ``camera`` value, else the first
  namespace part, "" for site-wide nodes).
- A node silent for more than ``stale_after`` s is ``nano_vision_node_up 0`` and its other series
  are withdrawn (a frozen fps would lie); after ``forget_after`` s it is dropped altogether.
- Only known keys become series, at most ``MAX_NODES`` nodes and ``MAX_SERIES_PER_KEYSET`` stages
  or kinds per node: a hostile or buggy publisher on /diagnostics cannot blow up cardinality.
- CPU and memory per node process come from /proc/<pid> (the ``pid`` value the diagnostics carry)
  when the status comes from this host.
"""

from __future__ import annotations

import logging
import math
import os
import re
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

MAX_NODES = 500
MAX_SERIES_PER_KEYSET = 32
#: diagnostic levels (diagnostic_msgs/DiagnosticStatus)
OK, WARN, ERROR, STALE = 0, 1, 2, 3
#: camera states of core.capture.loop, exported as one 0/1 series each
CAMERA_STATES = ("connecting", "streaming", "reconnecting", "finished", "stopped")
#: first key present is the node's drop count / error count (cumulative since the node started)
DROP_KEYS = ("dropped_total", "dropped", "frames_dropped", "inputs_dropped", "drops")
ERROR_KEYS = ("errors", "frame_errors", "convert_errors", "failures")
UPLOAD_STATES = ("queued", "uploading", "done", "failed")
_STAGE = re.compile(r"^([a-z][a-z0-9_]{0,40})_ms$")
_KIND = re.compile(r"^bad_frames_([A-Za-z0-9_]{1,40})$")
try:
    _TICKS = float(os.sysconf("SC_CLK_TCK"))
    _PAGE = float(os.sysconf("SC_PAGE_SIZE"))
except (ValueError, OSError, AttributeError):  # not Linux: no per-pid figures
    _TICKS, _PAGE = 100.0, 4096.0


@dataclass
class Status:
    """One diagnostics status, as plain Python (from diagnostic_msgs/DiagnosticStatus)."""

    name: str
    level: int
    message: str = ""
    hardware_id: str = ""
    values: dict[str, str] = field(default_factory=dict)


def camera_of(name: str, values: Mapping[str, str]) -> str:
    """The camera a node serves: its ``camera`` value, else its namespace ("/cam0/x" -> "cam0")."""
    cam = str(values.get("camera", "") or "")
    if cam:
        return cam[:64]
    parts = [p for p in name.split("/") if p]
    return parts[0] if len(parts) > 1 else ""


def _num(v: object) -> float | None:
    if isinstance(v, bool):
        return float(v)
    try:
        f = float(str(v).strip())
    except (TypeError, ValueError):
        s = str(v).strip().lower()
        return 1.0 if s == "true" else 0.0 if s == "false" else None
    return None if math.isnan(f) else f  # NaN carries nothing


def proc_usage(pid: int) -> tuple[float, float] | None:
    """(CPU seconds user+system, resident bytes) of a process from /proc; None when gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode(errors="replace")
        with open(f"/proc/{pid}/statm", "rb") as f:
            statm = f.read().split()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2 :].split()  # the command name may hold spaces and ')'
    try:
        cpu = (int(fields[11]) + int(fields[12])) / _TICKS
        rss = int(statm[1]) * _PAGE
    except (IndexError, ValueError):
        return None
    return cpu, rss


class MetricsStore:
    """Latest status per node, with the monotonic time it arrived. Thread-safe."""

    def __init__(
        self, stale_after: float = 5.0, forget_after: float = 3600.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.stale_after = stale_after
        self.forget_after = forget_after
        self._clock = clock
        self._lock = threading.Lock()
        self._latest: dict[str, tuple[float, Status]] = {}
        self.refused = 0  # statuses not kept (too many nodes)

    def update(self, status: Status) -> None:
        now = self._clock()
        with self._lock:
            if status.name not in self._latest and len(self._latest) >= MAX_NODES:
                self._forget_locked(now)
                if len(self._latest) >= MAX_NODES:
                    self.refused += 1
                    return
            self._latest[status.name] = (now, status)

    def snapshot(self) -> list[tuple[float, Status]]:
        """(age in s, status) of every node still remembered."""
        now = self._clock()
        with self._lock:
            self._forget_locked(now)
            return [(now - t, s) for t, s in self._latest.values()]

    def _forget_locked(self, now: float) -> None:
        for name in [n for n, (t, _) in self._latest.items() if now - t > self.forget_after]:
            del self._latest[name]

    def __len__(self) -> int:
        with self._lock:
            return len(self._latest)


class MetricsCollector(Collector):
    """prometheus_client collector over a MetricsStore (builds the families at each scrape)."""

    def __init__(
        self, store: MetricsStore, hostname: str | None = None, self_node: tuple[str, int] | None = None
    ) -> None:
        self.store = store
        self.hostname = hostname or socket.gethostname()
        self.self_node = self_node  # (name, pid) of the process serving /metrics

    def collect(self) -> Iterable[Metric]:
        return list(self._families(self.store.snapshot()))

    def _families(self, snap: list[tuple[float, Status]]) -> Iterator[Metric]:
        L = ["node", "camera"]
        up = GaugeMetricFamily(
            "nano_vision_node_up",
            "1 while the node reports diagnostics, 0 once silent for longer than the staleness period",
            labels=L,
        )
        level = GaugeMetricFamily(
            "nano_vision_node_level", "diagnostic level: 0 OK, 1 WARN, 2 ERROR, 3 STALE (silent)", labels=L
        )
        age = GaugeMetricFamily(
            "nano_vision_node_report_age_seconds", "seconds since the node's last diagnostics", labels=L
        )
        fps = GaugeMetricFamily(
            "nano_vision_node_fps", "frames per second the node handles (measured by the node)", labels=L
        )
        lat = GaugeMetricFamily(
            "nano_vision_node_latency_seconds",
            "latency of a processing stage (smoothed by the node)",
            labels=[*L, "stage"],
        )
        frames = CounterMetricFamily("nano_vision_node_frames", "frames handled since the node started", labels=L)
        dropped = CounterMetricFamily(
            "nano_vision_node_dropped", "inputs dropped (queue full, too slow) since the node started", labels=L
        )
        errors = CounterMetricFamily("nano_vision_node_errors", "processing errors since the node started", labels=L)
        bad = CounterMetricFamily(
            "nano_vision_node_bad_frames", "bad input frames by cause since the node started", labels=[*L, "kind"]
        )
        cam_state = GaugeMetricFamily(
            "nano_vision_camera_state",
            "1 for the camera's current capture state, 0 for the others",
            labels=[*L, "state"],
        )
        reconnects = CounterMetricFamily(
            "nano_vision_camera_reconnects", "reconnects of the camera source since the node started", labels=L
        )
        outbox = GaugeMetricFamily(
            "nano_vision_outbox_depth", "MQTT outbox messages not yet acknowledged by the broker", labels=L
        )
        outbox_age = GaugeMetricFamily(
            "nano_vision_outbox_oldest_age_seconds",
            "age of the oldest message in the MQTT outbox (0 when empty)",
            labels=L,
        )
        outbox_drop = CounterMetricFamily(
            "nano_vision_outbox_dropped", "outbox messages dropped at the bound (updates first)", labels=[*L, "reason"]
        )
        mqtt_up = GaugeMetricFamily(
            "nano_vision_mqtt_connected", "1 while the bridge is connected to the broker", labels=L
        )
        upq = GaugeMetricFamily("nano_vision_upload_queue_depth", "clips waiting or being uploaded", labels=L)
        upitems = GaugeMetricFamily(
            "nano_vision_upload_queue_items", "clips in the upload queue by state", labels=[*L, "state"]
        )
        upbytes = CounterMetricFamily(
            "nano_vision_upload_sent_bytes", "clip bytes sent by the uploader since it started", labels=L
        )
        cpu = CounterMetricFamily(
            "process_cpu_seconds_total", "user and system CPU time of the node's process", labels=[*L, "pid"]
        )
        rss = GaugeMetricFamily(
            "process_resident_memory_bytes", "resident memory of the node's process", labels=[*L, "pid"]
        )
        seen_pids: set[tuple[str, int]] = set()

        for a, st in sorted(snap, key=lambda x: x[1].name):
            v = st.values
            lv = [st.name, camera_of(st.name, v)]
            stale = a > self.store.stale_after
            up.add_metric(lv, 0.0 if stale else 1.0)
            level.add_metric(lv, float(STALE if stale else min(max(int(st.level), 0), STALE)))
            age.add_metric(lv, round(a, 3))
            if stale:
                continue
            self._add(fps, lv, v.get("fps"))
            self._add(frames, lv, v.get("frames"))
            self._add(dropped, lv, next((v[k] for k in DROP_KEYS if k in v), None))
            self._add(errors, lv, next((v[k] for k in ERROR_KEYS if k in v), None))
            stages = [(m.group(1), val) for k, val in v.items() if (m := _STAGE.match(k))][:MAX_SERIES_PER_KEYSET]
            for stage, val in stages:
                n = _num(val)
                if n is not None:
                    lat.add_metric([*lv, "total" if stage == "latency" else stage], n / 1000.0)
            for k, val in v.items():
                if (m := _KIND.match(k)) is not None:
                    self._add(bad, [*lv, m.group(1)], val)
            if "source" in v and "reconnects" in v:  # a camera node (core.capture.loop stats)
                state = str(v.get("state", ""))
                for s in CAMERA_STATES:
                    cam_state.add_metric([*lv, s], 1.0 if s == state else 0.0)
                if state and state not in CAMERA_STATES:
                    cam_state.add_metric([*lv, state[:32]], 1.0)
                self._add(reconnects, lv, v.get("reconnects"))
            if "outbox_pending" in v:
                self._add(outbox, lv, v.get("outbox_pending"))
                self._add(outbox_age, lv, v.get("outbox_oldest_s"))
                self._add(outbox_drop, [*lv, "updates"], v.get("outbox_dropped_updates"))
                self._add(outbox_drop, [*lv, "other"], v.get("outbox_dropped_other"))
                self._add(mqtt_up, lv, v.get("connected"))
            if "queue_queued" in v:
                depth = sum(_num(v.get(f"queue_{s}")) or 0.0 for s in ("queued", "uploading"))
                upq.add_metric(lv, depth)
                for s in UPLOAD_STATES:
                    self._add(upitems, [*lv, s], v.get(f"queue_{s}"))
                self._add(upbytes, lv, v.get("bytes_sent"))
            pid = _num(v.get("pid"))
            if pid is not None and pid > 0 and (not st.hardware_id or st.hardware_id == self.hostname):
                self._add_proc(cpu, rss, lv, int(pid))
                seen_pids.add((st.name, int(pid)))
        if self.self_node is not None and self.self_node not in seen_pids:
            name, pid = self.self_node
            self._add_proc(cpu, rss, [name, ""], pid)
        yield from (
            up,
            level,
            age,
            fps,
            lat,
            frames,
            dropped,
            errors,
            bad,
            cam_state,
            reconnects,
            outbox,
            outbox_age,
            outbox_drop,
            mqtt_up,
            upq,
            upitems,
            upbytes,
            cpu,
            rss,
        )

    @staticmethod
    def _add(family: GaugeMetricFamily | CounterMetricFamily, labels: list[str], value: object) -> None:
        n = _num(value) if value is not None else None
        if n is not None:
            family.add_metric(labels, n)

    @staticmethod
    def _add_proc(cpu: CounterMetricFamily, rss: GaugeMetricFamily, labels: list[str], pid: int) -> None:
        usage = proc_usage(pid)
        if usage is not None:
            cpu.add_metric([*labels, str(pid)], usage[0])
            rss.add_metric([*labels, str(pid)], usage[1])
