"""Inference backends: ONNX Runtime / OpenCV on real models, error cases, and the TensorRT pieces that
run without TensorRT (engine cache, API-generation dispatch, shape handling)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from nano_vision_ros.core.errors import ConfigError, ModelError, RuntimeMissingError
from nano_vision_ros.core.inference import backend_for, create_backend, engine_cache, trt_compat

REPO = Path(__file__).resolve().parent.parent
NANODET = REPO / "models" / "nanodet_m_416_coco.onnx"


def test_model_file_provenance():
    md = (REPO / "models" / "nanodet_m_416_coco.onnx.md").read_text()
    assert engine_cache.sha256_file(NANODET) in md


@pytest.mark.parametrize("backend", ["onnxruntime", "opencv"])
def test_backends_agree_on_nanodet(backend):
    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, (1, 3, 416, 416)).astype(np.float32)
    ref = create_backend(str(NANODET), "onnxruntime", device="cpu")
    be = create_backend(str(NANODET), backend)
    assert be.name == backend
    assert [o.name for o in be.outputs] == [o.name for o in ref.outputs]
    assert be.inputs[0].shape == (1, 3, 416, 416)
    for a, b in zip(be.infer(x), ref.infer(x)):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, atol=2e-3)
    be.close()
    ref.close()


def test_backend_follows_file_suffix():
    assert backend_for("a/b.onnx") == "onnxruntime"
    assert backend_for("x.engine") == "tensorrt" and backend_for("x.TRT") == "tensorrt"
    assert backend_for("x.engine", "opencv") == "opencv"
    with pytest.raises(ConfigError, match="cannot tell the backend"):
        backend_for("model.pt")
    with pytest.raises(ConfigError, match="unknown inference backend"):
        backend_for("m.onnx", "tflite")


def test_missing_and_corrupt_models(tmp_path):
    with pytest.raises(ModelError, match="not found"):
        create_backend(str(tmp_path / "absent.onnx"))
    bad = tmp_path / "corrupt.onnx"
    bad.write_bytes(b"\x08\x07this is not a protobuf" * 10)
    with pytest.raises(ModelError, match="could not load|not a valid ONNX"):
        create_backend(str(bad))
    with pytest.raises(ModelError):
        create_backend(str(bad), "opencv")


def test_tensorrt_missing_is_a_clear_error(tmp_path):
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"\0" * 64)
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        with pytest.raises(RuntimeMissingError, match="TensorRT Python bindings are not installed"):
            create_backend(str(engine))
    else:  # pragma: no cover - only on Jetson
        with pytest.raises((ModelError, RuntimeMissingError)):
            create_backend(str(engine))


def test_onnxruntime_cuda_missing_is_a_clear_error():
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has CUDA")  # only the CPU wheel is installed in CI
    with pytest.raises(RuntimeMissingError, match="no CUDAExecutionProvider"):
        create_backend(str(NANODET), "onnxruntime", device="cuda")


def test_no_optional_runtime_imported_by_the_package():
    code = (
        "import sys, nano_vision_ros.core.inference as i, nano_vision_ros.core.detection.profiles;"
        "print(sorted(m for m in ('tensorrt','pycuda','cupy','onnxruntime') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"


# --- engine cache -------------------------------------------------------------------------------


def _key(**kw):
    base = {"model_sha256": "ab" * 32, "trt_version": "8.2.1.8", "gpu_name": "NVIDIA Tegra X1", "precision": "fp16"}
    base.update(kw)
    return engine_cache.EngineKey(**base)


def test_engine_key_and_path():
    k = _key()
    p = engine_cache.engine_path("/c", "/m/helmet_yolov5s.onnx", k)
    assert p.parent == Path("/c")
    assert p.name.startswith("helmet_yolov5s.fp16.nvidia-tegra-x1.trt8.2.1.8.") and p.suffix == ".engine"
    assert engine_cache.engine_path("/c", "/m/helmet_yolov5s.onnx", _key()) == p  # deterministic
    for change in (
        {"trt_version": "10.3.0"},
        {"gpu_name": "Orin"},
        {"precision": "int8"},
        {"model_sha256": "cd" * 32},
        {"workspace_mb": 256},
        {"input_shapes": {"images": (1, 3, 640, 640)}},
    ):
        assert _key(**change).digest() != k.digest(), change
    with pytest.raises(ValueError, match="precision"):
        _key(precision="fp8")


def test_engine_cache_store_lookup_and_stale(tmp_path):
    model = tmp_path / "m.onnx"
    model.write_bytes(b"onnx bytes")
    k = _key(model_sha256=engine_cache.sha256_file(model))
    assert engine_cache.lookup(tmp_path / "cache", model, k) is None
    p = engine_cache.store(tmp_path / "cache", model, k, b"ENGINE", built_s=1.0)
    assert engine_cache.lookup(tmp_path / "cache", model, k) == p and p.read_bytes() == b"ENGINE"
    assert engine_cache.lookup(tmp_path / "cache", model, _key(trt_version="10.3.0")) is None
    # sidecar of another key at the same path (tampered / hash clash): not trusted
    engine_cache.write_sidecar(p, _key(gpu_name="Orin"))
    assert engine_cache.lookup(tmp_path / "cache", model, k) is None
    engine_cache.write_sidecar(p, k)
    p.write_bytes(b"")  # interrupted write
    assert engine_cache.lookup(tmp_path / "cache", model, k) is None
    assert not list((tmp_path / "cache").glob("*.tmp"))


def test_engine_cache_dir_env(monkeypatch, tmp_path):
    monkeypatch.setenv("NANO_VISION_ENGINE_CACHE", str(tmp_path))
    assert engine_cache.default_cache_dir() == tmp_path
    monkeypatch.delenv("NANO_VISION_ENGINE_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", "/xdg")
    assert engine_cache.default_cache_dir() == Path("/xdg/nano_vision_ros/engines")


# --- TensorRT API generations: stand-ins with exactly the attributes each generation has ----------


class _Enum:
    def __init__(self, name):
        self.name = name


class Trt8Engine:
    """TensorRT 8.0/8.2 (JetPack 4.6): binding-index API only."""

    def __init__(self):
        self.b = [("images", (-1, 3, 640, 640), "FLOAT", True), ("output0", (-1, 25200, 85), "HALF", False)]
        self.num_bindings = len(self.b)

    def get_binding_name(self, i):
        return self.b[i][0]

    def get_binding_shape(self, i):
        return self.b[i][1]

    def get_binding_dtype(self, i):
        return _Enum(self.b[i][2])

    def binding_is_input(self, i):
        return self.b[i][3]

    def get_profile_shape(self, profile, i):
        return [(1, 3, 640, 640), (1, 3, 640, 640), (4, 3, 640, 640)]


class Trt8Context:
    def __init__(self):
        self.shapes, self.calls = {}, []

    def set_binding_shape(self, i, shape):
        self.shapes[i] = shape
        return True

    def get_binding_shape(self, i):
        return (self.shapes.get(0, (1,))[0], 25200, 85)

    def execute_async_v2(self, bindings, stream_handle):
        self.calls.append(("v2", list(bindings), stream_handle))
        return True


class Trt10Engine:
    """TensorRT 10 (JetPack 6): named tensors only."""

    def __init__(self):
        self.t = {
            "images": ((1, 3, -1, -1), "FLOAT", "INPUT"),
            "num_dets": ((1, 1), "INT32", "OUTPUT"),
            "boxes": ((1, 100, 4), "FLOAT", "OUTPUT"),
        }
        self.num_io_tensors = len(self.t)

    def get_tensor_name(self, i):
        return list(self.t)[i]

    def get_tensor_shape(self, n):
        return self.t[n][0]

    def get_tensor_dtype(self, n):
        return _Enum(self.t[n][1])

    def get_tensor_mode(self, n):
        return _Enum(self.t[n][2])

    def get_tensor_profile_shape(self, n, p):
        return [(1, 3, 320, 320), (1, 3, 640, 640), (1, 3, 1280, 1280)]


class Trt10Context:
    def __init__(self):
        self.addr, self.shapes, self.calls = {}, {}, []

    def set_input_shape(self, n, s):
        self.shapes[n] = s
        return True

    def get_tensor_shape(self, n):
        return Trt10Engine().t[n][0]

    def set_tensor_address(self, n, a):
        self.addr[n] = a

    def execute_async_v3(self, stream_handle):
        self.calls.append(("v3", dict(self.addr), stream_handle))
        return True


def test_trt8_binding_api():
    eng, ctx = Trt8Engine(), Trt8Context()
    assert trt_compat.api_generation(eng) == 8
    io = trt_compat.list_io(eng)
    assert [(t.name, t.is_input, t.dtype) for t in io] == [("images", True, np.float32), ("output0", False, np.float16)]
    shape = trt_compat.resolve_shape(io[0].shape, None, trt_compat.profile_shapes(eng, io[0]))
    assert shape == (1, 3, 640, 640)
    trt_compat.set_input_shape(ctx, io[0], shape)
    assert ctx.shapes == {0: (1, 3, 640, 640)}
    assert trt_compat.output_shape(ctx, io[1]) == (1, 25200, 85)
    trt_compat.execute(ctx, io[::-1], [0x2000, 0x1000], 7)  # addresses land at binding indexes
    assert ctx.calls == [("v2", [0x1000, 0x2000], 7)]


def test_trt10_named_tensor_api():
    eng, ctx = Trt10Engine(), Trt10Context()
    assert trt_compat.api_generation(eng) == 10
    io = trt_compat.list_io(eng)
    assert [(t.name, t.is_input) for t in io] == [("images", True), ("num_dets", False), ("boxes", False)]
    assert io[1].dtype == np.int32
    prof = trt_compat.profile_shapes(eng, io[0])
    assert trt_compat.resolve_shape(io[0].shape, None, prof) == (1, 3, 640, 640)
    assert trt_compat.resolve_shape(io[0].shape, (1, 3, 416, 416), prof) == (1, 3, 416, 416)
    with pytest.raises(ModelError, match="outside the engine profile"):
        trt_compat.resolve_shape(io[0].shape, (1, 3, 2000, 2000), prof)
    trt_compat.set_input_shape(ctx, io[0], (1, 3, 416, 416))
    assert ctx.shapes == {"images": (1, 3, 416, 416)}
    trt_compat.execute(ctx, io, [1, 2, 3], 9)
    assert ctx.calls == [("v3", {"images": 1, "num_dets": 2, "boxes": 3}, 9)]


def test_shape_rules_and_bad_objects():
    assert trt_compat.resolve_shape((1, 3, 416, 416)) == (1, 3, 416, 416)
    with pytest.raises(ModelError, match="fixed at"):
        trt_compat.resolve_shape((1, 3, 416, 416), (1, 3, 640, 640))
    assert trt_compat.resolve_shape((-1, 3, 416, 416)) == (1, 3, 416, 416)
    with pytest.raises(ModelError, match="no optimisation profile"):
        trt_compat.resolve_shape((1, 3, -1, -1))
    with pytest.raises(ModelError, match="does not fit"):
        trt_compat.resolve_shape((-1, 3, 416, 416), (1, 3, 320, 320))
    with pytest.raises(ModelError, match="not a TensorRT engine"):
        trt_compat.api_generation(object())
    with pytest.raises(ModelError, match="unsupported TensorRT data type"):
        trt_compat.numpy_dtype(_Enum("COMPLEX"))
    assert trt_compat.numpy_dtype("DataType.HALF") == np.float16


def test_int8_calibration_preprocess_is_the_tasks():
    """INT8 calibration must see exactly what inference sees: the profile's pre-processing."""
    import cv2

    from nano_vision_ros.core.detection.profiles import build_detector, calibration_preprocess, load_profile

    prof = load_profile("coco_objects")
    img = cv2.imread(str(REPO.parent / "shared" / "samples" / "dog.jpg"))
    calib = calibration_preprocess(prof, str(NANODET))(img)
    det = build_detector(prof)
    ref, _ = det.preprocessor(img)
    np.testing.assert_array_equal(calib, ref)
    det.close()


def test_onnxruntime_threads_auto_and_no_spinning(monkeypatch):
    """Intra-op threads = usable cores // detectors on the machine (or the given count); the pools
    never spin between inferences unless asked (benchmark comparison only)."""
    from nano_vision_ros.core.inference import onnxruntime_backend as ob

    monkeypatch.setattr(ob, "usable_cores", lambda: 8)
    assert ob.auto_threads(0, 1) == 8 and ob.auto_threads(0, 3) == 2 and ob.auto_threads(0, 20) == 1
    assert ob.auto_threads(5, 3) == 5
    be = create_backend(str(NANODET), "onnxruntime", device="cpu", detectors=4)
    assert be.threads == 2 and not be.spinning
    opts = be.session.get_session_options()
    assert opts.intra_op_num_threads == 2
    assert opts.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert opts.get_session_config_entry("session.inter_op.allow_spinning") == "0"
    x = np.zeros((1, 3, 416, 416), np.float32)
    quiet = be.infer(x)
    spin = create_backend(str(NANODET), "onnxruntime", device="cpu", threads=1, spinning=True)
    assert spin.threads == 1
    assert spin.session.get_session_options().get_session_config_entry("session.intra_op.allow_spinning") == "1"
    for a, b in zip(quiet, spin.infer(x)):
        np.testing.assert_allclose(a, b, atol=1e-4)
    be.close()
    spin.close()
