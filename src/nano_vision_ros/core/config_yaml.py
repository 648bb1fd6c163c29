"""YAML configuration files validated by pydantic, with every problem named by file and line.

One helper for every YAML configuration the project reads (the site file, task profiles, event
rules…), so a misspelled key is an error that points at the line, not a silent default:

    doc = load_yaml(path)                         # keeps the line of every key and item
    cfg = validate_yaml(MyModel, doc)             # ConfigError listing every problem at once

A problem reads ``site.yaml:12: key 'flavour' unknown (did you mean 'flavor'?)`` or
``site.yaml:7: 'cameras.0.name': not a valid ROS name``. The model must forbid extra keys
(``model_config = ConfigDict(extra="forbid")``) for unknown keys to be found.

For YAML held inside another file (the events node's ``rules`` parameter is a YAML string in a
params file), give ``source`` (the file to name) and ``line_offset`` (the line the string starts
after) to ``load_yaml(text=…)`` so the lines point into the outer file. ``problems`` returns the
lines without raising, for callers that collect problems of several files (``nano-vision check``).
A union of models gives one clean line per problem when it is discriminated
(``Annotated[A | B, Field(discriminator="type")]``); a plain union reports every member's complaint.
"""

from __future__ import annotations

import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from nano_vision_ros.core.errors import ConfigError

M = TypeVar("M", bound=BaseModel)
Loc = tuple[Any, ...]


class ConfigProblems(ConfigError):
    """A ConfigError carrying each problem as its own ``file:line: …`` line (``.problems``)."""

    def __init__(self, problems: list[str], parameter: str | None = None) -> None:
        super().__init__("\n".join(problems), parameter)
        self.problems = list(problems)


@dataclass
class YamlDoc:
    """Parsed YAML plus the 1-based line of every mapping key and sequence item (by data path)."""

    data: Any
    source: str
    lines: dict[Loc, int] = field(default_factory=dict)
    duplicates: list[tuple[Loc, int]] = field(default_factory=list)  # (path of the key, line of the repeat)

    def line(self, loc: Loc) -> int:
        """The line of the deepest part of `loc` that exists in the file (union tags skipped)."""
        return self.lines.get(self.data_path(loc), self.lines.get((), 1))

    def data_path(self, loc: Loc) -> Loc:
        """`loc` (a pydantic error location) reduced to the keys/indices that exist in the data."""
        cur, path = self.data, []
        for part in loc:
            if (
                isinstance(cur, dict)
                and part in cur
                or isinstance(cur, list)
                and isinstance(part, int)
                and 0 <= part < len(cur)
            ):
                cur = cur[part]
            elif isinstance(cur, (dict, list)):
                continue  # a union member's tag or class name in the location, not a key
            else:
                break
            path.append(part)
        return tuple(path)

    def where(self, loc: Loc = ()) -> str:
        return f"{self.source}:{self.line(loc)}"


def load_yaml(
    path: str | Path | None = None, *, text: str | None = None, source: str | None = None, line_offset: int = 0
) -> YamlDoc:
    """Parse a YAML file (or `text`) keeping lines; ConfigError with file:line when it is not YAML."""
    if text is None:
        if path is None:
            raise TypeError("load_yaml needs a path or text")
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as err:
            raise ConfigError(f"{path}: cannot read: {err.strerror or err}") from None
    name = source or (str(path) if path is not None else "<string>")
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
        doc = YamlDoc(data, name)
        if node is not None:
            doc.lines[()] = node.start_mark.line + 1 + line_offset
            _walk(loader, node, (), doc, line_offset)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = f":{mark.line + 1 + line_offset}" if mark is not None else ""
        what = getattr(err, "problem", None) or str(err)
        raise ConfigProblems([f"{name}{line}: not valid YAML: {what}"]) from None
    finally:
        loader.dispose()
    return doc


def _walk(loader: yaml.SafeLoader, node: yaml.Node, path: Loc, doc: YamlDoc, offset: int) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: set[Any] = set()
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                continue  # complex keys: no configuration uses them
            key = loader.construct_object(key_node, deep=True)
            here = (*path, key)
            if key in seen:
                doc.duplicates.append((here, key_node.start_mark.line + 1 + offset))
            seen.add(key)
            doc.lines[here] = key_node.start_mark.line + 1 + offset
            _walk(loader, value_node, here, doc, offset)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            where = (*path, i)
            doc.lines[where] = item.start_mark.line + 1 + offset
            _walk(loader, item, where, doc, offset)


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'a': {'b': 1}} -> {'a.b': 1}: nested mappings as the dotted names ROS parameters use."""
    out: dict[str, Any] = {}
    for k, v in data.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def unflatten(flat: dict[str, Any]) -> dict[str, Any]:
    """{'a.b': 1} -> {'a': {'b': 1}}: dotted parameter names back into the nested model's shape."""
    nested: dict[str, Any] = {}
    for key, value in flat.items():
        cur = nested
        parts = key.split(".")
        for p in parts[:-1]:
            cur = cur.setdefault(p, {})
        cur[parts[-1]] = value
    return nested


def _members(ann: Any) -> list[Any]:
    """The alternatives of a Union / Optional / Annotated annotation (itself otherwise)."""
    origin = typing.get_origin(ann)
    if origin is typing.Annotated:
        return _members(typing.get_args(ann)[0])
    if origin is typing.Union or origin is types.UnionType:
        return [m for a in typing.get_args(ann) for m in _members(a)]
    return [ann]


def _fields_at(model: type[BaseModel] | None, loc: Loc) -> list[str]:
    """The field names of the model that a location (minus its last part) points into."""
    if model is None:
        return []
    current: list[Any] = [model]
    for part in loc:
        nxt: list[Any] = []
        for ann in (m for a in current for m in _members(a)):
            origin = typing.get_origin(ann)
            if isinstance(ann, type) and issubclass(ann, BaseModel):
                if isinstance(part, str) and part in ann.model_fields:
                    nxt.append(ann.model_fields[part].annotation)
                elif part == ann.__name__ or _is_tag(ann, part):
                    nxt.append(ann)  # the union member pydantic names in the location
            elif origin in (list, tuple, set, frozenset) and isinstance(part, int):
                nxt.extend(typing.get_args(ann)[:1])
            elif origin is dict:
                nxt.extend(typing.get_args(ann)[1:2])
        current = nxt or current  # an unknown part (a tag we cannot place): stay where we are
    names: list[str] = []
    for ann in (m for a in current for m in _members(a)):
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            names += [n for n in ann.model_fields if n not in names]
    return names


def _is_tag(model: type[BaseModel], part: Any) -> bool:
    """Whether `part` is the Literal value of one of the model's fields (a discriminator tag)."""
    for f in model.model_fields.values():
        if typing.get_origin(f.annotation) is typing.Literal and part in typing.get_args(f.annotation):
            return True
    return False


def _dotted(loc: Loc) -> str:
    return ".".join(str(p) for p in loc)


def problems(err: ValidationError, doc: YamlDoc, model: type[BaseModel] | None = None, prefix: Loc = ()) -> list[str]:
    """One ``file:line: …`` line per error of `err`; `prefix` is where the validated data sits in `doc`."""
    out: list[str] = []
    for e in err.errors():
        loc = (*prefix, *e.get("loc", ()))
        where = doc.where(loc)
        msg = str(e.get("msg", "invalid")).removeprefix("Value error, ")
        if e.get("type") == "extra_forbidden":
            key = loc[-1]
            close = difflib.get_close_matches(str(key), _fields_at(model, tuple(e["loc"][:-1])), n=2, cutoff=0.6)
            hint = f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""
            inside = doc.data_path(loc[:-1])
            at = f" in '{_dotted(inside)}'" if inside else ""
            out.append(f"{where}: key '{key}'{at} unknown{hint}")
        elif e.get("type") in ("union_tag_invalid", "union_tag_not_found"):
            ctx = e.get("ctx") or {}
            tags = [t.strip(" '") for t in str(ctx.get("expected_tags", "")).split(",") if t.strip(" '")]
            name = _dotted(doc.data_path(loc) + (ctx.get("discriminator", "type").strip("'"),))
            if e["type"] == "union_tag_not_found":
                out.append(f"{where}: key '{name}' missing" + (f" (one of: {', '.join(tags)})" if tags else ""))
            else:
                close = difflib.get_close_matches(str(ctx.get("tag")), tags, n=2, cutoff=0.6)
                hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
                out.append(f"{where}: '{name}': unknown value {ctx.get('tag')!r} ({hint}one of: {', '.join(tags)})")
        elif e.get("type") == "missing":
            out.append(f"{where}: key '{_dotted(doc.data_path(loc[:-1]) + loc[-1:])}' missing")
        elif e.get("loc"):
            out.append(f"{where}: '{_dotted(doc.data_path(loc))}': {msg}")
        else:
            out.append(f"{where}: {msg}")
    return out


def duplicate_problems(doc: YamlDoc) -> list[str]:
    """YAML keeps the last of two equal keys without a word; name each repeat."""
    return [
        f"{doc.source}:{line}: key '{_dotted(loc)}' given twice (the later one wins)" for loc, line in doc.duplicates
    ]


def validate_yaml(model: type[M], doc: YamlDoc, data: Any = None, *, parameter: str | None = None) -> M:
    """`model` from the document (or from `data` built from it); ConfigProblems with every problem."""
    found = duplicate_problems(doc)
    try:
        result = model.model_validate(doc.data if data is None else data)
    except ValidationError as err:
        found += problems(err, doc, model)
    if found:
        raise ConfigProblems(sorted(found, key=lambda p: _line_of(p, doc.source)), parameter)
    return result


def _line_of(problem: str, source: str) -> int:
    head = problem[len(source) + 1 :].split(":", 1)[0]
    return int(head) if head.isdigit() else 0
