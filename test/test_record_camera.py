"""camera_node (test pattern, jpeg image_raw/compressed) -> recorder_node (compressed input) -> clip."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from conftest import event_msg, wait_for
from record_tools import probe


@pytest.mark.timeout(120)
def test_camera_to_recorder_compressed(start_node, ros_node, tmp_path):
    from nano_vision_msgs.msg import Clip, Event
    from nano_vision_ros.ros import qos
    from nano_vision_ros.ros.events import clip_from_msg

    out = tmp_path / "clips"
    start_node(
        "camera_node",
        "-r",
        "__ns:=/t_camrec",
        "-p",
        "source_kind:=test_pattern",
        "-p",
        "source:=test://pattern",
        "-p",
        "width:=160",
        "-p",
        "height:=120",
        "-p",
        "fps:=10.0",
        "-p",
        "publish_compressed:=true",
    )
    start_node(
        "recorder_node",
        "-r",
        "__ns:=/t_camrec",
        "-p",
        "image_topic:=image_raw/compressed",
        "-p",
        "compressed:=true",
        "-p",
        f"output_dir:={out}",
        "-p",
        "pre_seconds:=1.0",
        "-p",
        "post_seconds:=1.5",
        "-p",
        "fps:=10.0",
    )
    me = ros_node("camrec_test")
    clips: list[dict] = []
    me.create_subscription(Clip, "/t_camrec/clips", lambda m: clips.append(clip_from_msg(m).model_dump()), qos.NOTICES)
    ev = me.create_publisher(Event, "/t_camrec/events", qos.RELIABLE)
    wait_for(lambda: ev.get_subscription_count() > 0, 30, what="recorder events subscription")
    time.sleep(3.0)  # camera up, pre-event buffer filled
    ev.publish(event_msg("t_camrec"))
    wait_for(lambda: clips, 40, what="a clip from camera frames")
    c = clips[0]
    assert c["camera"] == "t_camrec" and Path(c["path"]).name.startswith("t_camrec_")
    info = probe(c["path"])
    assert info["codec_name"] == "h264" and (info["width"], info["height"]) == (160, 120)
    expected = round((c["end"] - c["start"]) * 10)
    assert expected >= 20 and abs(int(info["nb_read_frames"]) - expected) <= 2
