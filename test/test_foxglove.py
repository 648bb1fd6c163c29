"""foxglove_node with a real Foxglove WebSocket client (the `websockets` package speaking the Foxglove
WebSocket protocol: foxglove-sdk 0.30 names it `foxglove.sdk.v1`, the same messages as `foxglove.websocket.v1`):
advertise -> subscribe -> JPEG images (decoded, right size, capped rate) and ImageAnnotations
(boxes, the zone, the violator red with the rule; decoded with the advertised protobuf schema)
and the event log, from an events node fed real frames and detections over DDS. The ROS image is
subscribed only while a Foxglove client subscribes it."""

from __future__ import annotations

import json
import time

import cv2
import numpy as np
from conftest import REPO, FrameFeeder, free_port, sample_frame, wait_for
from foxglove_client import FoxgloveClient

from nano_vision_ros.core.detection.types import Detections

RULES = """
rules:
  - name: pit
    type: intrusion
    labels: [person]
    zone: {name: pit, polygon: [[100, 300], [500, 300], [500, 560], [100, 560]]}
    cooldown: 0
"""
PERSON = (200.0, 250.0, 300.0, 500.0)  # bottom centre inside the pit
MAX_FPS = 4.0


def _layout_topics() -> set[str]:
    found: set[str] = set()

    def walk(x: object) -> None:
        if isinstance(x, dict):
            for k, v in x.items():
                if k in ("imageTopic", "topicToRender"):
                    found.add(v)
                elif k == "annotations":
                    found.update(v)
                walk(v)
        elif isinstance(x, list):
            for v in x:
                walk(v)

    walk(json.loads((REPO / "config/foxglove_layout.json").read_text()))
    assert {"/cam0/image_raw", "/cam0/annotations", "/events_log"} <= found, found
    return found


def test_foxglove_client_gets_images_annotations_and_events(start_node, ros_node, tmp_path):
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    port = free_port()
    start_node(
        "events_node",
        "-r",
        "__ns:=/cam0",
        "-p",
        f"rules:={rules}",
        "-p",
        "snapshots:=false",
        "-p",
        "annotated_topic:=image_annotated",
        name="events",
    )
    start_node(
        "foxglove_node", "-p", f"port:={port}", "-p", f"max_fps:={MAX_FPS}", "-p", "zones_period:=1.0", name="foxglove"
    )
    n = ros_node("foxglove_tester")
    frame = sample_frame()
    feeder = FrameFeeder(
        n, "/cam0", frame, Detections(np.array([PERSON]), np.array([0.9]), np.array([0]), ["person"], np.array([7]))
    )
    client = FoxgloveClient(port)
    try:
        wait_for(
            lambda: (
                {
                    "/cam0/image_annotated",
                    "/cam0/image_raw",
                    "/cam0/annotations",
                    "/cam0/events",
                    "/events_log",
                    "/diagnostics",
                }
                <= set(client.channels)
            ),
            30,
            what="channels advertised (camera found)",
        )
        assert client.channels["/cam0/image_annotated"]["schemaName"] == "foxglove.CompressedImage"
        assert client.channels["/cam0/annotations"]["schemaName"] == "foxglove.ImageAnnotations"
        assert _layout_topics() <= set(client.channels), "config/foxglove_layout.json names only served topics"
        client.subscribe(3, "/events_log")  # live: only events after the subscription
        wait_for(feeder.subscribed, 30, what="events_node subscribed to image_raw and detections")
        feeder.start()
        time.sleep(1.0)
        assert n.count_subscribers("/cam0/image_annotated") == 0, "no Foxglove subscriber: no ROS subscription"
        client.subscribe(1, "/cam0/image_annotated")
        client.subscribe(2, "/cam0/annotations")
        t0 = time.monotonic()
        wait_for(lambda: n.count_subscribers("/cam0/image_annotated") == 1, 10, what="ROS subscription after subscribe")
        Jpeg, Annotations, Log = (
            client.decoder(x) for x in ("/cam0/image_annotated", "/cam0/annotations", "/events_log")
        )

        def red_image():
            for _, payload in client.got(1):
                m = Jpeg.FromString(payload)
                img = cv2.imdecode(np.frombuffer(m.data, np.uint8), cv2.IMREAD_COLOR)
                x1, y1, _, y2 = (int(v) for v in PERSON)
                edge = img[y1 + 20 : y2 - 5, x1 - 1 : x1 + 2].reshape(-1, 3).astype(int)
                if np.mean((edge[:, 2] > 180) & (edge[:, 1] < 80) & (edge[:, 0] < 80)) > 0.8:
                    return [(m, img)]
            return None

        m, img = wait_for(red_image, 30, what="a JPEG with the intruder drawn red")[0]
        assert m.format == "jpeg" and m.frame_id == "cam0" and img.shape == frame.shape

        def violation_annotation():
            for _, payload in client.got(2):
                a = Annotations.FromString(payload)
                texts = [x.text for x in a.texts]
                if any(x.endswith("#7 pit") for x in texts) and any(x.startswith("pit: person 1") for x in texts):
                    return [a]
            return None

        a = wait_for(violation_annotation, 30, what="annotations with the zone and the violator")[0]
        red = [p for p in a.points if (p.outline_color.r, p.outline_color.g, p.outline_color.b) == (1.0, 0.0, 0.0)]
        assert len(red) == 1 and [(q.x, q.y) for q in red[0].points] == [(200, 250), (300, 250), (300, 500), (200, 500)]
        assert len(a.points) == 2  # the box and the zone polygon
        logs = wait_for(lambda: [Log.FromString(p) for _, p in client.got(3)], 20, what="event log lines")
        assert any("intrusion" in x.message and "(pit)" in x.message and x.name == "cam0" for x in logs), logs
        time.sleep(2.0)
        elapsed = time.monotonic() - t0
        images = client.got(1)
        assert len(images) <= elapsed * MAX_FPS + 3, (len(images), elapsed)
        stamps = [ts for ts, _ in images]
        assert stamps == sorted(stamps) and all(ts > 0 for ts in stamps)
        client.unsubscribe(1)
        wait_for(lambda: n.count_subscribers("/cam0/image_annotated") == 0, 10, what="ROS subscription dropped")
        assert n.count_subscribers("/cam0/detections") == 2  # the events node's and foxglove_node's
        client.close()  # a client gone without unsubscribing: its channels are released too
        wait_for(lambda: n.count_subscribers("/cam0/detections") == 1, 10, what="detections released at disconnect")
    finally:
        feeder.stop()
        client.close()


def test_params_file_site_kind_and_a_port_in_use(start_node, tmp_path):
    import socket

    import yaml

    from nano_vision_ros.nodes.foxglove_node import FoxgloveConfig
    from nano_vision_ros.site.config import NODE_KINDS

    params = yaml.safe_load((REPO / "config/foxglove.yaml").read_text())["foxglove_node"]["ros__parameters"]
    assert set(params) == set(FoxgloveConfig.model_fields)
    FoxgloveConfig.model_validate(params)
    assert NODE_KINDS["foxglove"] == "foxglove_node"
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen(1)
        node = start_node("foxglove_node", "-p", f"port:={held.getsockname()[1]}", name="busy")
        node.proc.wait(30)
    assert node.proc.returncode == 2 and "parameter 'port'" in node.log(), node.log()


def test_site_option_serves_a_real_camera(site_runner, tmp_path):
    """`foxglove` under site_nodes in a site file: the runner starts it beside a camera node; a
    protocol client gets the camera's frames as JPEG of its size."""
    import signal
    import textwrap

    port = free_port()
    (tmp_path / "params.yaml").write_text(
        textwrap.dedent(f"""
        /**/camera_node:
          ros__parameters: {{source: "test://pattern", width: 320, height: 240, fps: 10.0}}
        /foxglove_node:
          ros__parameters: {{port: {port}, cameras: [cam0], image_topics: [image_raw]}}
    """)
    )
    (tmp_path / "site.yaml").write_text(
        textwrap.dedent("""
        params_file: params.yaml
        discovery_range: localhost
        cameras:
          - {name: cam0, nodes: [camera]}
        site_nodes: [foxglove]
    """)
    )
    runner = site_runner(tmp_path / "site.yaml")
    client = FoxgloveClient(port)
    try:
        client.subscribe(1, "/cam0/image_raw")
        jpeg = client.decoder("/cam0/image_raw")
        first = wait_for(lambda: client.got(1), 30, what="a JPEG from the site's camera")[0]
        img = cv2.imdecode(np.frombuffer(jpeg.FromString(first[1]).data, np.uint8), cv2.IMREAD_COLOR)
        assert img.shape == (240, 320, 3)
    finally:
        client.close()
    runner.send_signal(signal.SIGINT)
    assert runner.wait(30) == 0
