#!/usr/bin/env bash
# Run the core unit tests and one node pair over DDS against the OLDEST Python dependency versions the
# project declares (requirements/oldest.pins), in their own venv (.venv-oldest) with the ROS 2 Kilted
# wheels. Idempotent: a second run with nothing changed skips the installs and only runs the tests.
#   scripts/test_oldest.sh            # prints a pytest summary line; exit status is pytest's
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
venv="${NANO_VISION_OLDEST_VENV:-$root/.venv-oldest}"
python="${PYTHON:-python3}"

[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
stamp="$venv/.nano_vision_oldest_stamp"
want=$(cat requirements/ros-kilted.txt requirements/oldest.pins setup.py package.xml | sha256sum | cut -c1-16)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "test_oldest: installing ROS 2 Kilted wheels and the oldest pins into $venv"
  # one resolve, so a ROS wheel that needs a newer release than a pin fails here, by name
  "$venv/bin/python" -m pip install -q -r requirements/ros-kilted.txt -r requirements/oldest.pins 2> >(grep -v "^WARNING: Location" >&2)
  "$venv/bin/python" -m pip install -q --no-deps -e .
  echo "$want" > "$stamp"
fi
scripts/build_vision_msgs.sh "$venv"
"$venv/bin/python" - <<'PY'
import cv2, numpy, onnxruntime, paho.mqtt, pydantic
print("test_oldest: numpy", numpy.__version__, "| opencv", cv2.__version__, "| pydantic", pydantic.VERSION,
      "| paho-mqtt", paho.mqtt.__version__, "| onnxruntime", onnxruntime.__version__)
PY
# Core (ROS-free) tests, plus the events_node pair over DDS.
exec "$venv/bin/python" -m pytest -q -p no:randomly \
  test/test_outbox.py test/test_events_rules.py test/test_decoders.py test/test_tracking.py \
  test/test_capture.py test/test_image_conversion.py test/test_inference.py test/test_events_node.py "$@"
