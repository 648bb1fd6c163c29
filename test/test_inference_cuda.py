"""CUDA parts of the TensorRT path (pycuda buffers, stream, context from a worker thread) and the GPU
pre-processing kernel against the CPU Preprocessor. They need an NVIDIA GPU plus pycuda / CuPy:
CI has neither (skipped there, with the reason); run on a Jetson or GPU box (docs/TENSORRT.md)."""

from __future__ import annotations

import threading

import cv2
import numpy as np
import pytest

from nano_vision_ros.core.detection.preprocess import Preprocessor


def _gpu_or_skip(module: str):
    mod = pytest.importorskip(module, reason=f"{module} not installed (CUDA machines only)")
    return mod


@pytest.fixture(scope="module")
def buffers():
    _gpu_or_skip("pycuda.driver")
    import pycuda.driver as cuda

    cuda.init()
    if cuda.Device.count() == 0:
        pytest.skip("no CUDA device")
    from nano_vision_ros.core.inference.cuda_mem import CudaBuffers

    b = CudaBuffers(0)
    yield b
    b.free()


def test_pycuda_buffers_round_trip_on_a_worker_thread(buffers):
    b = buffers
    with b.active():
        host = b.allocate("t", (1, 3, 8, 8), np.float32)
    assert host.shape == (1, 3, 8, 8) and b.address("t") != 0
    src = np.arange(192, dtype=np.float32).reshape(1, 3, 8, 8)
    result = {}

    def work():  # inference runs on the LatestWorker thread, not the loading thread
        with b.active():
            b.to_device("t", src)
            b.host["t"][:] = 0
            out = b.to_host("t")
            b.synchronize()
            result["out"] = out.copy()

    t = threading.Thread(target=work)
    t.start()
    t.join(30)
    np.testing.assert_array_equal(result["out"], src)


CASES = [
    {
        "width": 640,
        "height": 640,
        "resize": "letterbox",
        "channel_order": "rgb",
        "mean": (0, 0, 0),
        "std": (255, 255, 255),
    },
    {
        "width": 416,
        "height": 416,
        "resize": "resize",
        "channel_order": "bgr",
        "mean": (103.53, 116.28, 123.675),
        "std": (57.375, 57.12, 58.395),
    },
]


def _frame(samples):
    img = cv2.imread(str(samples / "dog.jpg"))
    assert img is not None
    return img


@pytest.mark.parametrize("case", CASES, ids=["letterbox_rgb", "resize_bgr_meanstd"])
def test_pycuda_preprocess_matches_cpu(buffers, samples, case):
    from nano_vision_ros.core.inference.cuda_preprocess import PycudaPreprocessor

    img = _frame(samples)
    b = buffers
    name = f"in_{case['width']}_{case['resize']}"
    with b.active():
        b.allocate(name, (1, 3, case["height"], case["width"]), np.float32)
    pp = PycudaPreprocessor(b, name, **{k: v for k, v in case.items()})
    with b.active():
        tr = pp(img)
        out = b.to_host(name).copy()
        b.synchronize()
    ref, rtr = Preprocessor(**case)(img)
    assert tr == rtr
    one_level = 1.0 / min(case["std"])
    diff = np.abs(out - ref)
    assert diff.max() <= 2 * one_level + 1e-5, diff.max()  # bilinear rounding: OpenCV uses fixed point
    assert diff.mean() < 0.5 * one_level


@pytest.mark.parametrize("case", CASES, ids=["letterbox_rgb", "resize_bgr_meanstd"])
def test_cupy_preprocess_matches_cpu(samples, case):
    cp = _gpu_or_skip("cupy")
    try:
        if cp.cuda.runtime.getDeviceCount() == 0:
            pytest.skip("no CUDA device")
    except cp.cuda.runtime.CUDARuntimeError:
        pytest.skip("no CUDA driver")
    from nano_vision_ros.core.inference.cuda_preprocess import CupyPreprocessor

    img = _frame(samples)
    args = {k: v for k, v in case.items()}
    t, tr = CupyPreprocessor(**args)(img)
    ref, rtr = Preprocessor(**case)(img)
    assert tr == rtr
    diff = np.abs(cp.asnumpy(t) - ref)
    one_level = 1.0 / min(case["std"])
    assert diff.max() <= 2 * one_level + 1e-5 and diff.mean() < 0.5 * one_level


def test_pipeline_with_device_preprocess_matches_cpu(buffers, samples):
    """The detector pipeline's GPU pre-processing path (DevicePreprocessMixin, shared with the
    TensorRT backend) on the real NanoDet model: the frame is pre-processed by the CUDA kernel
    into the device input buffer; the stand-in 'engine' downloads that buffer and runs ONNX Runtime
    on it. Detections must match the CPU pipeline's."""
    from pathlib import Path

    from nano_vision_ros.core.detection.profiles import build_detector, load_profile
    from nano_vision_ros.core.inference import create_backend
    from nano_vision_ros.core.inference.base import InferenceBackend
    from nano_vision_ros.core.inference.cuda_preprocess import DevicePreprocessMixin

    model = str(Path(__file__).resolve().parent.parent / "models" / "nanodet_m_416_coco.onnx")

    class CudaInputOrt(DevicePreprocessMixin, InferenceBackend):
        name = "cuda-input-ort"

        def __init__(self) -> None:
            self.ort = create_backend(model, "onnxruntime", device="cpu")
            self.inputs, self.outputs, self.metadata = self.ort.inputs, self.ort.outputs, {}
            self.buffers = buffers
            with buffers.active():
                buffers.allocate("input_1:0", (1, 3, 416, 416), np.float32)

        def _run_on_device(self):
            x = self.buffers.to_host("input_1:0")
            self.buffers.synchronize()
            return self.ort.infer(x)

        def infer(self, feeds):
            return self.ort.infer(feeds)

    prof = load_profile("coco_objects")
    cpu = build_detector(prof)
    img = _frame(samples)
    ref = cpu.detect(img)
    from nano_vision_ros.core.detection.decoders import make_decoder
    from nano_vision_ros.core.detection.labels import load_labels
    from nano_vision_ros.core.detection.pipeline import SingleStageDetector

    be = CudaInputOrt()
    gpu = SingleStageDetector(
        be,
        make_decoder("nanodet", be.outputs),
        load_labels("models/coco80.labels"),
        device_preprocess=True,
        score_threshold=prof.score_threshold,
        nms_threshold=prof.nms_threshold,
    )
    assert gpu.device_preprocess
    got = gpu.detect(img)
    assert [got.label_of(i) for i in range(len(got))] == [ref.label_of(i) for i in range(len(ref))]
    np.testing.assert_allclose(got.boxes, ref.boxes, atol=2.0)
    np.testing.assert_allclose(got.scores, ref.scores, atol=0.01)
    assert gpu.timings["pre"] == 0.0 and gpu.timings["infer"] > 0
