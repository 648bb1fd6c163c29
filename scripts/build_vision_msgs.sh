#!/usr/bin/env bash
# Build the project's copy of vision_msgs (third_party/vision_msgs) into a venv that holds the
# ROS 2 wheels from PyPI. Skipped when an importable vision_msgs with Detection2DArray exists.
# Usage: scripts/build_vision_msgs.sh [VENV]   (default: .venv)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
venv=$(cd "${1:-$here/.venv}" && pwd)
py="$venv/bin/python"

if "$py" -c 'from vision_msgs.msg import Detection2DArray, LabelInfo' 2>/dev/null; then
  echo "vision_msgs: already importable, not rebuilt"
  exit 0
fi

# The ROS wheels' CMake exports name the include paths of the machine they were built on;
# point them at this venv's interpreter and numpy.
py_inc=$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
np_inc=$("$py" -c 'import numpy; print(numpy.get_include())')
grep -rlE '/opt/python/cp3[0-9]+-cp3[0-9]+/include/python3\.[0-9]+|/opt/python/[^"; ]*/site-packages/numpy/_core/include' \
    "$venv/share" --include='*.cmake' 2>/dev/null | while read -r f; do
  sed -i -E "s#/opt/python/cp3[0-9]+-cp3[0-9]+/include/python3\.[0-9]+#${py_inc}#g; s#/opt/python/[^\"; ]*/site-packages/numpy/_core/include#${np_inc}#g" "$f"
done

build=$(mktemp -d)
trap 'rm -rf "$build"' EXIT
export AMENT_PREFIX_PATH="$venv${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
export PATH="$venv/bin:$PATH"
echo "vision_msgs: building from third_party/vision_msgs into $venv"
cmake -S "$here/third_party/vision_msgs" -B "$build" \
  -DCMAKE_PREFIX_PATH="$venv" -DPython3_EXECUTABLE="$py" -DCMAKE_INSTALL_PREFIX="$venv" \
  -DBUILD_TESTING=OFF -DCMAKE_BUILD_TYPE=Release >"$build/cmake.log" 2>&1 \
  || { cat "$build/cmake.log"; echo "vision_msgs: cmake configure failed" >&2; exit 1; }
make -C "$build" -j"$(nproc)" install >"$build/make.log" 2>&1 \
  || { tail -50 "$build/make.log"; echo "vision_msgs: build failed" >&2; exit 1; }
"$py" -c 'from vision_msgs.msg import Detection2DArray, LabelInfo' \
  || { echo "vision_msgs: built but not importable" >&2; exit 1; }
echo "vision_msgs: built"
