"""dlib's face ResNet (``dlib_face_recognition_resnet_model_v1.dat``) as an ONNX graph.

Why: dlib-bin runs that network without BLAS at 70-120 ms a face on a small CPU; the same weights
in ONNX Runtime (MLAS kernels, all cores) cost a fraction of it and give the same 128-d vectors
(float rounding apart), so galleries enrolled with dlib keep working. No converter exists for
dlib nets outside dlib's C++ tools, so this reads dlib's serialisation directly: each layer writes
its subnetwork first, then its own name string and fields, so the layers of the file come in
forward order. Only the layers that network uses are understood (con, affine, relu, max_pool,
avg_pool, add_prev, fc); anything else is a ``ModelError``.

Graph input: ``chip`` (N, 3, 150, 150) float32, RGB, dlib's normalisation ``(p - mean) / 256``
already applied (``chip_tensor``); output ``descriptor`` (N, 128), raw like dlib's.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nano_vision_ros.core.errors import ModelError

log = logging.getLogger(__name__)

#: dlib's input_rgb_image_sized<150> defaults (the file carries them too; these are checked against it)
CHIP_SIZE = 150
_LAYER = re.compile(
    rb"(input_rgb_image_sized|con_\d|affine_|relu_|max_pool_\d|avg_pool_\d|add_prev_|fc_\d|"
    rb"bn_\d?|dropout_|multiply_|prelu_|sig_|htan_|softmax_)"
)


@dataclass
class _Layer:
    kind: str
    params: np.ndarray | None = None
    ints: list[int] = field(default_factory=list)


class _Reader:
    """dlib's stream primitives: integers as (size|sign) byte + little-endian bytes, floats as
    (mantissa, exponent) integers, tensors as version 2 + 4 integer dims + raw little-endian float32."""

    def __init__(self, data: bytes, pos: int) -> None:
        self.b, self.p = data, pos

    def int(self) -> int:
        h = self.b[self.p]
        n = h & 0x0F
        v = int.from_bytes(self.b[self.p + 1 : self.p + 1 + n], "little")
        self.p += 1 + n
        return -v if h & 0x80 else v

    def float(self) -> float:
        m, e = self.int(), self.int()
        return float(m) * 2.0**e

    def tensor(self) -> np.ndarray:
        version = self.int()
        if version != 2:
            raise ModelError(f"dlib tensor version {version} at byte {self.p} (only 2 is known)")
        dims = [self.int() for _ in range(4)]
        n = int(np.prod(dims))
        out = np.frombuffer(self.b, "<f4", n, self.p).astype(np.float32)
        self.p += 4 * n
        return out


def read_layers(dat: bytes) -> tuple[np.ndarray, list[_Layer]]:
    """The input's channel means and the layers in forward order."""
    layers: list[_Layer] = []
    mean = None
    pos = 0
    while True:
        m = _LAYER.search(dat, pos)
        if m is None:
            break
        name = m.group(0).decode()
        # a layer name is a length-prefixed string: the byte before it is its length
        if m.start() < 2 or dat[m.start() - 1] != len(name) or dat[m.start() - 2] != 1:
            pos = m.start() + 1
            continue
        r = _Reader(dat, m.end())
        kind = name.rstrip("_0123456789")
        if kind == "input_rgb_image_sized":
            mean = np.array([r.float(), r.float(), r.float()], np.float32)
            size = (r.int(), r.int())
            if size != (CHIP_SIZE, CHIP_SIZE):
                raise ModelError(f"dlib net input is {size}, expected {CHIP_SIZE}x{CHIP_SIZE}")
            layers.append(_Layer(kind))
        elif kind == "con":
            params = r.tensor()
            layers.append(_Layer(kind, params, [r.int() for _ in range(7)]))  # filters, nr, nc, sy, sx, py, px
        elif kind == "affine":
            layers.append(_Layer(kind, r.tensor()))
        elif kind in ("max_pool", "avg_pool"):
            layers.append(_Layer(kind, None, [r.int() for _ in range(6)]))  # nr, nc, sy, sx, py, px
        elif kind == "fc":
            outputs, inputs = r.int(), r.int()
            params = r.tensor()
            if params.size != outputs * inputs:
                raise ModelError(f"dlib fc layer with a bias ({params.size} params) is not supported")
            layers.append(_Layer(kind, params, [outputs, inputs]))
        elif kind in ("relu", "add_prev"):
            layers.append(_Layer(kind))
        else:
            raise ModelError(f"dlib layer {name!r} is not supported by the ONNX conversion")
        pos = r.p
    if mean is None or not layers:
        raise ModelError("not a dlib face recognition network (no input_rgb_image_sized layer found)")
    return mean, layers


def build_onnx(mean: np.ndarray, layers: list[_Layer]) -> Any:
    """The ONNX model of the layer list (ResNet blocks recognised by their tag/skip structure)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes: list[Any] = []
    inits: list[Any] = []
    count = [0]

    def name(prefix: str) -> str:
        count[0] += 1
        return f"{prefix}_{count[0]}"

    def const(arr: np.ndarray, prefix: str) -> str:
        n = name(prefix)
        inits.append(numpy_helper.from_array(np.ascontiguousarray(arr), n))
        return n

    def op(kind: str, inputs: list[str], **attrs: Any) -> str:
        out = name(kind.lower())
        nodes.append(helper.make_node(kind, inputs, [out], **attrs))
        return out

    def pad_to(x: str, shape: tuple[int, int, int], target: tuple[int, int, int]) -> str:
        # dlib's add_prev adds tensors of different sizes as if the smaller were zero-filled
        # at the end of each dimension
        if shape == target:
            return x
        pads = [0, 0, 0, 0] + [0, target[0] - shape[0], target[1] - shape[1], target[2] - shape[2]]
        return op("Pad", [x, const(np.array(pads, np.int64), "pads")], mode="constant")

    x = "chip"
    shape = (3, CHIP_SIZE, CHIP_SIZE)  # C, H, W
    block_in, block_shape = x, shape
    pending_skip: tuple[str, tuple[int, int, int]] | None = None
    kinds = [layer.kind for layer in layers]
    for i, layer in enumerate(layers):
        nxt = kinds[i + 1] if i + 1 < len(kinds) else ""
        if layer.kind == "input_rgb_image_sized":
            continue
        if layer.kind == "con":
            assert layer.params is not None
            nf, kh, kw, sy, sx, py, px = layer.ints
            cin = shape[0]
            w = layer.params[: nf * cin * kh * kw].reshape(nf, cin, kh, kw)
            b = layer.params[nf * cin * kh * kw :]
            if b.size not in (0, nf):
                raise ModelError(f"dlib con layer: {layer.params.size} params do not fit {nf}x{cin}x{kh}x{kw}")
            ins = [x, const(w, "w")] + ([const(b, "b")] if b.size else [])
            x = op("Conv", ins, kernel_shape=[kh, kw], strides=[sy, sx], pads=[py, px, py, px])
            shape = (nf, (shape[1] + 2 * py - kh) // sy + 1, (shape[2] + 2 * px - kw) // sx + 1)
        elif layer.kind == "affine":
            assert layer.params is not None
            k = layer.params.size // 2
            if k != shape[0]:
                raise ModelError(f"dlib affine layer of {k} channels after {shape[0]}")
            g = layer.params[:k].reshape(1, k, 1, 1)
            be = layer.params[k:].reshape(1, k, 1, 1)
            x = op("Add", [op("Mul", [x, const(g, "gamma")]), const(be, "beta")])
        elif layer.kind == "relu":
            x = op("Relu", [x])
            if kinds[i - 1] in ("add_prev", "max_pool"):  # a block ends here: the next one starts (tag1)
                block_in, block_shape = x, shape
        elif layer.kind in ("max_pool", "avg_pool"):
            nr, nc, sy, sx, py, px = layer.ints
            if layer.kind == "avg_pool" and nr == 0 and nc == 0:  # avg_pool_everything
                x = op("GlobalAveragePool", [x])
                shape = (shape[0], 1, 1)
            elif nxt == "add_prev":  # the shortcut of a down-sampling block: pools the block's input
                s = op("AveragePool", [block_in], kernel_shape=[nr, nc], strides=[sy, sx], pads=[py, px, py, px])
                sh = (
                    block_shape[0],
                    (block_shape[1] + 2 * py - nr) // sy + 1,
                    (block_shape[2] + 2 * px - nc) // sx + 1,
                )
                pending_skip = (s, sh)
            else:
                kind = "MaxPool" if layer.kind == "max_pool" else "AveragePool"
                x = op(kind, [x], kernel_shape=[nr, nc], strides=[sy, sx], pads=[py, px, py, px])
                shape = (shape[0], (shape[1] + 2 * py - nr) // sy + 1, (shape[2] + 2 * px - nc) // sx + 1)
                if layer.kind == "max_pool" and nxt != "relu":
                    block_in, block_shape = x, shape
        elif layer.kind == "add_prev":
            skip, sshape = pending_skip or (block_in, block_shape)
            pending_skip = None
            target = (max(shape[0], sshape[0]), max(shape[1], sshape[1]), max(shape[2], sshape[2]))
            x = op("Add", [pad_to(x, shape, target), pad_to(skip, sshape, target)])
            shape = target
        elif layer.kind == "fc":
            outputs, inputs = layer.ints
            assert layer.params is not None
            if inputs != shape[0] * shape[1] * shape[2]:
                raise ModelError(f"dlib fc layer takes {inputs} inputs, the net gives {shape}")
            x = op("MatMul", [op("Flatten", [x], axis=1), const(layer.params.reshape(inputs, outputs), "fc")])
    nodes[-1].output[0] = "descriptor"
    graph = helper.make_graph(
        nodes,
        "dlib_face_recognition_resnet_model_v1",
        [helper.make_tensor_value_info("chip", TensorProto.FLOAT, ["N", 3, CHIP_SIZE, CHIP_SIZE])],
        [helper.make_tensor_value_info("descriptor", TensorProto.FLOAT, ["N", layers[-1].ints[0]])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="nano_vision_ros")
    model.ir_version = 7  # loadable by ONNX Runtime 1.15 (the oldest declared)
    model.metadata_props.add(key="chip_mean_rgb", value=",".join(f"{v:.6f}" for v in mean))
    onnx.checker.check_model(model)
    return model


def convert(dat_path: str | os.PathLike[str], onnx_path: str | os.PathLike[str]) -> np.ndarray:
    """Write the ONNX model of `dat_path` to `onnx_path` (atomically); returns the chip mean (RGB)."""
    import onnx

    dat = Path(dat_path).read_bytes()
    mean, layers = read_layers(dat)
    model = build_onnx(mean, layers)
    out = Path(onnx_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(f".tmp{os.getpid()}")
    onnx.save(model, str(tmp))
    os.replace(tmp, out)
    log.info("converted %s to %s (%d layers)", dat_path, out, len(layers))
    return mean


def cached_onnx(dat_path: str | os.PathLike[str], cache_dir: str | os.PathLike[str]) -> tuple[Path, np.ndarray]:
    """The converted model in `cache_dir`, keyed by the .dat file's digest (converted once, < 1 s)."""
    from nano_vision_ros.core.hashing import sha256_file

    digest = sha256_file(str(dat_path))[:16]
    out = Path(cache_dir) / f"{Path(dat_path).stem}.{digest}.onnx"
    if out.is_file():
        return out, input_mean(Path(dat_path).read_bytes())
    return out, convert(dat_path, out)


def input_mean(dat: bytes) -> np.ndarray:
    """The RGB means of the net's input layer (subtracted before the /256)."""
    i = dat.find(b"\x15input_rgb_image_sized")
    if i < 0:
        raise ModelError("not a dlib face recognition network (no input_rgb_image_sized layer found)")
    r = _Reader(dat, i + 22)
    return np.array([r.float(), r.float(), r.float()], np.float32)


def chip_tensor(chips: list[np.ndarray], mean: np.ndarray) -> np.ndarray:
    """RGB uint8 chips (150x150x3, dlib.get_face_chips) -> the net's input, dlib's normalisation."""
    x = (np.stack(chips).astype(np.float32) - mean) / 256.0
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))
