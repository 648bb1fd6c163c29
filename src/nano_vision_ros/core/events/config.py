"""Rules configuration: read from a YAML string or file, per camera, every key checked.

YAML forms accepted by `parse_rules`::

    rules: [ {name: hardhat, type: no_hardhat}, ... ]          # every camera
    cameras:
      gate: {rules: [ {name: pit, type: intrusion, zone: {...}} ]}   # this camera only (replaces `rules`)

or a bare list of rules. Each rule is one of the typed models of `rules.py` (chosen by `type`);
a key that its type does not have is refused with the file and line and the closest names.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

from nano_vision_ros.core.config_yaml import (
    ConfigProblems,
    YamlDoc,
    duplicate_problems,
    load_yaml,
    problems,
)
from nano_vision_ros.core.errors import ConfigError
from nano_vision_ros.core.events.rules import Rule, RuleBase, Zone

__all__ = ["CameraRules", "EventsConfig", "Rule", "RuleBase", "Zone", "parse_rule", "parse_rules", "rules_from_doc"]


def _unique_names(v: list[RuleBase]) -> list[RuleBase]:
    names = [r.name for r in v]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"rule names used twice: {', '.join(dup)}")
    return v


class CameraRules(BaseModel):
    """One camera's own rules (they replace the common list)."""

    model_config = ConfigDict(extra="forbid")
    rules: list[Rule] = Field(default_factory=list)
    _unique = field_validator("rules")(_unique_names)


class _CameraShape(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rules: list[Any] = Field(default_factory=list)


class _FileShape(BaseModel):
    """The keys of a rules file; the rule lists are checked one by one as `CameraRules`."""

    model_config = ConfigDict(extra="forbid")
    rules: list[Any] = Field(default_factory=list)
    cameras: dict[str, _CameraShape] = Field(default_factory=dict)


@dataclass
class EventsConfig:
    """A checked rules file: the common rules and each camera's own list.

    Built by `rules_from_doc`, not one pydantic model: pydantic 2.0 (the oldest supported) cannot
    build a model that holds the rule union at two places."""

    rules: CameraRules
    cameras: dict[str, CameraRules]


def rules_from_doc(doc: YamlDoc) -> tuple[EventsConfig | None, list[str]]:
    """Check a rules document: (the config, []) or (None, every problem as ``file:line: …``).

    A bare list is the common rules (``rules:``)."""
    if doc.data is None:
        doc = YamlDoc({}, doc.source, doc.lines, doc.duplicates)
    if isinstance(doc.data, list):
        doc = YamlDoc(
            {"rules": doc.data},
            doc.source,
            {("rules", *k): v for k, v in doc.lines.items()},
            [(("rules", *k), line) for k, line in doc.duplicates],
        )
    found = duplicate_problems(doc)
    try:
        shape = _FileShape.model_validate(doc.data)
    except ValidationError as err:
        return None, found + problems(err, doc, _FileShape)
    lists: dict[tuple[Any, ...], CameraRules] = {}
    for prefix, rules in [((), shape.rules)] + [(("cameras", n), c.rules) for n, c in shape.cameras.items()]:
        try:
            lists[prefix] = CameraRules.model_validate({"rules": rules})
        except ValidationError as err:
            found += problems(err, doc, CameraRules, prefix=prefix)
    if found:
        return None, found
    return EventsConfig(rules=lists[()], cameras={p[1]: r for p, r in lists.items() if p}), []


_RULE = TypeAdapter(Rule)
_INLINE = "parameter 'rules'"  # the source named for rules given as a YAML string


def parse_rule(data: dict[str, Any]) -> RuleBase:
    """One rule from a mapping (raises pydantic's ValidationError)."""
    return _RULE.validate_python(data)


def parse_rules(text_or_path: str, camera: str) -> list[RuleBase]:
    """Rules for `camera` from a YAML string or a file path; ConfigError names what is wrong and where.

    The whole file is checked (every camera's rules), so a typo in another camera's list is an
    error here too; every problem is one ``file:line: …`` line (``core.config_yaml``).
    """
    from nano_vision_ros.core import paths

    stripped = text_or_path.strip()
    if stripped and "\n" not in stripped and stripped.endswith((".yaml", ".yml")):
        path = paths.resolve(stripped)
        if not Path(path).is_file():
            raise ConfigError(f"parameter 'rules': file not found: {stripped}", "rules")
        doc = _load(path=path)
    else:
        doc = _load(text=text_or_path, source=_INLINE)
    if doc.data is not None and not isinstance(doc.data, (dict, list)):
        raise ConfigError(
            f"{_named(ConfigProblems([doc.where()]))}: expected a mapping with `rules`/`cameras` or a list of rules",
            "rules",
        )
    cfg, found = rules_from_doc(doc)
    if cfg is None:
        raise _named(ConfigProblems(found)) from None
    return list(cfg.cameras[camera].rules if camera in cfg.cameras else cfg.rules.rules)


def _load(**kwargs: Any) -> YamlDoc:
    try:
        return load_yaml(**kwargs)
    except ConfigProblems as err:
        raise _named(err) from None


def _named(err: ConfigProblems) -> ConfigProblems:
    """Problems of a rules file start with the parameter they came from (inline ones name it already)."""
    return ConfigProblems([p if p.startswith(_INLINE) else f"{_INLINE}: {p}" for p in err.problems], "rules")
