"""Shared by the tests of the real ROS 2 tooling (test_ros2_launch, test_ros2_cli,
test_launch_testing, test_interfaces): the tools installed into the venv, a `colcon build`
workspace of this repository (both packages), and the demo site rewritten onto free ports.

The workspace is built the way a ROS user builds it (sources copied into `src/nano_vision_ros`,
`colcon build`, `. install/setup.sh`) and cached under `build/ros2_test_ws/<hash of the
working tree>`, so the three test files of one change share one build.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

VENV = Path(sys.executable).parent.parent
# colcon only finds packages it is pointed at: it does not look inside a package folder, and the
# repository root is the ament_python package, so the interface package is a second base path.
BASE_PATHS = ["src", "src/nano_vision_ros/nano_vision_msgs"]
_cache: dict[str, object] = {}


def ensure_tools() -> None:
    """scripts/install_ros2_tools.sh (idempotent: a stamp makes a second run a no-op)."""
    if _cache.get("tools"):
        return
    r = subprocess.run(
        [str(REPO / "scripts" / "install_ros2_tools.sh"), str(VENV)], capture_output=True, text=True, check=False
    )
    if r.returncode != 0:
        pytest.fail(f"scripts/install_ros2_tools.sh failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    _cache["tools"] = True


def _tree_files() -> list[str]:
    out = subprocess.run(
        ["git", "-C", str(REPO), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True,
        check=True,
    ).stdout.decode()
    # the package as a user clones it, less the tests and docs (not installed; keeps rebuilds rarer)
    return sorted(f for f in out.split("\0") if f and not f.startswith(("test/", "docs/")) and (REPO / f).is_file())


def _tree_hash(files: list[str]) -> str:
    h = hashlib.sha256()
    for f in files:
        h.update(f.encode() + b"\0" + (REPO / f).read_bytes())
    return h.hexdigest()[:16]


def workspace() -> dict[str, str]:
    """Build (or reuse) the colcon workspace; returns the environment of `. install/setup.sh`."""
    if "env" in _cache:
        return _cache["env"]  # type: ignore[return-value]
    ensure_tools()
    files = _tree_files()
    root = REPO / "build" / "ros2_test_ws"
    ws = root / _tree_hash(files)
    if not (ws / ".built").is_file():
        # the install space's setup.sh names its own prefix: build where it stays
        if root.is_dir():
            for old in root.iterdir():
                shutil.rmtree(old, ignore_errors=True)
        src = ws / "src" / "nano_vision_ros"
        for f in files:
            (src / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / f, src / f)
        env = {
            **os.environ,
            "PATH": f"{VENV / 'bin'}:{os.environ['PATH']}",
            "AMENT_PREFIX_PATH": str(VENV),
            "CMAKE_PREFIX_PATH": str(VENV),
        }
        cmd = [
            str(VENV / "bin" / "colcon"),
            "--log-base",
            "log",
            "build",
            "--base-paths",
            *BASE_PATHS,
            "--event-handlers",
            "console_direct-",
            "--cmake-args",
            f"-DPython3_EXECUTABLE={sys.executable}",
            "-DBUILD_TESTING=OFF",
        ]
        r = subprocess.run(cmd, cwd=ws, env=env, capture_output=True, text=True, check=False)
        if r.returncode != 0:
            pytest.fail(f"colcon build failed:\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}")
        (ws / ".built").write_text(" ".join(cmd))
    _cache["ws"] = ws
    _cache["env"] = _sourced_env(ws)
    return _cache["env"]  # type: ignore[return-value]


def _sourced_env(ws: Path) -> dict[str, str]:
    """The environment after `. install/setup.sh` on top of the venv (as on a ROS install)."""
    base = {**os.environ, "PATH": f"{VENV / 'bin'}:{os.environ['PATH']}", "AMENT_PREFIX_PATH": str(VENV)}
    for k in ("PYTHONPATH", "COLCON_PREFIX_PATH", "CMAKE_PREFIX_PATH"):
        base.pop(k, None)
    out = subprocess.run(
        ["sh", "-c", f". '{ws}/install/setup.sh' && env -0"], env=base, capture_output=True, check=True
    ).stdout.decode()
    return dict(line.split("=", 1) for line in out.split("\0") if "=" in line)


def ws_path() -> Path:
    workspace()
    return _cache["ws"]  # type: ignore[return-value]


def ros2(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120, cwd: Path | None = None
) -> subprocess.CompletedProcess:
    """Run the real `ros2` command line from the workspace environment."""
    return subprocess.run(
        [str(VENV / "bin" / "ros2"), *args],
        env=env or workspace(),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        check=False,
    )


def demo_site(tmp_path: Path, mqtt_port: int, rtmp_port: int, recv_port: int) -> Path:
    """The demo site on free ports (conftest.demo_site_files), with the install space's DDS profile."""
    from conftest import demo_site_files

    return demo_site_files(
        tmp_path,
        mqtt_port,
        rtmp_port,
        recv_port,
        fastdds_profile=ws_path()
        / "install"
        / "nano_vision_ros"
        / "share"
        / "nano_vision_ros"
        / "config"
        / "fastdds_shm.xml",
    )
