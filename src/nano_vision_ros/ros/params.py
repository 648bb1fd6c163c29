"""Declare a node's parameters from a pydantic model, read them once, validate, reject with reasons.

Every node describes its parameters as one pydantic model (field = parameter, nested models become
dotted names such as ``mqtt.host``). ``load_config`` declares them all in ``__init__``, reads them
into the typed model and turns validation failures into a ``ConfigError`` naming the parameter.
Values that ROS parameters cannot hold (mappings, lists of mixed types) are given as YAML strings
by the node's model, which parses them in a validator.

Parameter *names* are checked too: rclpy silently drops an override nobody declares, so a typo in a
params file would run on the default. After declaring, ``load_config`` refuses every override the
node does not declare (``ConfigError`` naming the node, the name and the closest declared names),
and ``ros2 param set`` of an undeclared name is refused with the same help. Tolerated without being
declared: ROS's own parameters, ``autostart`` (declared later by ``ros.runtime``) and the site-wide
names of ``SITE_WIDE`` that a params file gives every node in its ``/**:`` section (rclpy does not
say which section an override came from, so the rule is by name).
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from pydantic_core import PydanticUndefined
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.exceptions import ParameterNotDeclaredException
from rclpy.node import Node
from rclpy.parameter import Parameter

from nano_vision_ros.core.config_yaml import unflatten
from nano_vision_ros.core.errors import ConfigError

log = logging.getLogger(__name__)
M = TypeVar("M", bound=BaseModel)

# Names a site params file sets for every node (`/**: ros__parameters: {site_id, device_id}`);
# nodes that do not use them must still start.
SITE_WIDE = frozenset({"site_id", "device_id"})
# Declared by rclpy itself or by ros.runtime after the node's __init__.
ROS_OWN = frozenset({"use_sim_time", "start_type_description_service", "autostart"})
ROS_OWN_PREFIXES = ("qos_overrides.",)


def _flatten_defaults(model: type[BaseModel], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        key = f"{prefix}{name}"
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            out.update(_flatten_defaults(ann, key + "."))
            continue
        default = field.default
        if default is PydanticUndefined and field.default_factory is not None:
            default = field.default_factory()  # type: ignore[call-arg]
        if default is PydanticUndefined:
            default = None
        if isinstance(default, BaseModel):
            default = default.model_dump()
        out[key] = default
    return out


def parameter_names(model: type[BaseModel]) -> list[str]:
    """The ROS parameter names a node with this model declares (nested models: dotted names)."""
    return list(_flatten_defaults(model))


def _ros_value(default: Any) -> Any:
    """A value rclpy accepts as a parameter default (None stays 'not set')."""
    if isinstance(default, tuple):
        default = list(default)
    if isinstance(default, (dict,)):
        import yaml

        return yaml.safe_dump(default, default_flow_style=True).strip()
    if hasattr(default, "value") and not isinstance(default, (str, int, float, bool)):
        return default.value  # Enum
    return default


def format_validation_error(err: ValidationError, prefix: str = "") -> str:
    """'parameter 'a.b': reason; …' from a pydantic error."""
    parts = []
    for e in err.errors():
        name = ".".join(str(p) for p in e.get("loc", ()) if not isinstance(p, int)) or "(config)"
        msg = e.get("msg", "invalid").removeprefix("Value error, ")
        parts.append(f"parameter '{prefix}{name}': {msg} (got {e.get('input')!r})"[:400])
    return "; ".join(parts)


def validate_config(model: type[M], values: dict[str, Any], prefix: str = "") -> M:
    """Validate a flat {dotted name: value} mapping; ConfigError names each bad parameter."""
    clean = {k: v for k, v in values.items() if v is not None}
    try:
        return model.model_validate(unflatten(clean))
    except ValidationError as err:
        first = err.errors()[0].get("loc", ("",))
        raise ConfigError(format_validation_error(err, prefix), parameter=str(first[0]) if first else None) from None


def declare_config(node: Node, model: type[BaseModel], prefix: str = "") -> list[str]:
    """Declare one ROS parameter per (flattened) model field; returns the parameter names."""
    names = []
    for key, default in _flatten_defaults(model).items():
        name = prefix + key
        desc = ParameterDescriptor(dynamic_typing=True, description=_describe(model, key))
        value = _ros_value(default)
        if isinstance(value, list) and not value:
            value = None  # rclpy cannot type an empty list; 'not set' falls back to the model default
        node.declare_parameter(name, value, desc)
        names.append(name)
    return names


def _describe(model: type[BaseModel], dotted: str) -> str:
    cur: Any = model
    field = None
    for part in dotted.split("."):
        field = cur.model_fields.get(part)
        if field is None:
            return ""
        cur = field.annotation
    return (field.description or "") if field else ""


def read_config(node: Node, model: type[M], prefix: str = "", overrides: dict[str, Any] | None = None) -> M:
    """Read the declared parameters into the model (overrides win), raising ConfigError if invalid."""
    values = {}
    for key in _flatten_defaults(model):
        p = node.get_parameter(prefix + key)
        values[key] = None if p.type_ == Parameter.Type.NOT_SET else p.value
    if overrides:
        values.update(overrides)
    return validate_config(model, values, prefix)


def load_config(
    node: Node,
    model: type[M],
    prefix: str = "",
    on_change: Callable[[M], None] | None = None,
) -> M:
    """Declare, read and validate; afterwards, `ros2 param set` is validated the same way.

    With `on_change`, a change that validates is applied by calling it with the new config;
    without it, changes are refused with a reason (the node reads its parameters once at start).
    """
    declare_config(node, model, prefix)
    config = read_config(node, model, prefix)
    known = set(_flatten_defaults(model))

    def _on_set(params: list[Parameter]) -> SetParametersResult:
        mine = {
            p.name[len(prefix) :]: p.value
            for p in params
            if p.name.startswith(prefix) and p.name[len(prefix) :] in known
        }
        if not mine:
            return SetParametersResult(successful=True)
        if on_change is None:
            return SetParametersResult(
                successful=False,
                reason=f"{', '.join(sorted(mine))}: read at start-up only; restart the node to change",
            )
        try:
            new = read_config(node, model, prefix, overrides=mine)
        except ConfigError as err:
            return SetParametersResult(successful=False, reason=str(err))
        try:
            on_change(new)
        except Exception as err:  # noqa: BLE001 - the node refused the change; keep running on the old config
            return SetParametersResult(successful=False, reason=f"not applied: {err}")
        return SetParametersResult(successful=True)

    node.add_on_set_parameters_callback(_on_set)
    check_override_names(node)
    refuse_undeclared_sets(node)
    return config


def node_fqn(node: Node) -> str:
    ns = node.get_namespace().rstrip("/")
    return f"{ns}/{node.get_name()}"


def _tolerated(name: str) -> bool:
    return name in SITE_WIDE or name in ROS_OWN or name.startswith(ROS_OWN_PREFIXES)


def unknown_name_message(node: Node, names: list[str]) -> str:
    """ "node /cam0/camera_node: unknown parameter 'sourse' (did you mean 'source'?)" for each name."""
    declared = sorted(n for n in node._parameters if not _tolerated(n))
    parts = []
    for name in names:
        close = difflib.get_close_matches(name, declared, n=3, cutoff=0.6)
        hint = f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else " (not a parameter of this node)"
        parts.append(f"unknown parameter '{name}'{hint}")
    return f"node {node_fqn(node)}: " + "; ".join(parts)


def check_override_names(node: Node) -> None:
    """Raise ConfigError for overrides (params files, -p) whose names this node never declared.

    rclpy keeps the overrides meant for this node (exact name, namespace wildcards, `/**`) in
    `Node._parameter_overrides`; nothing public lists them.
    """
    overrides = getattr(node, "_parameter_overrides", None) or {}
    unknown = sorted(n for n in overrides if not node.has_parameter(n) and not _tolerated(n))
    if unknown:
        raise ConfigError(unknown_name_message(node, unknown), parameter=unknown[0])


class UnknownParameterError(ParameterNotDeclaredException):
    """ParameterNotDeclaredException whose text helps: the node, the name, the closest names.

    rclpy's parameter service turns this exception into the SetParameters reply's reason, which
    `ros2 param set` prints.
    """

    def __init__(self, message: str, names: list[str]) -> None:
        Exception.__init__(self, message)
        self.parameters = names


def refuse_undeclared_sets(node: Node) -> None:
    """`ros2 param set` of an undeclared name: refused with the closest declared names.

    A pre-set callback runs before rclpy's own undeclared check, so it can raise the helpful error
    in its place (the result is the same refusal, with a better reason).
    """
    if getattr(node, "_allow_undeclared_parameters", False) or getattr(node, "_nv_refuses_undeclared", False):
        return

    def _pre_set(params: list[Parameter]) -> list[Parameter]:
        unknown = [p.name for p in params if not node.has_parameter(p.name)]
        if unknown:
            raise UnknownParameterError(unknown_name_message(node, unknown), unknown)
        return params

    node.add_pre_set_parameters_callback(_pre_set)
    node._nv_refuses_undeclared = True  # type: ignore[attr-defined]  # once per node even if load_config runs twice
