#!/usr/bin/env bash
# Build the package the way a ROS 2 user does (`colcon build`, ament_python) into a temporary
# workspace and check what it installs: the ament index marker, package.xml, launch/config/models,
# and one executable per node under lib/nano_vision_ros (what `ros2 run` looks for); and the
# interface package nano_vision_msgs beside it. colcon does not look inside a package folder and the
# repository root is the ament_python package, so nano_vision_msgs is a second base path:
#   colcon build --base-paths src src/nano_vision_ros/nano_vision_msgs
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv="${NANO_VISION_VENV:-$root/.venv}"
ws=$(mktemp -d)
trap 'rm -rf "$ws"' EXIT
mkdir -p "$ws/src/nano_vision_ros"
# a clean copy of the tracked tree (what a user clones into src/nano_vision_ros)
git -C "$root" ls-files -z | (cd "$root" && xargs -0 cp --parents -t "$ws/src/nano_vision_ros/") 2>/dev/null \
  || cp -r "$root/." "$ws/src/nano_vision_ros"
export PATH="$venv/bin:$PATH" AMENT_PREFIX_PATH="$venv" CMAKE_PREFIX_PATH="$venv"
(cd "$ws" && colcon --log-base log build --base-paths src src/nano_vision_ros/nano_vision_msgs \
    --event-handlers console_direct- --cmake-args -DPython3_EXECUTABLE="$venv/bin/python" -DBUILD_TESTING=OFF \
    >"$ws/build.out" 2>&1) \
  || { cat "$ws/build.out"; echo "colcon build failed" >&2; exit 1; }
prefix="$ws/install/nano_vision_ros"
fail=0
need() { [ -e "$1" ] || { echo "missing after colcon build: ${1#$ws/}"; fail=1; }; }
need "$prefix/share/ament_index/resource_index/packages/nano_vision_ros"
need "$prefix/share/nano_vision_ros/package.xml"
need "$prefix/share/nano_vision_ros/launch/site.launch.py"
need "$prefix/share/nano_vision_ros/config/site.yaml"
need "$prefix/share/nano_vision_ros/config/fastdds_shm.xml"
need "$ws/install/nano_vision_msgs/share/nano_vision_msgs/msg/Event.msg"
need "$ws/install/nano_vision_msgs/share/ament_index/resource_index/rosidl_interfaces/nano_vision_msgs"
for n in camera_node detector_node events_node mqtt_bridge_node rtmp_streamer_node recorder_node uploader_node face_node plate_node metrics_node webrtc_node; do
  need "$prefix/lib/nano_vision_ros/$n"
done
need "$(ls -d "$prefix"/lib/python3*/site-packages)/nano_vision_ros/data/webrtc_view.html"   # the live view page (package data)
# the package imports from the install space, and finds its data through the ament index
AMENT_PREFIX_PATH="$prefix:$venv" PYTHONPATH="$(ls -d "$prefix"/lib/python3*/site-packages)" \
  NANO_VISION_NO_CHECKOUT=1 "$venv/bin/python" -c '
import nano_vision_ros, sys
from ament_index_python.packages import get_package_share_directory
share = get_package_share_directory("nano_vision_ros")
assert nano_vision_ros.__file__.startswith(sys.argv[1]), nano_vision_ros.__file__
print("colcon install imports from", nano_vision_ros.__file__, "share:", share)
' "$prefix" || fail=1
# `ros2 run nano_vision_ros camera_node` equivalent: the installed executable, from another folder,
# finds the bundled sample through the ament index and streams it
out=$(cd "$ws" && AMENT_PREFIX_PATH="$prefix:$venv" PYTHONPATH="$(ls -d "$prefix"/lib/python3*/site-packages)" \
  ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST timeout -s INT 8 "$prefix/lib/nano_vision_ros/camera_node" 2>&1 || true)
echo "$out" | grep -q "streaming 768x576" || { echo "installed camera_node did not stream the bundled sample:"; echo "$out" | tail -5; fail=1; }
# the installed launch file at least compiles (launch_ros is not on PyPI, so it is not executed here)
"$venv/bin/python" -m py_compile "$prefix/share/nano_vision_ros/launch/site.launch.py" || fail=1
[ $fail = 0 ] && echo "colcon build: OK"
exit $fail
