"""The event JSON Schema (one file, ``schemas/event.schema.json``) and a cached validator."""
from __future__ import annotations

import datetime as dt
import functools
import json
from pathlib import Path
from typing import Any

import jsonschema

SCHEMA_VERSION = "1.0"
SCHEMA_PATH = Path(__file__).resolve().parents[2] / "schemas" / "event.schema.json"


class EventSchemaError(ValueError):
    """An event does not validate against the event schema."""


@functools.lru_cache(maxsize=None)
def load_schema(name: str = "event.schema.json") -> dict[str, Any]:
    return json.loads((SCHEMA_PATH.parent / name).read_text())


@functools.lru_cache(maxsize=None)
def _validator(name: str = "event.schema.json") -> jsonschema.Draft202012Validator:
    schema = load_schema(name)
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)


def validate_event(event: dict[str, Any]) -> None:
    """Raise EventSchemaError naming the first offending field."""
    err = jsonschema.exceptions.best_match(_validator().iter_errors(event))
    if err is not None:
        where = "/".join(str(p) for p in err.absolute_path) or "(event)"
        raise EventSchemaError(f"event field {where}: {err.message}"[:500])


def iso(t: float | None) -> str | None:
    """Epoch seconds -> ISO-8601 UTC with microseconds and a Z."""
    if t is None:
        return None
    return dt.datetime.fromtimestamp(t, dt.timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def parse_iso(value: str) -> float:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
