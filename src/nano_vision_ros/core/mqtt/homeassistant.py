"""Home Assistant MQTT discovery and the snapshot-file policy of the MQTT bridge, as plain functions.

The bridge node only wires these to its link: the discovery configs it publishes (retained) on
connect, the ON/OFF state of each camera's event type, and which snapshot file a command reply
may make it publish. The discovery types default to every event type the rules can raise
(``core.events.EVENT_TYPES``), so a new rule type shows up in Home Assistant without a second list.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from nano_vision_ros.core.events.rules import EVENT_TYPES

#: a camera name or event type that may be a topic level (no '/', '+', '#', spaces)
TOPIC_PART = re.compile(r"^[A-Za-z0-9_.-]+$")
#: the event types a bridge announces by default: all the rule types' event types
DEFAULT_TYPES: tuple[str, ...] = EVENT_TYPES
#: snapshot files a reply may point at: JPEGs only (a reply must not publish any file the bridge can read)
SNAPSHOT_SUFFIXES = (".jpg", ".jpeg")


def node_id(site_id: str, device_id: str) -> str:
    """The Home Assistant node id of one bridge (its device)."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", f"nv_{site_id}_{device_id}")


def state_topic(base: str, camera: str, typ: str) -> str:
    return f"{base}/{camera}/{typ}/state"


def last_event_topic(base: str, camera: str) -> str:
    return f"{base}/{camera}/last_event"


def device_class(typ: str) -> str:
    return "smoke" if typ in ("smoke", "fire") else "safety"


def discovery_configs(
    *,
    base: str,
    prefix: str,
    site_id: str,
    device_id: str,
    status_topic: str,
    cameras: list[str],
    types: list[str] | tuple[str, ...],
) -> list[tuple[str, str]]:
    """(topic, JSON payload) of every retained discovery config: a binary sensor per camera and
    event type, and a `last event` sensor per camera."""
    nid = node_id(site_id, device_id)
    device = {
        "identifiers": [nid],
        "name": f"nano_vision {site_id}/{device_id}",
        "manufacturer": "nano_vision_ros",
        "model": "edge video analytics",
    }
    avail = {"availability_topic": status_topic, "payload_available": "online", "payload_not_available": "offline"}
    out: list[tuple[str, str]] = []
    for cam in cameras:
        for typ in types:
            cfg = {
                "name": f"{cam} {typ.replace('_', ' ')}",
                "unique_id": f"{nid}_{cam}_{typ}",
                "state_topic": state_topic(base, cam, typ),
                "payload_on": "ON",
                "payload_off": "OFF",
                "device_class": device_class(typ),
                "device": device,
                **avail,
            }
            out.append((f"{prefix}/binary_sensor/{nid}/{cam}_{typ}/config", json.dumps(cfg)))
        cfg = {
            "name": f"{cam} last event",
            "unique_id": f"{nid}_{cam}_last_event",
            "state_topic": last_event_topic(base, cam),
            "value_template": "{{ value_json.type }}",
            "json_attributes_topic": last_event_topic(base, cam),
            "device": device,
            **avail,
        }
        out.append((f"{prefix}/sensor/{nid}/{cam}_last_event/config", json.dumps(cfg)))
    return out


class ActiveEvents:
    """Which events of each (camera, type) are open: the binary sensor is ON while any is."""

    def __init__(self) -> None:
        self._open: dict[tuple[str, str], set[str]] = {}

    def update(self, ev: dict[str, Any]) -> tuple[str, str, bool] | None:
        """Record an event; (camera, type, sensor on) — None when camera or type is no topic level."""
        cam, typ = str(ev.get("camera", "")), str(ev.get("type", ""))
        if not (TOPIC_PART.match(cam) and TOPIC_PART.match(typ)):
            return None
        active = self._open.setdefault((cam, typ), set())
        (active.discard if ev.get("state") == "end" else active.add)(str(ev.get("event_id", "")))
        return cam, typ, bool(active)


def snapshot_to_publish(result: Any, max_bytes: int) -> tuple[str, bytes] | None:
    """(camera, JPEG bytes) a snapshot reply may publish, or None: only a JPEG file named by the
    reply, at most `max_bytes`, for a camera that is a topic level. OSError when it cannot be read."""
    if not isinstance(result, dict) or not isinstance(result.get("path"), str):
        return None
    cam = str(result.get("camera", "camera"))
    path = Path(result["path"])
    if not TOPIC_PART.match(cam) or path.suffix.lower() not in SNAPSHOT_SUFFIXES or path.stat().st_size > max_bytes:
        return None
    return cam, path.read_bytes()
