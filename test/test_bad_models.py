"""Broken models at configure: a truncated or random .onnx, a garbage .engine (TensorRT absent
here), a valid model whose outputs do not fit the profile's decoder, a labels file with the wrong
class count. Each is ONE error line naming the file and the problem; the node process stays up,
unconfigured, and reports the error in /diagnostics. Core-level first, then real node processes
(detector_node, face_node, plate_node) over DDS."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import SHARED_MODELS, wait_for
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from lifecycle_msgs.srv import GetState

from nano_vision_ros.core.detection.profiles import build_detector, load_profile
from nano_vision_ros.core.errors import ModelError, RuntimeMissingError

REPO = Path(__file__).resolve().parent.parent
NANODET = SHARED_MODELS / "nanodet_m_416_coco.onnx"
MASK = SHARED_MODELS / "face_mask_mobilenetv2.onnx"


def _bad_files(d: Path) -> dict[str, Path]:
    data = NANODET.read_bytes()
    files = {
        "truncated": (d / "truncated.onnx", data[: len(data) // 3]),
        "random": (d / "random.onnx", os.urandom(20000)),
        "engine": (d / "garbage.engine", os.urandom(4096)),
    }
    for path, blob in files.values():
        path.write_bytes(blob)
    return {k: p for k, (p, _) in files.items()}


def _wrong_labels_profile(d: Path) -> Path:
    labels = d / "three.labels"
    labels.write_text("person\ncar\ndog\n")
    profile = d / "wrong_labels.yaml"
    profile.write_text(f"model: {NANODET}\ndecoder: nanodet\nlabels: {labels}\n")
    return profile


# --- core -------------------------------------------------------------------------------------
@pytest.mark.parametrize("case,problem", [("truncated", "could not load"), ("random", "could not load")])
def test_core_corrupt_onnx_is_a_model_error_naming_the_file(tmp_path, case, problem):
    path = _bad_files(tmp_path)[case]
    with pytest.raises(ModelError) as err:
        build_detector(load_profile("coco_objects"), model=str(path))
    text = str(err.value)
    assert str(path) in text and problem in text and "\n" not in text


def test_core_garbage_engine_says_tensorrt_is_missing_or_not_an_engine(tmp_path):
    path = _bad_files(tmp_path)["engine"]
    with pytest.raises((ModelError, RuntimeMissingError)) as err:
        build_detector(load_profile("coco_objects"), model=str(path))
    text = str(err.value)
    try:
        import tensorrt  # noqa: F401

        assert str(path) in text, text  # TensorRT present: the file is named as not loadable
    except ImportError:
        assert "TensorRT Python bindings are not installed" in text
    assert "\n" not in text


def test_core_outputs_that_do_not_fit_the_decoder():
    with pytest.raises(ModelError) as err:
        build_detector(load_profile("coco_objects"), model=str(MASK))
    text = str(err.value)
    assert str(MASK) in text and "nanodet decoder" in text and "dense_1" in text, text


def test_core_labels_with_the_wrong_count(tmp_path):
    profile = load_profile(str(_wrong_labels_profile(tmp_path)))
    with pytest.raises(ModelError) as err:
        build_detector(profile)
    text = str(err.value)
    assert "3 classes" in text and "80" in text and "three.labels" in text, text


# --- nodes ------------------------------------------------------------------------------------
def _diag_errors(node, names: set[str]) -> dict[str, str]:
    got: dict[str, str] = {}
    node.create_subscription(
        DiagnosticArray,
        "/diagnostics",
        lambda m: got.update(
            {s.name: s.message for s in m.status if s.name in names and s.level == DiagnosticStatus.ERROR}
        ),
        10,
    )
    return got


def _one_error_line(log: str, needle: str) -> str:
    lines = [ln for ln in log.splitlines() if needle in ln]
    assert len(lines) == 1, f"expected one line with {needle!r}, got {lines}"
    assert "Traceback" not in log, log[-3000:]
    return lines[0]


def _state(node, name: str) -> str:
    client = node.create_client(GetState, f"{name}/get_state")
    wait_for(lambda: client.service_is_ready(), 20, what=f"{name}/get_state")
    fut = client.call_async(GetState.Request())
    wait_for(lambda: fut.done(), 20, what=f"reply of {name}/get_state")
    return fut.result().current_state.label


def test_detector_node_bad_models_stay_up_and_report(start_node, ros_node, tmp_path):
    files = _bad_files(tmp_path)
    cases = {
        "truncated": (["-p", f"model:={files['truncated']}"], str(files["truncated"]), "could not load"),
        "random": (["-p", f"model:={files['random']}"], str(files["random"]), "could not load"),
        "engine": (["-p", f"model:={files['engine']}"], "", "TensorRT"),
        "decoder": (["-p", f"model:={MASK}"], "dense_1", "nanodet decoder"),
        "labels": (
            ["-p", f"task:={_wrong_labels_profile(tmp_path)}"],
            "three.labels",
            "3 classes but the model outputs 80",
        ),
    }
    procs = {
        k: start_node("detector_node", "-r", f"__ns:=/bm_{k}", *args, name=f"bm_{k}")
        for k, (args, _, _) in cases.items()
    }
    node = ros_node("bad_models_client")
    names = {f"/bm_{k}/detector_node" for k in cases}
    diags = _diag_errors(node, names)
    for k, (_, what, problem) in cases.items():
        wait_for(
            lambda problem=problem, k=k: problem in procs[k].log(), 90, what=f"{problem!r} in the log of the {k} case"
        )
        line = _one_error_line(procs[k].log(), problem)
        assert "ERROR" in line and what in line, line
    for k in cases:
        assert procs[k].alive(), f"{k}: node exited"
        assert _state(node, f"/bm_{k}/detector_node") == "unconfigured", k
    wait_for(lambda: set(diags) == names, 60, what=f"ERROR diagnostics from all of {sorted(names)}")
    for k, (_, _, problem) in cases.items():
        assert problem in diags[f"/bm_{k}/detector_node"], (k, diags)


def test_face_and_plate_nodes_bad_models_stay_up_and_report(start_node, ros_node, tmp_path):
    files = _bad_files(tmp_path)
    face = start_node(
        "face_node",
        "-r",
        "__ns:=/bmf",
        "-p",
        f"gallery:={tmp_path / 'g.db'}",
        "-p",
        "embedding.kind:=onnx",
        "-p",
        f"embedding.model:={files['truncated']}",
        name="bm_face",
    )
    plate = start_node("plate_node", "-r", "__ns:=/bmp", "-p", f"reader.model:={files['random']}", name="bm_plate")
    node = ros_node("bad_models_client2")
    names = {"/bmf/face_node", "/bmp/plate_node"}
    diags = _diag_errors(node, names)
    for proc, path in ((face, files["truncated"]), (plate, files["random"])):
        wait_for(lambda path=path, proc=proc: str(path) in proc.log(), 90, what=f"{path.name} named in the log")
        line = _one_error_line(proc.log(), str(path))
        assert "ERROR" in line and "could not load" in line, line
        assert proc.alive()
    assert _state(node, "/bmf/face_node") == "unconfigured"
    assert _state(node, "/bmp/plate_node") == "unconfigured"
    wait_for(lambda: set(diags) == names, 60, what="ERROR diagnostics from face_node and plate_node")
    assert str(files["truncated"]) in diags["/bmf/face_node"]
    assert str(files["random"]) in diags["/bmp/plate_node"]
