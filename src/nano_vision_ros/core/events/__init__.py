"""Site-safety events from tracked detections: rules, debounce/cooldown, lifecycle, schema, snapshots.

ROS-free: the events node feeds `EventEngine` with `Detections` and stamps, publishes what it
returns, and `validate_event` checks every event against ``schemas/event.schema.json``.
"""
from nano_vision_ros.core.events.config import CameraRules, EventsConfig, RuleConfig, parse_rules
from nano_vision_ros.core.events.engine import EventEngine
from nano_vision_ros.core.events.schema import SCHEMA_VERSION, EventSchemaError, load_schema, validate_event

__all__ = ["CameraRules", "EventsConfig", "RuleConfig", "parse_rules", "EventEngine", "SCHEMA_VERSION",
           "EventSchemaError", "load_schema", "validate_event"]
