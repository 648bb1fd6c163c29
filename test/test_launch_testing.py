"""A test in the ROS convention: test/launch/camera_params_launch.py is a launch_testing file
(generate_test_description + unittest cases with proc_info / proc_output) run by the real
`launch_test` command against the colcon install space, as `add_launch_test` would run it.

launch_testing's pytest plugin does not load with this pytest (see scripts/install_ros2_tools.sh)
and launch_pytest's fixtures fail with pytest 9, so the file is run by `launch_test` itself."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from ros2_tools import VENV, workspace

LAUNCH_TEST = Path(__file__).resolve().parent / "launch" / "camera_params_launch.py"

# the first test of a change builds the colcon workspace (minutes on a loaded machine)
pytestmark = pytest.mark.timeout(1500)


def test_launch_test_camera_parameters(tmp_path):
    env = workspace()
    r = subprocess.run(
        [str(VENV / "bin" / "launch_test"), str(LAUNCH_TEST), "--junit-xml", str(tmp_path / "j.xml")],
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
        cwd=tmp_path,
        check=False,
    )
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-6000:]
    assert "test_misspelled_names_refused" in (tmp_path / "j.xml").read_text()
    assert "Ran 2 tests" in out and "Ran 1 test" in out, out[-3000:]
