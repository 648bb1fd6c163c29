"""plate_node end to end over DDS on SYNTHETIC plates: images + vehicle detections paired by stamp."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from conftest import wait_for
from plates_synth import dataset
from sensor_msgs.msg import Image
from vision_msgs.msg import Detection2D, Detection2DArray, ObjectHypothesisWithPose

from nano_vision_ros.ros import qos
from nano_vision_ros.ros.image import numpy_to_imgmsg


class _CameraAndDetector:
    """Publishes a frame and, with the same stamp, a Detection2DArray with one car box (what the
    camera and the COCO detector publish); the detections may arrive before or after the image."""

    def __init__(self, node, ns: str, image: np.ndarray, rate: float = 4.0) -> None:
        self.img_pub = node.create_publisher(Image, f"{ns}/image_raw", qos.SENSOR)
        self.det_pub = node.create_publisher(Detection2DArray, f"{ns}/detections", qos.RELIABLE)
        self.image, self.count = image, 0
        self.timer = node.create_timer(1.0 / rate, self._tick)

    def _tick(self) -> None:
        h, w = self.image.shape[:2]
        img = numpy_to_imgmsg(self.image, "bgr8")
        img.header.frame_id = "cam_optical"
        img.header.stamp.sec, img.header.stamp.nanosec = 500 + self.count, 250
        dets = Detection2DArray(header=img.header)
        d = Detection2D(header=img.header)
        d.bbox.center.position.x, d.bbox.center.position.y = w / 2, h / 2
        d.bbox.size_x, d.bbox.size_y = float(w - 4), float(h - 4)
        hyp = ObjectHypothesisWithPose()
        hyp.hypothesis.class_id, hyp.hypothesis.score = "car", 0.9
        d.results = [hyp]
        d.id = "7"
        dets.detections = [d]
        if self.count % 2:
            self.det_pub.publish(dets)
            self.img_pub.publish(img)
        else:
            self.img_pub.publish(img)
            self.det_pub.publish(dets)
        self.count += 1


def test_reads_plates_in_vehicle_boxes_over_dds(start_node, ros_node, tmp_path: Path) -> None:
    ns = "/lane1"
    (text, colour, img, _), (deny_text, _, img2, _) = dataset(2, seed=3)[:2]
    plate = start_node("plate_node", "-r", f"__ns:={ns}", "-p", f"deny_list:=['{deny_text}']", name="plate")
    node = ros_node("plate_test_client")
    got: list[Detection2DArray] = []
    node.create_subscription(Detection2DArray, f"{ns}/plates", got.append, qos.RELIABLE)
    pub = _CameraAndDetector(node, ns, img)

    def read(t):
        return [d for m in got for d in m.detections if d.results[0].hypothesis.class_id == t]

    wait_for(lambda: read(text), 90, what=f"plate {text} (SYNTHETIC) from plate_node")
    d = read(text)[-1]
    extra = {h.hypothesis.class_id.split(":")[0]: h.hypothesis.class_id.split(":")[1] for h in d.results[1:]}
    assert extra == {"colour": colour, "listed": "none"}
    assert d.results[0].hypothesis.score > 0.6 and d.id.isdigit()
    h, _w = img.shape[:2]
    assert h * 0.4 < d.bbox.center.position.y < h and d.bbox.size_x > d.bbox.size_y * 2

    pub.image = img2
    wait_for(lambda: read(deny_text), 60, what=f"plate {deny_text} (SYNTHETIC)")
    assert {h.hypothesis.class_id for h in read(deny_text)[-1].results[1:]} >= {"listed:deny"}
    assert plate.alive()


def test_lists_change_at_run_time_other_parameters_refused(start_node, ros_node) -> None:
    from rcl_interfaces.msg import Parameter as ParamMsg
    from rcl_interfaces.msg import ParameterType, ParameterValue
    from rcl_interfaces.srv import SetParameters

    ns = "/lane2"
    ((text, _, img, _),) = dataset(1, seed=4)
    start_node("plate_node", "-r", f"__ns:={ns}", "-p", "finder.mode:=frame", name="plate2")
    node = ros_node("plate_param_client")
    got: list[Detection2DArray] = []
    node.create_subscription(Detection2DArray, f"{ns}/plates", got.append, qos.RELIABLE)
    frames = node.create_publisher(Image, f"{ns}/image_raw", qos.SENSOR)
    node.create_timer(0.25, lambda: frames.publish(numpy_to_imgmsg(img, "bgr8")))

    def listed():
        return [h.hypothesis.class_id for m in got for d in m.detections for h in d.results[2:]]

    wait_for(lambda: "listed:none" in listed(), 90, what="plate read in frame mode")
    client = node.create_client(SetParameters, f"{ns}/plate_node/set_parameters")
    wait_for(client.service_is_ready, 20, what="set_parameters service")

    def set_param(name, value):
        p = ParamMsg(name=name, value=value)
        fut = client.call_async(SetParameters.Request(parameters=[p]))
        wait_for(fut.done, 20, what=f"set {name}")
        return fut.result().results[0]

    res = set_param("deny_list", ParameterValue(type=ParameterType.PARAMETER_STRING_ARRAY, string_array_value=[text]))
    assert res.successful, res.reason
    n = len(got)
    wait_for(
        lambda: "listed:deny" in [h.hypothesis.class_id for m in got[n:] for d in m.detections for h in d.results[2:]],
        60,
        what="plate now on the deny list",
    )
    res = set_param("vote_window", ParameterValue(type=ParameterType.PARAMETER_INTEGER, integer_value=9))
    assert not res.successful and "vote_window" in res.reason


def test_with_the_real_detector_node(start_node, ros_node, samples: Path) -> None:
    """camera frames (from here) -> detector_node (COCO, NanoDet) -> plate_node, both in their own
    processes. The frame is a real photo with a SYNTHETIC plate pasted on the parked car, which
    the COCO model then reports as both car and truck: the plate must come out once."""
    import cv2
    from plates_synth import render_plate

    ns = "/street1"
    text = "鲁B7C2K9"
    img = cv2.imread(str(samples / "dog.jpg"))
    plate = render_plate(text, "blue", height=70)
    h = int(plate.shape[0] * 120 / plate.shape[1])
    img[125 : 125 + h, 520:640] = cv2.resize(plate, (120, h), interpolation=cv2.INTER_AREA)
    start_node("detector_node", "-r", f"__ns:={ns}", "-p", "task:=coco_objects", name="detector")
    start_node("plate_node", "-r", f"__ns:={ns}", name="plate3")
    node = ros_node("plate_detector_client")
    got: list[Detection2DArray] = []
    vehicles: list[Detection2DArray] = []
    node.create_subscription(Detection2DArray, f"{ns}/plates", got.append, qos.RELIABLE)
    node.create_subscription(Detection2DArray, f"{ns}/detections", vehicles.append, qos.RELIABLE)
    pub = node.create_publisher(Image, f"{ns}/image_raw", qos.SENSOR)
    count = [0]

    def tick():
        msg = numpy_to_imgmsg(img, "bgr8")
        msg.header.frame_id = "street_cam"
        msg.header.stamp.sec = 2000 + count[0]
        count[0] += 1
        pub.publish(msg)

    node.create_timer(0.5, tick)
    wait_for(
        lambda: any(len(m.detections) == 1 and m.detections[0].results[0].hypothesis.class_id == text for m in got),
        120,
        what=f"plate {text} via detector_node",
    )
    labels = {d.results[0].hypothesis.class_id for m in vehicles for d in m.detections}
    assert labels & {"car", "truck"}
    assert all(len(m.detections) == 1 for m in got)  # one plate, not one per overlapping vehicle box
    msg = next(m for m in got if m.detections[0].results[0].hypothesis.class_id == text)
    assert any(m.header.stamp == msg.header.stamp for m in vehicles)  # paired by stamp
