"""Soak for CI: bench/soak.py runs the demo site (the real runner, real mosquitto, nginx-rtmp,
ffmpeg, ONNX Runtime) for NANO_VISION_SOAK_MINUTES (default 10) and the test asserts no growth.

Bounds (after the first half, the warm-up, is left out): every process alive through the second
half grows its RSS by less than 300 MB/hour (25 MB per 5-minute half; ONNX Runtime's arena and the
Python heap still settle a few MB in the first minutes, a leak of a frame per second would be
GB/hour), its fd and thread counts trend by less than 20 per hour and move by at most 4 over the
window (fds/threads flat), no node container or service exits, and events and clips keep arriving. Slow by design (10 minutes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import REPO

MINUTES = float(os.environ.get("NANO_VISION_SOAK_MINUTES", "10"))
RSS_MB_PER_HOUR = 300.0  # runs on the shared machine saw +41 and +145 MB/h for the camera container (open finding,
# docs/performance/soak.md); a leak of one frame a second is GB/h
PER_HOUR = 20.0


@pytest.mark.timeout(int(60 * MINUTES) + 400)
def test_soak_no_growth(tmp_path):
    out = tmp_path / "soak.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "bench" / "soak.py"),
            "--minutes",
            str(MINUTES),
            "--out",
            str(out),
            "--interval",
            "5",
            "--max-rss-mb-per-hour",
            str(RSS_MB_PER_HOUR),
            "--max-fds-per-hour",
            str(PER_HOUR),
            "--max-threads-per-hour",
            str(PER_HOUR),
        ],
        capture_output=True,
        text=True,
        timeout=60 * MINUTES + 300,
        check=False,
    )
    sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
    assert proc.returncode != 2, "the demo site did not run through the soak"
    result = json.loads(out.read_text())
    assert result["runner_exit"] == 0, "the runner stops cleanly at the end"
    assert not result["exited"], f"processes died during the soak: {result['exited']}"
    nodes = [n for n in result["trends"] if n.startswith(("container", "cam0/", "detector", "events"))]
    assert nodes, f"no node process was sampled through the window: {sorted(result['trends'])}"
    for name, t in result["trends"].items():
        assert t["rss"] < RSS_MB_PER_HOUR, f"{name}: RSS grows {t['rss']:.1f} MB/h"
        assert t["fds_max"] - t["fds_min"] <= 4, f"{name}: open fds moved {t['fds_min']:.0f}..{t['fds_max']:.0f}"
        assert t["threads_max"] - t["threads_min"] <= 4, (
            f"{name}: threads moved {t['threads_min']:.0f}..{t['threads_max']:.0f}"
        )
    assert proc.returncode == 0, result["over"]
    samples = result["samples"]
    half = samples[len(samples) // 2]
    assert result["events"] > half["events"], "events still reach MQTT in the second half"
    assert result["clips"] >= 1, "clips are recorded and uploaded"
