"""The event JSON Schema (``schemas/event.schema.json``, generated from `model.Event`) and a cached validator."""

from __future__ import annotations

import datetime as dt
import functools
import json
from typing import Any, overload

import jsonschema

from nano_vision_ros.core.events.model import SCHEMA_PATH, SCHEMA_VERSION

__all__ = ["SCHEMA_PATH", "SCHEMA_VERSION", "EventSchemaError", "iso", "load_schema", "parse_iso", "validate_event"]


class EventSchemaError(ValueError):
    """An event does not validate against the event schema."""


@functools.cache
def load_schema(name: str = "event.schema.json") -> dict[str, Any]:
    return json.loads((SCHEMA_PATH.parent / name).read_text())


@functools.cache
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


@overload
def iso(t: float) -> str: ...
@overload
def iso(t: None) -> None: ...
def iso(t: float | None) -> str | None:
    """Epoch seconds -> ISO-8601 UTC with microseconds and a Z."""
    if t is None:
        return None
    return dt.datetime.fromtimestamp(t, dt.timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def parse_iso(value: str) -> float:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
