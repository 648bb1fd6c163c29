"""Class names from a labels file (txt / yaml / json) or from model metadata (Ultralytics ``names``)."""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

from nano_vision_ros.core.errors import ModelError
from nano_vision_ros.core.paths import resolve


def _from_obj(obj: Any, where: str) -> list[str]:
    if isinstance(obj, dict) and "names" in obj:
        obj = obj["names"]
    if isinstance(obj, list):
        return [str(x) for x in obj]
    if isinstance(obj, dict):
        try:
            items = sorted((int(k), str(v)) for k, v in obj.items())
        except (TypeError, ValueError) as err:
            raise ModelError(f"{where}: class map keys must be integers") from err
        if [k for k, _ in items] != list(range(len(items))):
            raise ModelError(f"{where}: class ids must be 0..N-1 without gaps")
        return [v for _, v in items]
    raise ModelError(f"{where}: expected a list of names or a {{id: name}} map")


def load_labels(path: str | Path) -> list[str]:
    """One name per line (``#`` comments and blank lines skipped), or YAML/JSON list / map / ``names:``."""
    p = resolve(path)
    if not p.is_file():
        raise ModelError(f"labels file not found: {path}")
    text = p.read_text(encoding="utf-8")
    if p.suffix.lower() in (".yaml", ".yml"):
        import yaml

        return _from_obj(yaml.safe_load(text), str(p))
    if p.suffix.lower() == ".json":
        return _from_obj(json.loads(text), str(p))
    return [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]


def labels_from_metadata(metadata: dict[str, str]) -> list[str] | None:
    """Ultralytics exports store ``names`` as a Python dict literal; others a JSON list."""
    raw = metadata.get("names") or metadata.get("labels") or metadata.get("classes")
    if not raw:
        return None
    try:
        obj = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        try:
            obj = json.loads(raw)
        except ValueError:
            obj = [s.strip() for s in raw.split(",") if s.strip()]
    return _from_obj(obj, "model metadata 'names'")
