#!/usr/bin/env bash
# The peers of bench/plates.py (hyperlpr2 2.0.0, agentclpr 1.1.0) in their OWN venv: they pull
# opencv-python (which would overwrite the project's opencv-python-headless), so they are never a
# project dependency. Usage: bench/platebench_venv.sh [VENV_DIR]  (default: <repo>/.venv-platebench)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="${1:-$root/.venv-platebench}"
py="${PYTHON:-python3}"
[ -x "$venv/bin/python" ] || "$py" -m venv "$venv"
"$venv/bin/pip" install -q --upgrade pip
# opencv-python < 5: hyperlpr2 needs cv2.CascadeClassifier (the 5.x wheels drop it)
"$venv/bin/pip" install -q "hyperlpr2==2.0.0" "agentclpr==1.1.0" onnxruntime "numpy<2.3" pillow "opencv-python<5"
"$venv/bin/python" -c "import hyperlpr2, agentclpr; print('platebench venv ok:', '$venv')"
