"""Remote commands from MQTT: size limit, allow-list, JSON Schema (``schemas/commands.schema.json``),
then a request ``{request_id, command, target, args}`` that the bridge turns into service calls
(ros.services); and the error/result replies that go back on ``…/cmd/<name>/reply``.

Nothing here raises on bad input except `CommandRejected`, whose message is safe to send back.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

import jsonschema

from nano_vision_ros.core.events.schema import load_schema

KNOWN_COMMANDS = ("enroll_face", "delete_face", "set_threshold", "snapshot", "reload_config")
_NAME = re.compile(r"^[A-Za-z0-9_]{1,64}$")


class CommandRejected(ValueError):
    """A command that is not forwarded; `code` is machine-readable, the message says why."""

    def __init__(self, code: str, message: str, request_id: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.request_id = request_id


class CommandValidator:
    def __init__(self, allowed: list[str] | tuple[str, ...] = KNOWN_COMMANDS, max_bytes: int = 1_000_000) -> None:
        unknown = [c for c in allowed if c not in KNOWN_COMMANDS]
        if unknown:
            raise ValueError(
                f"unknown commands in the allow-list: {', '.join(unknown)} (known: {', '.join(KNOWN_COMMANDS)})"
            )
        self.allowed = tuple(allowed)
        self.max_bytes = int(max_bytes)
        schema = load_schema("commands.schema.json")
        jsonschema.Draft202012Validator.check_schema(schema)
        self._envelope = jsonschema.Draft202012Validator(schema)
        self._args = {
            name: jsonschema.Draft202012Validator({**schema["$defs"][name], "$schema": schema["$schema"]})
            for name in KNOWN_COMMANDS
        }

    def parse(self, name: str, payload: bytes) -> dict[str, Any]:
        """A request ``{request_id, command, target, args}`` or CommandRejected."""
        if not _NAME.match(name):
            raise CommandRejected("bad_name", "command name must be 1-64 letters, digits or '_'")
        if name not in self.allowed:
            raise CommandRejected(
                "unknown_command", f"command {name!r} is not allowed; allowed: {', '.join(self.allowed)}"
            )
        if len(payload) > self.max_bytes:
            raise CommandRejected("too_large", f"payload of {len(payload)} bytes exceeds the limit of {self.max_bytes}")
        try:
            text = payload.decode("utf-8") if payload else "{}"
            data = json.loads(text)
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise CommandRejected("bad_json", f"payload is not UTF-8 JSON: {str(exc)[:120]}") from None
        rid = data.get("request_id") if isinstance(data, dict) else None
        rid = rid if isinstance(rid, str) and re.fullmatch(r"[A-Za-z0-9_.:-]{1,64}", rid) else None
        if not isinstance(data, dict):
            raise CommandRejected("bad_payload", "payload must be a JSON object", rid)
        err = jsonschema.exceptions.best_match(self._envelope.iter_errors(data))
        if err is None:
            err = jsonschema.exceptions.best_match(self._args[name].iter_errors(data.get("args", {})))
            where = "args"
        else:
            where = "payload"
        if err is not None:
            path = "/".join(str(p) for p in err.absolute_path)
            raise CommandRejected("invalid", f"{where}{'/' + path if path else ''}: {err.message[:200]}", rid)
        return {
            "request_id": rid or str(uuid.uuid4()),
            "command": name,
            "target": data.get("target", "*"),
            "args": data.get("args", {}),
        }


def error_reply(name: str, err: CommandRejected) -> dict[str, Any]:
    return {
        "request_id": err.request_id,
        "command": name[:64],
        "ok": False,
        "error": {"code": err.code, "message": str(err)},
        "replies": [],
    }


def aggregate_reply(request: dict[str, Any], replies: list[dict[str, Any]], timeout: float) -> dict[str, Any]:
    """One MQTT reply from the per-node replies ``{node, ok, result, error}`` of every node that answered."""
    if not replies:
        return {
            "request_id": request["request_id"],
            "command": request["command"],
            "ok": False,
            "error": {
                "code": "timeout",
                "message": f"no node answered within {timeout:g}s (target {request['target']!r})",
            },
            "replies": [],
        }
    ok = all(bool(r.get("ok")) for r in replies)
    first_err = next((r.get("error") for r in replies if not r.get("ok")), None)
    return {
        "request_id": request["request_id"],
        "command": request["command"],
        "ok": ok,
        "error": None if ok else {"code": "failed", "message": str(first_err)[:500]},
        "replies": [{k: r.get(k) for k in ("node", "ok", "result", "error")} for r in replies],
    }
