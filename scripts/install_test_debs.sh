#!/usr/bin/env bash
# Tests only: the Debian packages of requirements/test.debs (headless Chromium for the WebRTC view).
# Idempotent: nothing to do when all are installed. As non-root, prints the apt command instead.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
pkgs=$(sed 's/#.*//' "$root/requirements/test.debs" | tr -s ' \n' ' ')
missing=""
for p in $pkgs; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && { echo "test debs: up to date"; exit 0; }
if [ "$(id -u)" != 0 ]; then
  echo "test debs: missing:$missing; run:  sudo apt-get install -y --no-install-recommends$missing" >&2
  exit 1
fi
echo "test debs: installing$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends $missing >/dev/null
