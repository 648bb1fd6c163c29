"""Two-stage mask pipeline (face detector -> batched MobileNetV2 classifier) on real faces."""

from __future__ import annotations

import importlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from nano_vision_ros.core.detection.types import Detections

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def detector():
    """Built the way the detector node builds a pipeline task: Class(**options) from the profile."""
    prof = yaml.safe_load((REPO / "config/tasks/mask.yaml").read_text())
    mod, cls = prof["pipeline"].split(":")
    det = getattr(importlib.import_module(mod), cls)(**prof["options"])
    yield det
    det.close()


@pytest.mark.parametrize("sample,faces", [("astronaut.png", 1), ("messi5.jpg", 1), ("basketball1.png", 1)])
def test_unmasked_faces_are_no_mask(detector, samples: Path, sample: str, faces: int) -> None:
    img = cv2.imread(str(samples / sample))
    d = detector.detect(img)
    assert isinstance(d, Detections) and detector.labels == ["mask", "no_mask"]
    assert len(d) >= faces
    assert all(d.label_of(i) == "no_mask" for i in range(len(d))), d.attributes
    best = int(np.argmax(d.scores))
    assert d.scores[best] > 0.9


def test_batch_matches_single_crops(detector, samples: Path) -> None:
    img = cv2.imread(str(samples / "astronaut.png"))
    crops = [img[60:180, 180:270], cv2.flip(img[60:180, 180:270], 1), img[0:100, 0:100]]
    batch = detector.classify(crops)
    single = np.vstack([detector.classify([c]) for c in crops])
    assert np.allclose(batch, single, atol=1e-4)
    assert batch.shape == (3, 2) and np.allclose(batch.sum(1), 1.0, atol=1e-4)


def test_no_face_no_detection(detector, samples: Path) -> None:
    d = detector.detect(cv2.imread(str(samples / "dog.jpg")))
    assert len(d) == 0 and d.labels == ["mask", "no_mask"]


def test_bad_option_is_refused() -> None:
    from nano_vision_ros.core.recognition.mask import TwoStageMaskDetector

    with pytest.raises(TypeError):
        TwoStageMaskDetector(no_such_option=1)


def test_mask_task_in_the_detector_node(start_node, ros_node, samples: Path) -> None:
    """The generic detector_node (own process) runs the mask profile: a real face -> no_mask."""
    from conftest import wait_for
    from sensor_msgs.msg import Image
    from vision_msgs.msg import Detection2DArray

    from nano_vision_ros.ros import qos
    from nano_vision_ros.ros.image import numpy_to_imgmsg

    ns = "/door1"
    start_node("detector_node", "-r", f"__ns:={ns}", "-p", "task:=mask", name="mask_detector")
    node = ros_node("mask_client")
    got: list[Detection2DArray] = []
    node.create_subscription(Detection2DArray, f"{ns}/detections", got.append, qos.RELIABLE)
    pub = node.create_publisher(Image, f"{ns}/image_raw", qos.SENSOR)
    img = cv2.imread(str(samples / "astronaut.png"))
    node.create_timer(0.5, lambda: pub.publish(numpy_to_imgmsg(img, "bgr8")))
    wait_for(lambda: any(m.detections for m in got), 90, what="mask detections from detector_node")
    d = next(m for m in got if m.detections).detections[0]
    assert d.results[0].hypothesis.class_id == "no_mask" and d.results[0].hypothesis.score > 0.9
    assert 150 < d.bbox.center.position.x < 300
