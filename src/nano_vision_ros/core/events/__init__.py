"""Site-safety events from tracked detections: rules, debounce/cooldown, lifecycle, schema, snapshots.

ROS-free: the events node feeds `EventEngine` with `Detections` and stamps, publishes what it
returns, and `validate_event` checks every event against ``schemas/event.schema.json``.
"""

from nano_vision_ros.core.events.config import (
    CameraRules,
    EventsConfig,
    parse_rule,
    parse_rules,
)
from nano_vision_ros.core.events.engine import EventEngine
from nano_vision_ros.core.events.rules import EVENT_TYPES, RULE_TYPES, Rule, RuleBase
from nano_vision_ros.core.events.schema import (
    SCHEMA_VERSION,
    EventSchemaError,
    load_schema,
    validate_event,
)

__all__ = [
    "EVENT_TYPES",
    "RULE_TYPES",
    "SCHEMA_VERSION",
    "CameraRules",
    "EventEngine",
    "EventSchemaError",
    "EventsConfig",
    "Rule",
    "RuleBase",
    "load_schema",
    "parse_rule",
    "parse_rules",
    "validate_event",
]
