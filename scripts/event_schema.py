#!/usr/bin/env python3
"""Regenerate (--write) or check (--check) src/nano_vision_ros/schemas/event.schema.json from the
pydantic event model (nano_vision_ros.core.events.model.Event). Run with the project venv:
    PYTHONPATH=src .venv/bin/python scripts/event_schema.py --write
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from nano_vision_ros.core.events.model import main

if __name__ == "__main__":
    raise SystemExit(main())
