"""Uploader core with its SQLite queue and a real receiver: states, permanent failures, persistence."""

from __future__ import annotations

from conftest import wait_for
from upload_tools import TOKEN, make_clip, sha

from nano_vision_ros.core.upload import ServerAddress, Uploader, UploadQueue


def test_states_and_permanent_failures(receiver, tmp_path):
    rx = receiver()
    statuses: list[dict] = []
    q = UploadQueue(tmp_path / "q.sqlite")
    up = Uploader(q, ServerAddress("127.0.0.1", rx.port, TOKEN), on_status=statuses.append, backoff_min=0.1)
    good, changed, gone = tmp_path / "good.mp4", tmp_path / "changed.mp4", tmp_path / "gone.mp4"
    d_good = make_clip(good, 50_000)
    d_changed = make_clip(changed, 50_000)
    d_gone = make_clip(gone, 1000)
    up.start()
    try:
        assert up.add(str(good), "cam/good.mp4", d_good, 50_000, {"event_ids": ["e"], "camera": "cam"})
        assert not up.add(str(good), "cam/good.mp4", d_good, 50_000)  # same file again: ignored
        changed.write_bytes(b"other content")
        up.add(str(changed), "cam/changed.mp4", d_changed, 50_000)
        gone.unlink()
        up.add(str(gone), "cam/gone.mp4", d_gone, 1000)
        wait_for(lambda: q.counts()["done"] == 1 and q.counts()["failed"] == 2, 20, what="1 done, 2 failed")
    finally:
        assert up.stop()
    final = {s["name"]: s for s in statuses}
    assert final["cam/good.mp4"]["state"] == "done" and final["cam/good.mp4"]["remote"] == "cam/good.mp4"
    assert final["cam/good.mp4"]["event_ids"] == ["e"]
    assert "changed since" in final["cam/changed.mp4"]["error"] and "no longer exists" in final["cam/gone.mp4"]["error"]
    assert [s["state"] for s in statuses if s["name"] == "cam/good.mp4"] == ["queued", "uploading", "done"]
    assert sha(rx.root / "cam" / "good.mp4") == d_good and not (rx.root / "cam" / "changed.mp4").exists()
    q.close()
    q2 = UploadQueue(tmp_path / "q.sqlite")  # persisted
    assert q2.counts() == {"queued": 0, "uploading": 0, "done": 1, "failed": 2}
    q2.close()


def test_interrupted_upload_is_queued_again_after_restart(tmp_path):
    q = UploadQueue(tmp_path / "q.sqlite")
    q.add("/x/a.mp4", "a.mp4", "0" * 64, 10)
    q.update("/x/a.mp4", state="uploading", attempts=1)
    q.close()
    q2 = UploadQueue(tmp_path / "q.sqlite")
    item = q2.next_due()
    assert item is not None and item.state == "queued" and item.attempts == 1
    q2.close()


def test_max_attempts_ends_in_failed(tmp_path):
    from conftest import free_port

    max_attempts = 2
    q = UploadQueue(tmp_path / "q.sqlite")
    clip = tmp_path / "a.mp4"
    digest = make_clip(clip, 1000)
    statuses: list[dict] = []
    up = Uploader(
        q,
        ServerAddress("127.0.0.1", free_port(), TOKEN, timeout=2),
        on_status=statuses.append,
        backoff_min=0.05,
        max_attempts=max_attempts,
    )
    up.start()
    try:
        up.add(str(clip), "a.mp4", digest, 1000)
        wait_for(lambda: q.counts()["failed"] == 1, 20, what="failed after max_attempts")
    finally:
        up.stop()
    assert statuses[-1]["state"] == "failed" and statuses[-1]["attempts"] == max_attempts
    assert [s["state"] for s in statuses].count("uploading") == max_attempts
    q.close()
