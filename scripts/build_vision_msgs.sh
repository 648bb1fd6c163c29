#!/usr/bin/env bash
# Build ROS 2 interface packages (rosidl: msg/srv) into a venv that holds the ROS 2 wheels from
# PyPI, the way colcon would on a ROS install. Default: the project's copy of vision_msgs
# (third_party/vision_msgs) and the project's own nano_vision_msgs, in that order (nano_vision_msgs
# uses vision_msgs/BoundingBox2D). Tests also build composition_interfaces this way.
# A package is skipped when every one of its messages/services already imports and, if this script
# built it before, its sources have not changed since (a stamp in share/<name>/); an importable
# package without a stamp comes from elsewhere (a ROS install) and is kept.
# Usage: scripts/build_vision_msgs.sh [VENV] [PACKAGE_DIR ...]   (default: .venv, the two above)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
venv=$(cd "${1:-$here/.venv}" && pwd)
shift || true
py="$venv/bin/python"
[ $# -gt 0 ] || set -- "$here/third_party/vision_msgs" "$here/nano_vision_msgs"

# The ROS wheels' CMake exports name the include paths of the machine they were built on;
# point them at this venv's interpreter and numpy (idempotent).
py_inc=$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
np_inc=$("$py" -c 'import numpy; print(numpy.get_include())')
fix_cmake_paths() {
  { grep -rlE '/opt/python/cp3[0-9]+-cp3[0-9]+/include/python3\.[0-9]+|/opt/python/[^"; ]*/site-packages/numpy/_core/include' \
      "$venv/share" --include='*.cmake' 2>/dev/null || true; } | while read -r f; do
    sed -i -E "s#/opt/python/cp3[0-9]+-cp3[0-9]+/include/python3\.[0-9]+#${py_inc}#g; s#/opt/python/[^\"; ]*/site-packages/numpy/_core/include#${np_inc}#g" "$f"
  done
}

# "from pkg.msg import A, B" / "from pkg.srv import C" for every interface file of the package
import_check() {
  local dir=$1 name=$2 kind names code=""
  for kind in msg srv action; do
    [ -d "$dir/$kind" ] || continue
    names=$(cd "$dir/$kind" && ls ./*."$kind" 2>/dev/null | sed -E "s#^\./##; s#\.$kind\$##" | paste -sd, -)
    [ -n "$names" ] && code="${code}from ${name}.${kind} import ${names}; "
  done
  echo "${code:-import $name}"
}

build_one() {
  local dir name check src_sha stamp build
  dir=$(cd "$1" && pwd)
  name=$(sed -n 's#.*<name>\(.*\)</name>.*#\1#p' "$dir/package.xml" | head -1)
  check=$(import_check "$dir" "$name")
  src_sha=$(cd "$dir" && find . -type f ! -name COLCON_IGNORE -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16)
  stamp="$venv/share/$name/nano_vision_build.sha256"
  if "$py" -c "$check" 2>/dev/null; then
    if [ ! -f "$stamp" ]; then echo "$name: already importable, not rebuilt"; return 0; fi
    if [ "$(cat "$stamp")" = "$src_sha" ]; then echo "$name: up to date"; return 0; fi
  fi
  fix_cmake_paths
  build=$(mktemp -d)
  echo "$name: building from ${dir#$here/} into $venv"
  if ! cmake -S "$dir" -B "$build" \
      -DCMAKE_PREFIX_PATH="$venv" -DPython3_EXECUTABLE="$py" -DCMAKE_INSTALL_PREFIX="$venv" \
      -DBUILD_TESTING=OFF -DCMAKE_BUILD_TYPE=Release >"$build/cmake.log" 2>&1; then
    cat "$build/cmake.log"; rm -rf "$build"; echo "$name: cmake configure failed" >&2; return 1
  fi
  if ! make -C "$build" -j"$(nproc)" install >"$build/make.log" 2>&1; then
    tail -50 "$build/make.log"; rm -rf "$build"; echo "$name: build failed" >&2; return 1
  fi
  rm -rf "$build"
  "$py" -c "$check" || { echo "$name: built but not importable" >&2; return 1; }
  mkdir -p "$(dirname "$stamp")" && echo "$src_sha" > "$stamp"
  echo "$name: built"
}

export AMENT_PREFIX_PATH="$venv${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
export PATH="$venv/bin:$PATH"
for d in "$@"; do build_one "$d"; done
