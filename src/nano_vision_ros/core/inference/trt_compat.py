"""TensorRT API generations behind one small adapter, so the backend runs on JetPack 4.6 and 6.

- TensorRT 8.x (JetPack 4.6: 8.0/8.2; JetPack 5: 8.5): bindings by index --
  ``num_bindings``, ``get_binding_name/shape/dtype``, ``binding_is_input``,
  ``context.set_binding_shape``, ``context.execute_async_v2(bindings, stream)``.
- TensorRT 10.x (JetPack 6): named tensors -- ``num_io_tensors``, ``get_tensor_name/shape/dtype/mode``,
  ``context.set_input_shape``, ``context.set_tensor_address``, ``context.execute_async_v3(stream)``.

(TensorRT 8.5/8.6 have both; the named-tensor API is preferred where present.) Everything here
takes the engine/context objects as arguments and touches only those attributes, so it is tested
with small stand-ins of each API generation without TensorRT installed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from nano_vision_ros.core.errors import ModelError

#: TensorRT DataType names -> numpy (``trt.nptype`` does the same where TensorRT is importable)
_DTYPES = {
    "FLOAT": np.float32,
    "HALF": np.float16,
    "INT8": np.int8,
    "INT32": np.int32,
    "INT64": np.int64,
    "BOOL": np.bool_,
    "UINT8": np.uint8,
    "BF16": np.float32,
    "FP8": np.uint8,
}


def api_generation(engine: Any) -> int:
    """10 for the named-tensor API (TRT >= 8.5 exposes it; the only one in 10), 8 for bindings."""
    if hasattr(engine, "num_io_tensors"):
        return 10
    if hasattr(engine, "num_bindings"):
        return 8
    raise ModelError("object is not a TensorRT engine (neither num_io_tensors nor num_bindings)")


def numpy_dtype(trt_dtype: Any) -> np.dtype:
    name = str(getattr(trt_dtype, "name", trt_dtype)).split(".")[-1].upper()
    if name not in _DTYPES:
        raise ModelError(f"unsupported TensorRT data type {trt_dtype}")
    return np.dtype(_DTYPES[name])


@dataclass
class IOTensor:
    name: str
    shape: tuple[int, ...]  # -1 for dynamic axes
    dtype: np.dtype
    is_input: bool
    index: int  # binding index (TRT 8) or I/O position (TRT 10)


def list_io(engine: Any) -> list[IOTensor]:
    gen = api_generation(engine)
    out = []
    if gen == 10:
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            mode = engine.get_tensor_mode(name)
            is_input = str(getattr(mode, "name", mode)).split(".")[-1].upper() == "INPUT"
            out.append(
                IOTensor(
                    name,
                    tuple(int(d) for d in engine.get_tensor_shape(name)),
                    numpy_dtype(engine.get_tensor_dtype(name)),
                    is_input,
                    i,
                )
            )
    else:
        for i in range(engine.num_bindings):
            out.append(
                IOTensor(
                    engine.get_binding_name(i),
                    tuple(int(d) for d in engine.get_binding_shape(i)),
                    numpy_dtype(engine.get_binding_dtype(i)),
                    bool(engine.binding_is_input(i)),
                    i,
                )
            )
    return out


def profile_shapes(engine: Any, io: IOTensor, profile: int = 0) -> tuple[tuple[int, ...], ...] | None:
    """(min, opt, max) of a dynamic input from the optimisation profile, or None if not dynamic."""
    if -1 not in io.shape:
        return None
    if api_generation(engine) == 10:
        shapes = engine.get_tensor_profile_shape(io.name, profile)
    else:
        shapes = engine.get_profile_shape(profile, io.index)
    return tuple(tuple(int(d) for d in s) for s in shapes)


def resolve_shape(
    shape: Sequence[int], requested: Sequence[int] | None = None, profile: tuple[tuple[int, ...], ...] | None = None
) -> tuple[int, ...]:
    """A concrete shape for a possibly dynamic one: requested (checked against the profile's min/max),
    else the profile's optimum, else batch 1 for a dynamic first axis."""
    shape = tuple(int(d) for d in shape)
    if -1 not in shape:
        if requested is not None and tuple(requested) != shape:
            raise ModelError(f"engine input is fixed at {list(shape)}, not {list(requested)}")
        return shape
    if requested is not None:
        req = tuple(int(d) for d in requested)
        if len(req) != len(shape) or any(s != -1 and s != r for s, r in zip(shape, req)):
            raise ModelError(f"requested input shape {list(req)} does not fit the engine's {list(shape)}")
        if profile is not None:
            lo, _, hi = profile
            if any(r < a or r > b for r, a, b in zip(req, lo, hi)):
                raise ModelError(
                    f"requested input shape {list(req)} is outside the engine profile {list(lo)}..{list(hi)}"
                )
        return req
    if profile is not None:
        return tuple(profile[1])
    if shape[0] == -1 and -1 not in shape[1:]:
        return (1, *shape[1:])
    raise ModelError(
        f"engine input has dynamic axes {list(shape)} and no optimisation profile; give input.width/height"
    )


def set_input_shape(context: Any, io: IOTensor, shape: Sequence[int]) -> None:
    if hasattr(context, "set_input_shape"):
        ok = context.set_input_shape(io.name, tuple(shape))
    else:
        ok = context.set_binding_shape(io.index, tuple(shape))
    if ok is False:
        raise ModelError(f"TensorRT refused input shape {list(shape)} for {io.name}")


def output_shape(context: Any, io: IOTensor) -> tuple[int, ...]:
    if hasattr(context, "get_tensor_shape"):
        return tuple(int(d) for d in context.get_tensor_shape(io.name))
    return tuple(int(d) for d in context.get_binding_shape(io.index))


def execute(context: Any, ios: list[IOTensor], addresses: list[int], stream_handle: int) -> None:
    """Enqueue one inference on `stream_handle` with device `addresses` in `ios` order."""
    if hasattr(context, "execute_async_v3"):
        for io, addr in zip(ios, addresses):
            context.set_tensor_address(io.name, int(addr))
        ok = context.execute_async_v3(stream_handle)
    else:
        bindings = [0] * len(ios)
        for io, addr in zip(ios, addresses):
            bindings[io.index] = int(addr)
        ok = context.execute_async_v2(bindings=bindings, stream_handle=stream_handle)
    if ok is False:
        raise RuntimeError("TensorRT execution failed (see the TensorRT log)")
