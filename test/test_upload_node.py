"""uploader_node in its own process: clips notices in, files at the receiver, clip_status out; the
queue survives a restart of the node while the receiver is down."""

from __future__ import annotations

import pytest
from conftest import free_port, wait_for
from upload_tools import TOKEN, make_clip, sha


@pytest.mark.timeout(180)
def test_uploader_node_retries_across_restart(start_node, ros_node, receiver, tmp_path):
    from nano_vision_msgs.msg import Clip, ClipStatus
    from nano_vision_ros.ros import qos
    from nano_vision_ros.ros.events import status_from_msg

    port = free_port()
    clip = tmp_path / "cam1_20260101T000000_ev1.mp4"
    digest = make_clip(clip, 500_000)
    args = [
        "-p",
        "clips_topics:=[/t_up/clips]",
        "-p",
        f"port:={port}",
        "-p",
        f"queue_db:={tmp_path / 'queue.sqlite'}",
        "-p",
        "backoff_min:=0.5",
        "-p",
        "backoff_max:=1.0",
    ]
    env = {"NANO_VISION_UPLOAD_TOKEN": TOKEN}
    me = ros_node("upload_test")
    statuses: list[dict] = []
    me.create_subscription(
        ClipStatus, "/t_up/clip_status", lambda m: statuses.append(status_from_msg(m).model_dump()), qos.NOTICES
    )
    clips_pub = me.create_publisher(Clip, "/t_up/clips", qos.NOTICES)

    # 1. No receiver yet: the clip is queued, tried, and stays queued with the error.
    node = start_node("uploader_node", *args, env=env)
    wait_for(lambda: clips_pub.get_subscription_count() > 0, 30, what="uploader subscription")
    clips_pub.publish(Clip(event_ids=["ev1"], camera="cam1", path=str(clip), size=clip.stat().st_size, sha256=digest))
    clips_pub.publish(Clip(path=str(tmp_path / "missing.mp4")))  # refused, logged
    wait_for(
        lambda: any(s["state"] == "queued" and s["error"] for s in statuses), 30, what="a failed try, still queued"
    )
    assert all(s["state"] != "done" for s in statuses)
    node.stop()

    # 2. Receiver up, node restarted (no new notice; this test's publisher is gone too): the queue is resumed.
    me.destroy_publisher(clips_pub)
    statuses.clear()
    rx = receiver(port=port)
    start_node("uploader_node", *args, env=env)
    done = wait_for(lambda: next((s for s in statuses if s["state"] == "done"), None), 60, what="clip_status done")
    assert done["remote"] == "cam1/" + clip.name and done["sha256"] == digest and done["event_ids"] == ["ev1"]
    assert sha(rx.root / "cam1" / clip.name) == digest
    states = [s["state"] for s in statuses]
    assert states.index("uploading") < states.index("done")


@pytest.mark.timeout(60)
def test_uploader_node_without_token_exits_with_config_error(start_node, tmp_path):
    node = start_node("uploader_node", "-p", f"queue_db:={tmp_path / 'q.sqlite'}")
    node.proc.wait(30)
    assert node.proc.returncode == 2 and "token" in node.log()
