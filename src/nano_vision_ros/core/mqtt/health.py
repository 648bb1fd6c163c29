"""Device health for the periodic ``…/stats`` message: CPU, memory, disk, temperatures, and Jetson
figures from jetson-stats (``jtop``) when it is installed (imported lazily). Reads /proc and /sys
directly so it needs no extra package."""
from __future__ import annotations

import glob
import logging
import os
import shutil
import time
from typing import Any

log = logging.getLogger(__name__)


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
                from jtop import jtop  # type: ignore[import-not-found]

                self._jtop = jtop()
                self._jtop.start()
            except Exception as err:  # noqa: BLE001 - jtop missing or its service not running
                log.info("jetson-stats not used: %s", err)
                self._jtop = None

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
                disks[p] = {"total": u.total, "free": u.free, "percent": round(100.0 * u.used / u.total, 1) if u.total else 0.0}
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
        return out

    def close(self) -> None:
        if self._jtop is not None:
            try:
                self._jtop.close()
            except Exception:  # noqa: BLE001
                pass
