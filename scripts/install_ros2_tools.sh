#!/usr/bin/env bash
# Tests only: install the real ROS 2 tooling (launch, launch_ros, launch_testing, launch_pytest,
# the `ros2` command line, rosidl_runtime_py, composition_interfaces) into the venv from the
# sources in ../shared/ros2-tools (see its README.md). PyPI has the Kilted runtime wheels but not
# these. The product never needs them: `nano-vision site` is the way on machines without ROS.
# Idempotent: a stamp (hash of the archives and of this script) makes a second run a no-op.
#   scripts/install_ros2_tools.sh [VENV] [ROS2_TOOLS_DIR]   (default: .venv, ../shared/ros2-tools)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv=$(cd "${1:-${NANO_VISION_VENV:-$root/.venv}}" && pwd)
tools=${2:-$root/../shared/ros2-tools}
py="$venv/bin/python"
[ -d "$tools" ] || { echo "install_ros2_tools: $tools not found (tests need ../shared beside the clone)" >&2; exit 1; }
tools=$(cd "$tools" && pwd)

stamp="$venv/.nano_vision_ros2_tools_stamp"
want=$(cat "$tools"/*.tar.gz "$0" "$root/scripts/build_vision_msgs.sh" | sha256sum | cut -c1-16)
check='import launch, launch_ros, launch_testing, launch_pytest, launch_testing_ros, ros2cli, ros2launch, rosidl_runtime_py
from composition_interfaces.srv import LoadNode'
# launch_testing 3.7.1 and launch_testing_ros register pytest plugins (pytest11 entry points) whose
# hooks use pytest's removed `path` argument: with pytest >= 9 every pytest run in the venv then
# fails to start. Unregister those two (launch_pytest's plugin works and is kept; the
# `launch_test` command does not need them).
drop_broken_pytest_plugins() {
  "$py" - <<'PY'
import importlib.metadata as md, re
for dist, line in (("launch_testing", "launch_testing = launch_testing.pytest.hooks"),
                   ("launch_testing_ros", "launch_ros = launch_testing_ros_pytest_entrypoint")):
    try:
        d = md.distribution(dist)
    except md.PackageNotFoundError:
        continue
    f = d.locate_file(d._path.name + "/entry_points.txt") if hasattr(d, "_path") else None
    if f is None or not f.is_file():
        continue
    text = f.read_text()
    new = re.sub(r"\[pytest11\]\n" + re.escape(line) + r"\n?", "", text)
    if new != text:
        f.write_text(new)
        print(f"ros2 tools: unregistered the {dist} pytest plugin (incompatible with this pytest)")
PY
}

if [ "$(cat "$stamp" 2>/dev/null)" = "$want" ] && "$py" -c "$check" 2>/dev/null && [ -x "$venv/bin/ros2" ]; then
  drop_broken_pytest_plugins
  echo "ros2 tools: up to date"
  exit 0
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for a in "$tools"/*.tar.gz; do tar -xzf "$a" -C "$work"; done

echo "ros2 tools: PyPI dependencies (psutil, osrf-pycommon, wheel; lark-parser is already there for rosidl)"
"$py" -m pip install -q psutil osrf-pycommon wheel

# launch_ros imports composition_interfaces.srv at import time: build it first, like vision_msgs
"$root/scripts/build_vision_msgs.sh" "$venv" "$work/rcl_interfaces/composition_interfaces"

pkgs=(rosidl_runtime_py
      launch/launch launch/launch_xml launch/launch_yaml launch/launch_testing launch/launch_pytest
      launch_ros/launch_ros launch_ros/launch_testing_ros
      ros2cli/ros2cli ros2cli/ros2pkg ros2cli/ros2run ros2cli/ros2node ros2cli/ros2topic ros2cli/ros2param
      ros2cli/ros2service ros2cli/ros2lifecycle ros2cli/ros2interface ros2cli/ros2action
      launch_ros/ros2launch)
args=(); for p in "${pkgs[@]}"; do args+=("$work/$p"); done
echo "ros2 tools: installing ${#pkgs[@]} Python packages (--no-deps)"
(cd "$work" && "$py" -m pip install -q --no-deps --no-build-isolation "${args[@]}")
drop_broken_pytest_plugins
"$py" -c "$check" || { echo "ros2 tools: installed but not importable" >&2; exit 1; }
"$py" -m pytest --version >/dev/null 2>&1 || { echo "ros2 tools: pytest no longer starts" >&2; exit 1; }
echo "$want" > "$stamp"
echo "ros2 tools: ready ($venv/bin/ros2)"
