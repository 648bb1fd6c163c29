#!/usr/bin/env bash
# One idempotent set-up step: Debian packages (as root; otherwise prints the apt command),
# .venv with the ROS 2 Kilted wheels from PyPI, the project (editable) and its Python
# dependencies, and the interface packages (vision_msgs, nano_vision_msgs) built into the venv. A second run with nothing changed only
# checks stamps and takes seconds.
#   scripts/setup.sh            # everything
#   NANO_VISION_SKIP_APT=1 scripts/setup.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
venv="${NANO_VISION_VENV:-$root/.venv}"
python="${PYTHON:-python3}"

# --- Debian packages -------------------------------------------------------------------------
apt_pkgs=$(cat requirements/*.apt | sed 's/#.*//' | tr -s ' \n' ' ')
missing=""
for p in $apt_pkgs; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ] && [ -z "${NANO_VISION_SKIP_APT:-}" ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "setup: installing Debian packages:$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends $missing >/dev/null
  else
    echo "setup: missing Debian packages; run:  sudo apt-get install -y$missing"
  fi
fi

# --- Python venv -------------------------------------------------------------------------------
"$python" -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
  || { echo "setup: Python >= 3.10 is required ($("$python" --version))" >&2; exit 1; }
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
stamp="$venv/.nano_vision_stamp"
want=$(cat requirements/*.txt setup.py package.xml | sha256sum | cut -c1-16)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing Python packages into $venv"
  "$venv/bin/python" -m pip install -q --upgrade pip
  reqs=(); for f in requirements/*.txt; do reqs+=(-r "$f"); done
  "$venv/bin/python" -m pip install -q "${reqs[@]}"
  "$venv/bin/python" -m pip install -q --no-deps -e .
  echo "$want" > "$stamp"
fi

# --- interface packages: third_party/vision_msgs, nano_vision_msgs ---------------------------------
scripts/build_vision_msgs.sh "$venv" "$root/third_party/vision_msgs" "$root/nano_vision_msgs"
echo "setup: ready ($venv)"
