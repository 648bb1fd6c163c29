"""A core options dataclass filled from a node's parameter model, without copying it field by field.

The node's pydantic model (what ROS parameters hold) and the core's dataclass (what the core needs)
share most field names; ``options_from`` takes every dataclass field the model has, and the
overrides for those that differ (units, derived values). A field added to both is passed on by itself.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

from pydantic import BaseModel

T = TypeVar("T")


def options_from(cls: type[T], model: BaseModel, **overrides: Any) -> T:
    """`cls(**{its fields that `model` has}, **overrides)`; `cls` is a dataclass."""
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    values = {k: getattr(model, k) for k in names if k in type(model).model_fields and k not in overrides}
    return cls(**values, **overrides)
