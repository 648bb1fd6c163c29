"""Health figures for …/stats: real /proc and /sys on this machine; the tegrastats parser on a line
in the format JetPack prints (no Jetson here)."""

from __future__ import annotations

import time

from nano_vision_ros.core.mqtt.health import HealthStats, parse_tegrastats


def test_host_figures_from_proc_and_sys(tmp_path):
    h = HealthStats([str(tmp_path), "/nonexistent-disk"])
    time.sleep(0.2)
    s = h.collect()
    assert s["mem_total"] > 0 and 0 <= s["mem_percent"] <= 100
    assert 0.0 <= s["cpu_percent"] <= 100.0
    assert list(s["disk"]) == [str(tmp_path)] and s["disk"][str(tmp_path)]["total"] > 0
    assert isinstance(s["temperatures"], dict)
    h.close()


def test_tegrastats_line_parsed():
    line = (
        "RAM 2436/3964MB (lfb 71x4MB) SWAP 0/1982MB (cached 0MB) CPU [23%@1479,11%@1479,off,45%@1479] "
        "EMC_FREQ 0% GR3D_FREQ 37% PLL@33C CPU@35.5C PMIC@50C GPU@33.5C AO@41C thermal@34.25C "
        "POM_5V_IN 3571/3571 POM_5V_GPU 410/410 POM_5V_CPU 734/734"
    )
    r = parse_tegrastats(line)
    assert r["ram_used_mb"] == 2436 and r["ram_total_mb"] == 3964
    assert r["gpu_percent"] == 37 and r["cpu_percent_per_core"] == [23, 11, 45]
    assert r["temperatures"]["GPU"] == 33.5 and r["temperatures"]["CPU"] == 35.5
    assert r["power_mw"]["POM_5V_IN"] == 3571
    line2 = "RAM 3000/7620MB GR3D_FREQ 0% cpu@45.5C VDD_IN 5000mW/5000mW VDD_CPU_GPU_CV 800mW/800mW"
    r2 = parse_tegrastats(line2)
    assert r2["power_mw"] == {"VDD_IN": 5000, "VDD_CPU_GPU_CV": 800}
    assert parse_tegrastats("garbage") == {}
