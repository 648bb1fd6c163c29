"""Device health for the periodic ``…/stats`` message: CPU, memory, disk, temperatures, and Jetson
figures from jetson-stats (``jtop``, imported lazily) or else from ``tegrastats`` when either is
present. Reads /proc and /sys directly so it needs no extra package."""

from __future__ import annotations

import glob
import logging
import os
import re
import shutil
import subprocess
import threading
import time
from typing import Any

log = logging.getLogger(__name__)

_TEGRA_RAM = re.compile(r"RAM (\d+)/(\d+)MB")
_TEGRA_GPU = re.compile(r"GR3D_FREQ (\d+)%")
_TEGRA_CPU = re.compile(r"CPU \[([^\]]*)\]")
_TEGRA_TEMP = re.compile(r"(\w+)@(-?[\d.]+)C")
_TEGRA_POWER = re.compile(r"(VDD_\w+|POM_\w+) (\d+)(?:mW)?")


def parse_tegrastats(line: str) -> dict[str, Any]:
    """The figures of one tegrastats line (Jetson): RAM, per-core CPU load, GPU load, temperatures, power."""
    out: dict[str, Any] = {}
    if m := _TEGRA_RAM.search(line):
        out["ram_used_mb"], out["ram_total_mb"] = int(m.group(1)), int(m.group(2))
    if m := _TEGRA_GPU.search(line):
        out["gpu_percent"] = int(m.group(1))
    if m := _TEGRA_CPU.search(line):
        loads = [int(c.split("%")[0]) for c in m.group(1).split(",") if "%" in c]
        if loads:
            out["cpu_percent_per_core"] = loads
    temps = {k: float(v) for k, v in _TEGRA_TEMP.findall(line)}
    if temps:
        out["temperatures"] = temps
    power = {k: int(v) for k, v in _TEGRA_POWER.findall(line)}
    if power:
        out["power_mw"] = power
    return out


class _Tegrastats:
    """`tegrastats --interval N` in the background; keeps the newest line (stopped by PID)."""

    def __init__(self, binary: str, interval_ms: int = 1000) -> None:
        self.line = ""
        self.proc = subprocess.Popen(
            [binary, "--interval", str(interval_ms)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            start_new_session=True,
        )
        threading.Thread(target=self._read, name="tegrastats", daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.line = line.strip()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(2)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def _cpu_times() -> tuple[int, int]:
    with open("/proc/stat", encoding="ascii") as f:
        parts = f.readline().split()[1:]
    vals = [int(v) for v in parts]
    idle = vals[3] + (vals[4] if len(vals) > 4 else 0)
    return sum(vals), idle


class HealthStats:
    def __init__(self, disk_paths: list[str] | None = None, use_jtop: bool = True) -> None:
        self.disk_paths = disk_paths or ["/"]
        self._prev = self._safe_cpu()
        self._jtop = None
        if use_jtop and os.path.exists("/etc/nv_tegra_release"):
            try:  # optional: jetson-stats
                from jtop import jtop

                self._jtop = jtop()
                self._jtop.start()
            except Exception as err:  # noqa: BLE001 - jtop missing or its service not running
                log.info("jetson-stats not used: %s", err)
                self._jtop = None
        self._tegra: _Tegrastats | None = None
        tegrastats = shutil.which("tegrastats") if use_jtop and self._jtop is None else None
        if tegrastats:
            try:
                self._tegra = _Tegrastats(tegrastats)
            except OSError as err:
                log.info("tegrastats not used: %s", err)

    @staticmethod
    def _safe_cpu() -> tuple[int, int] | None:
        try:
            return _cpu_times()
        except (OSError, ValueError, IndexError):
            return None

    def collect(self) -> dict[str, Any]:
        out: dict[str, Any] = {"time": time.time()}
        now = self._safe_cpu()
        if now and self._prev and now[0] > self._prev[0]:
            total, idle = now[0] - self._prev[0], now[1] - self._prev[1]
            out["cpu_percent"] = round(100.0 * (total - idle) / total, 1)
        self._prev = now
        try:
            out["load1"] = round(os.getloadavg()[0], 2)
        except OSError:
            pass
        try:
            mem: dict[str, int] = {}
            with open("/proc/meminfo", encoding="ascii") as f:
                for line in f:
                    k, v = line.split(":", 1)
                    mem[k] = int(v.split()[0]) * 1024
            out["mem_total"] = mem.get("MemTotal", 0)
            out["mem_available"] = mem.get("MemAvailable", 0)
            if out["mem_total"]:
                out["mem_percent"] = round(100.0 * (1 - out["mem_available"] / out["mem_total"]), 1)
        except (OSError, ValueError):
            pass
        disks = {}
        for p in self.disk_paths:
            try:
                u = shutil.disk_usage(p)
                disks[p] = {
                    "total": u.total,
                    "free": u.free,
                    "percent": round(100.0 * u.used / u.total, 1) if u.total else 0.0,
                }
            except OSError:
                continue
        out["disk"] = disks
        temps = {}
        for zone in sorted(glob.glob("/sys/class/thermal/thermal_zone*")):
            try:
                with open(os.path.join(zone, "type"), encoding="ascii") as f:
                    name = f.read().strip()
                with open(os.path.join(zone, "temp"), encoding="ascii") as f:
                    temps[name or os.path.basename(zone)] = round(int(f.read().strip()) / 1000.0, 1)
            except (OSError, ValueError):
                continue
        out["temperatures"] = temps
        if self._jtop is not None:
            try:
                stats = dict(self._jtop.stats)
                out["jetson"] = {str(k): (v if isinstance(v, (int, float, str)) else str(v)) for k, v in stats.items()}
            except Exception as err:  # noqa: BLE001
                log.debug("jtop: %s", err)
        elif self._tegra is not None and self._tegra.line:
            out["jetson"] = parse_tegrastats(self._tegra.line)
        return out

    def close(self) -> None:
        if self._tegra is not None:
            self._tegra.close()
        if self._jtop is not None:
            try:
                self._jtop.close()
            except Exception:  # noqa: BLE001, S110 - closing jtop is best effort
                pass
