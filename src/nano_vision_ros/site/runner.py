"""Run a site graph without launch_ros: each process of the graph (one node, or a container of
a camera's nodes) started as ``ros2 launch`` would start it.

Logs are prefixed with the node's label, Ctrl-C/SIGTERM is forwarded (SIGINT, then SIGTERM and
SIGKILL after ``stop_timeout``), a node that dies during start-up fails the whole start with its
last log lines, a node that dies later is reported (and restarted if ``respawn``).
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING

from nano_vision_ros.site.graph import ProcessSpec, SiteGraph

if TYPE_CHECKING:
    from nano_vision_ros.site.local_server import LocalServer

log = logging.getLogger("nano_vision.site")

EXIT_CONFIG = 2  # nano_vision_ros.ros.runtime.EXIT_CONFIG (not imported: the runner needs no rclpy)


class StartupError(RuntimeError):
    """A node (or service) failed while the site was starting."""


def find_executable(name: str) -> str | None:
    """The node's console script: beside this interpreter (venv), on PATH, or in lib/<pkg> (colcon)."""
    here = Path(sys.executable).parent
    for cand in (here / name, Path(sys.prefix) / "lib" / "nano_vision_ros" / name):
        if cand.is_file() and os.access(cand, os.X_OK):
            return str(cand)
    return shutil.which(name)


@dataclass
class ManagedProcess:
    spec: ProcessSpec
    cmd: list[str]
    env: dict[str, str]
    out: IO[str]
    proc: subprocess.Popen | None = None
    tail: deque = field(default_factory=lambda: deque(maxlen=30))
    started_at: float = 0.0
    restarts: int = 0
    _reader: threading.Thread | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            self.cmd,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            text=True,
            errors="replace",
            bufsize=1,
        )
        self.started_at = time.monotonic()
        self._reader = threading.Thread(target=self._pump, name=f"log-{self.spec.label}", daemon=True)
        self._reader.start()

    def _pump(self) -> None:
        assert self.proc and self.proc.stdout
        prefix = f"[{self.spec.label}] "
        for line in self.proc.stdout:
            line = line.rstrip("\n")
            self.tail.append(line)
            self.out.write(prefix + line + "\n")
            self.out.flush()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: int) -> None:
        proc = self.proc
        if proc is not None and proc.poll() is None:  # alive()
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                pass

    def wait(self, timeout: float) -> bool:
        if self.proc is None:
            return True
        try:
            self.proc.wait(timeout)
            return True
        except subprocess.TimeoutExpired:
            return False

    def join_logs(self) -> None:
        if self._reader:
            self._reader.join(2)


class SiteRunner:
    """Starts services and nodes of a `SiteGraph`, supervises them, stops them cleanly."""

    def __init__(self, graph: SiteGraph, out: IO[str] | None = None, start_services: bool = True) -> None:
        self.graph = graph
        self.out = out or sys.stdout
        self.start_services = start_services
        self.procs: list[ManagedProcess] = []
        self.services: list[LocalServer] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()

    # -- services ----------------------------------------------------------------------------
    def _start_services(self, workdir: Path) -> None:
        svc = self.graph.site.services
        if self.graph.runs_service("mosquitto"):
            from nano_vision_ros.site.mosquitto import Mosquitto  # lazily: needs the mosquitto binary

            m = Mosquitto(port=svc.mosquitto.port, host=svc.mosquitto.host, workdir=workdir / "mosquitto")
            m.start()
            self.services.append(m)
            self._say(f"mosquitto listening on {svc.mosquitto.host}:{svc.mosquitto.port} (pid {m.pid})")
        if self.graph.runs_service("nginx_rtmp"):
            from nano_vision_ros.site.nginx_rtmp import NginxRtmp

            n = NginxRtmp(port=svc.nginx_rtmp.port, host=svc.nginx_rtmp.host, workdir=workdir / "nginx")
            n.start()
            self.services.append(n)
            self._say(f"nginx-rtmp listening on rtmp://{svc.nginx_rtmp.host}:{svc.nginx_rtmp.port}/live (pid {n.pid})")
        if self.graph.runs_service("clip_receiver"):
            from nano_vision_ros.site.services import ClipReceiver

            rx = svc.clip_receiver
            r = ClipReceiver(rx.port, rx.host, rx.dir, rx.token_file, rx.status_port)
            r.start()
            self.services.append(r)
            self._say(
                f"clip receiver on {rx.host}:{rx.port} -> {rx.dir} (pid {r.pid})"
                + (f", progress http://{rx.host}:{rx.status_port}/status" if rx.status_port else "")
            )

    # -- nodes -------------------------------------------------------------------------------
    def _command(self, spec: ProcessSpec) -> list[str]:
        if spec.is_container:
            return spec.command()
        node = spec.nodes[0]
        exe = find_executable(node.executable)
        if exe is None:
            raise StartupError(
                f"{spec.label}: executable '{node.executable}' not found (is the package installed? run `make setup`)"
            )
        return spec.command(exe)

    def _say(self, text: str) -> None:
        self.out.write(f"[site] {text}\n")
        self.out.flush()

    def start(self, workdir: Path) -> None:
        """Start everything; raises StartupError (after stopping what started) on failure."""
        env = {**os.environ, **self.graph.env, "PYTHONUNBUFFERED": "1"}
        try:
            if self.start_services:
                self._start_services(workdir)
            for spec in self.graph.processes:
                mp = ManagedProcess(spec, self._command(spec), {**env, **spec.env}, self.out)
                mp.start()
                self.procs.append(mp)
                assert mp.proc is not None  # start() sets it (Popen raises otherwise)
                inside = f": {', '.join(n.label for n in spec.nodes)}" if spec.is_container else ""
                self._say(f"started {spec.label} (pid {mp.proc.pid}){inside}")
            self._check_startup()
        except BaseException:
            self.stop()
            raise

    def _check_startup(self) -> None:
        deadline = time.monotonic() + self.graph.site.startup_grace
        while time.monotonic() < deadline:
            for mp in self.procs:
                if not mp.alive():
                    raise self._startup_failure(mp)
            time.sleep(0.1)

    @staticmethod
    def _startup_failure(mp: ManagedProcess) -> StartupError:
        mp.join_logs()
        code = mp.proc.returncode if mp.proc else None
        last = "\n    ".join(list(mp.tail)[-10:]) or "(no output)"
        return StartupError(f"{mp.spec.label} exited with code {code} during start-up; its last lines:\n    {last}")

    def supervise(self, duration: float | None = None, on_tick: Callable[[], None] | None = None) -> int:
        """Block until stop() (signal) or `duration`; restart respawn nodes; returns exit code.

        Raises StartupError when a process exits with the invalid-configuration code."""
        end = time.monotonic() + duration if duration else None
        reported: set[int] = set()
        while not self._stop.is_set():
            if end is not None and time.monotonic() >= end:
                break
            for mp in self.procs:
                if mp.alive() or id(mp) in reported:
                    continue
                code = mp.proc.returncode if mp.proc else None
                if code == EXIT_CONFIG and not self._stop.is_set():
                    # invalid configuration: nodes exit 2 only while they are being created, so this
                    # is a failed start even when it came after startup_grace (a slow, loaded machine)
                    raise self._startup_failure(mp)
                if mp.spec.respawn and not self._stop.is_set():
                    self._say(f"{mp.spec.label} exited with code {code}; respawning in {mp.spec.respawn_delay:.1f}s")
                    time.sleep(mp.spec.respawn_delay)
                    mp.restarts += 1
                    mp.start()
                else:
                    self._say(f"{mp.spec.label} exited with code {code} (not respawned)")
                    reported.add(id(mp))
            if on_tick:
                on_tick()
            self._stop.wait(0.2)
        return 0

    def request_stop(self) -> None:
        self._stop.set()

    def _stop_group(self, group: list[ManagedProcess]) -> None:
        """SIGINT to every process of the group, then SIGTERM and SIGKILL to those that linger."""
        for mp in group:
            mp.signal(signal.SIGINT)
        deadline = time.monotonic() + self.graph.site.stop_timeout
        for mp in group:
            if not mp.wait(max(0.1, deadline - time.monotonic())):
                self._say(f"{mp.spec.label} did not stop after SIGINT; sending SIGTERM")
                mp.signal(signal.SIGTERM)
                if not mp.wait(3):
                    self._say(f"{mp.spec.label} did not stop after SIGTERM; killing")
                    mp.signal(signal.SIGKILL)
                    mp.wait(3)
            mp.join_logs()

    def stop(self) -> None:
        """SIGINT to every node, then SIGTERM, then SIGKILL after stop_timeout; then services."""
        with self._lock:
            self._stop.set()
            # Camera nodes first, site-wide nodes after: the last events and clip notices a camera's
            # nodes publish while stopping still reach the MQTT bridge and the uploader.
            for group in ([p for p in self.procs if p.spec.camera], [p for p in self.procs if not p.spec.camera]):
                self._stop_group(group)
            for s in reversed(self.services):
                try:
                    s.stop()
                except Exception as err:  # noqa: BLE001 - stopping must go on
                    self._say(f"stopping {type(s).__name__}: {err}")
            self.services.clear()
