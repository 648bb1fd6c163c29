"""recorder_node in its own process: frames and typed events over DDS in, a playable MP4 and a typed
`clips` notice out; an event's updates after its end (the clip / upload-state reports) ask no footage."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import event_msg, wait_for
from record_tools import probe

from nano_vision_ros.core.recording import sha256_file


@pytest.mark.timeout(120)
def test_recorder_node_writes_merged_clip(start_node, ros_node, tmp_path):
    from sensor_msgs.msg import Image

    from nano_vision_msgs.msg import Clip, Event
    from nano_vision_ros.ros import qos
    from nano_vision_ros.ros.events import clip_from_msg, event_from_msg, event_to_msg
    from nano_vision_ros.ros.image import numpy_to_imgmsg

    out = tmp_path / "clips"
    node = start_node(
        "recorder_node",
        "-p",
        "image_topic:=/t_rec/image_raw",
        "-p",
        "events_topic:=/t_rec/events",
        "-p",
        "clips_topic:=/t_rec/clips",
        "-p",
        f"output_dir:={out}",
        "-p",
        "camera:=cam1",
        "-p",
        "pre_seconds:=1.0",
        "-p",
        "post_seconds:=2.0",
        "-p",
        "fps:=10.0",
    )
    me = ros_node("record_test")
    clips: list[dict] = []
    me.create_subscription(Clip, "/t_rec/clips", lambda m: clips.append(clip_from_msg(m).model_dump()), qos.NOTICES)
    img_pub = me.create_publisher(Image, "/t_rec/image_raw", qos.SENSOR)
    ev_pub = me.create_publisher(Event, "/t_rec/events", qos.RELIABLE)
    stop = threading.Event()

    def camera():
        i = 0
        while not stop.is_set():
            msg = numpy_to_imgmsg(np.full((120, 160, 3), (i * 7) % 256, np.uint8), "bgr8")
            msg.header.stamp = me.get_clock().now().to_msg()
            img_pub.publish(msg)
            i += 1
            time.sleep(0.05)

    th = threading.Thread(target=camera, daemon=True)
    th.start()
    try:
        wait_for(
            lambda: ev_pub.get_subscription_count() > 0 and img_pub.get_subscription_count() > 0,
            30,
            what="recorder subscriptions",
        )
        time.sleep(2.0)  # fill the pre-event buffer
        # stamped when published: the recorder places an event's window by its stamp, so an event made
        # before a slow start would arrive with its window already past
        ev_a = event_msg("cam1")
        ev_pub.publish(ev_a)
        time.sleep(0.5)
        ev_b = event_msg("cam1")
        ev_pub.publish(ev_b)
        bad = event_msg("cam1")
        bad.event_id = "not-a-uuid"
        ev_pub.publish(bad)  # refused by the event model: ignored, counted, nothing breaks
        wait_for(lambda: clips, 40, what="a clips notice")
        # the events node then reports the clip on the ended event: footage that exists, no new clip
        ended = event_from_msg(ev_a).model_copy(
            update={"state": "update", "reason": "clip", "sequence": 2, "end": event_from_msg(ev_a).stamp}
        )
        ev_pub.publish(event_to_msg(ended))
        time.sleep(3.5)  # longer than post_seconds: a clip it had opened would be announced by now
        assert len(clips) == 1, clips
    finally:
        stop.set()
        th.join(2)
    c = clips[0]
    assert c["event_ids"] == [ev_a.event_id, ev_b.event_id] and c["camera"] == "cam1"
    path = Path(c["path"])
    assert path.parent == out and path.is_file()
    assert c["sha256"] == sha256_file(path) and c["size"] == path.stat().st_size
    info = probe(str(path))
    expected = round((c["end"] - c["start"]) * 10)
    # 1 s pre + 0.5 s between the events + 2 s post (+ delivery), cut at keyframes (1 s apart):
    # the start up to 1 s earlier, the end up to 1 s later
    assert 3.0 <= c["end"] - c["start"] <= 6.0
    assert info["codec_name"] == "h264" and abs(int(info["nb_read_frames"]) - expected) <= 2
    assert abs(float(info["duration"]) - expected / 10) <= 0.2
    assert node.alive()


@pytest.mark.timeout(60)
def test_recorder_camera_is_the_namespaces_last_part(start_node, tmp_path):
    """Clip file names and notices use ros.naming.camera_name: /t_site/cam7 records as cam7 (like /cam7)."""
    node = start_node("recorder_node", "-r", "__ns:=/t_site/cam7", "-p", f"output_dir:={tmp_path}")
    wait_for(lambda: "as camera" in node.log(), 30, what="the recorder's start line")
    assert f"to {tmp_path} as camera cam7" in node.log()
    assert node.alive()
