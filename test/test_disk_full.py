"""Disk full on the clip, snapshot, gallery and outbox folders: a small tmpfs mounted by the test
(CI runs as root) is filled with a filler file, the component is driven, and then the filler is
deleted. Asserted: no exception escapes into the caller, nothing already accepted is lost (queued
events are still there to deliver, finished clips and enrolled faces intact), the error names the
full disk, and writing works again once space returns."""

from __future__ import annotations

import errno
import logging
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from record_tools import FPS, T0, Camera

from nano_vision_ros.core.events.snapshot import SnapshotWriter
from nano_vision_ros.core.mqtt.outbox import Outbox, OutboxError
from nano_vision_ros.core.recognition.gallery import Gallery, GalleryError
from nano_vision_ros.core.recording import Recorder, RecorderOptions, sha256_file

NO_SPACE = ("No space left", "disk is full", "disk full")


def _mount(mnt: Path, size: str) -> Path:
    mnt.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(mnt)],
        capture_output=True,
        text=True,
        check=False,
    )
    if r.returncode != 0:
        if os.geteuid() == 0:
            pytest.fail(f"mount -t tmpfs failed as root: {r.stderr.strip()}")
        pytest.skip(f"a tmpfs mount needs root (CI runs the tests as root): {r.stderr.strip()}")
    return mnt


@pytest.fixture
def small_disk(tmp_path):
    mounted: list[Path] = []

    def make(size: str = "2m") -> Path:
        mounted.append(_mount(tmp_path / f"disk{len(mounted)}", size))
        return mounted[-1]

    yield make
    for m in mounted:
        subprocess.run(["umount", "-l", str(m)], capture_output=True, check=False)


def fill(folder: Path) -> Path:
    """Write a filler file until the file system says ENOSPC; returns it (delete it for space)."""
    filler = folder / "filler.bin"
    chunk = b"\0" * 65536
    with open(filler, "wb", buffering=0) as f:
        try:
            while True:
                f.write(chunk)
        except OSError as err:
            assert err.errno == errno.ENOSPC, err
    with open(filler, "ab", buffering=0) as f:  # the last few bytes
        try:
            while True:
                f.write(b"\0" * 512)
        except OSError:
            pass
    return filler


def test_outbox_keeps_accepted_events_and_recovers(small_disk):
    disk = small_disk("2m")
    box = Outbox(disk / "outbox.sqlite")
    accepted = [box.put("t/events", f'{{"n": {i}}}'.encode() + b" " * 200, kind="new") for i in range(20)]
    filler = fill(disk)
    errors = []
    for i in range(2000):  # free pages inside the database take a few more; then it must refuse
        try:
            accepted.append(box.put("t/events", b"x" * 4000, kind="new"))
        except OutboxError as err:
            errors.append(str(err))
            break
    assert errors, "a full disk must refuse new messages"
    assert any(s in errors[0] for s in NO_SPACE) and str(disk / "outbox.sqlite") in errors[0], errors[0]
    # everything accepted before the refusal is still there to deliver, in order
    pending = [m.id for m in box.pending(limit=10_000)]
    assert pending == accepted
    filler.unlink()
    new = box.put("t/events", b'{"after": true}', kind="new")
    box.close()
    again = Outbox(disk / "outbox.sqlite")
    assert [m.id for m in again.pending(limit=10_000)] == accepted + [new]
    assert again.ack_many(accepted + [new]) == len(accepted) + 1 and len(again) == 0
    again.close()


def test_snapshot_reports_full_disk_leaves_no_partial_file_and_recovers(small_disk, caplog):
    disk = small_disk("2m")
    w = SnapshotWriter(disk / "snaps", "cam0", max_files=100)
    frame = np.random.default_rng(1).integers(0, 255, (240, 320, 3), np.uint8)  # noise: a big jpeg
    ev = {"event_id": "e0", "type": "person", "boxes": [[10, 10, 50, 50]], "labels": ["person"]}
    first = w.write(ev, frame, T0)
    assert first is not None
    kept = Path(first["path"]).read_bytes()
    filler = fill(disk)
    with caplog.at_level(logging.ERROR, logger="nano_vision_ros.core.events.snapshot"):
        assert w.write({**ev, "event_id": "e1"}, frame, T0 + 1) is None
    assert w.failed == 1 and any(
        "No space left" in r.getMessage() and "e1.jpg" in r.getMessage() for r in caplog.records
    ), caplog.text
    assert sorted(p.name for p in (disk / "snaps" / "cam0").iterdir()) == ["e0.jpg"], "no partial file left"
    assert Path(first["path"]).read_bytes() == kept
    filler.unlink()
    assert w.write({**ev, "event_id": "e2"}, frame, T0 + 2) is not None and w.written == 2


def test_gallery_refuses_enrolment_keeps_faces_and_recovers(small_disk):
    disk = small_disk("2m")
    g = Gallery(disk / "faces.db")
    rng = np.random.default_rng(2)
    g.add("alice", rng.normal(size=(3, 128)), "m", thumbnail_jpeg=b"j" * 1000)
    filler = fill(disk)
    with pytest.raises(GalleryError) as err:
        for i in range(200):
            g.add(f"bob{i}", rng.normal(size=(5, 128)), "m", thumbnail_jpeg=os.urandom(20000))
    assert any(s in str(err.value) for s in NO_SPACE) and str(disk / "faces.db") in str(err.value), err.value
    assert "alice" in g.names()
    _vec, _, names = g.matrix("m")
    assert names.count("alice") == 3
    filler.unlink()
    g.add("carol", rng.normal(size=(1, 128)), "m")
    assert {"alice", "carol"} <= set(g.names())
    del g
    assert "alice" in Gallery(disk / "faces.db").names()


def test_recorder_skips_clips_on_full_disk_keeps_finished_ones_and_recovers(small_disk):
    disk = small_disk("24m")
    clips: list[dict] = []
    errors: list[str] = []
    opt = RecorderOptions(
        output_dir=str(disk / "clips"),
        camera="cam1",
        pre_seconds=2.0,
        post_seconds=2.0,
        fps=FPS,
        max_clip_seconds=30.0,
        min_free_mb=2.0,
    )
    rec = Recorder(opt, on_clip=clips.append, on_error=errors.append)
    cam = Camera(rec)
    cam.run_until(T0 + 8, {30: [{"event_id": "a", "state": "new"}]})
    rec.flush()
    assert len(clips) == 1, errors
    first = Path(clips[0]["path"])
    filler = fill(disk)
    cam.run_until(T0 + 16, {110: [{"event_id": "b", "state": "new"}]})
    rec.flush()
    assert len(clips) == 1 and rec.clips_failed >= 1
    assert any("disk full" in e and str(disk / "clips") in e for e in errors), errors
    assert first.exists() and sha256_file(first) == clips[0]["sha256"], "a finished clip is never lost"
    filler.unlink()
    cam.run_until(T0 + 24, {190: [{"event_id": "c", "state": "new"}]})
    rec.flush()
    assert len(clips) == 2 and clips[1]["event_ids"] == ["c"], errors
    assert sha256_file(clips[1]["path"]) == clips[1]["sha256"]


# --- a real node process: mqtt_bridge_node with its outbox on the small disk ----------------------
def test_bridge_node_outbox_on_full_disk_delivers_what_it_accepted(small_disk, start_node, ros_node, tmp_path):
    """Broker down, 20 events queue in the outbox; the disk fills, 20 more come (refused by the
    outbox, named in the log, held in memory; the node stays up); the broker returns: the 20 accepted
    are delivered; space returns: the held ones are stored and delivered, and new events too."""
    from conftest import free_port, wait_for
    from mqtt_tools import BASE, DEVICE, RULES, SITE, Feeder, Subscriber, burst, mqtt_keys

    from nano_vision_ros.site.mosquitto import Mosquitto

    disk = small_disk("16m")  # room for the outbox WAL (it checkpoints at ~4 MB) once the filler goes
    broker = Mosquitto(port=free_port(), workdir=tmp_path / "mosquitto")
    broker.start()
    try:
        rules_file = tmp_path / "rules.yaml"
        rules_file.write_text(RULES)
        start_node(
            "events_node",
            "-r",
            "__ns:=/cam0",
            "-p",
            f"rules:={rules_file}",
            "-p",
            f"site_id:={SITE}",
            "-p",
            f"device_id:={DEVICE}",
            "-p",
            f"snapshot_dir:={tmp_path / 'snaps'}",
            "-p",
            "tick_period:=0.1",
            name="events",
        )
        outbox = disk / "outbox.sqlite"
        bridge = start_node(
            "mqtt_bridge_node",
            "-p",
            f"port:={broker.port}",
            "-p",
            f"site_id:={SITE}",
            "-p",
            f"device_id:={DEVICE}",
            "-p",
            "events_topics:=[/cam0/events]",
            "-p",
            f"outbox_path:={outbox}",
            "-p",
            "reconnect_max:=1.0",
            "-p",
            "stats_period:=1.0",
            name="bridge",
        )
        sub = Subscriber(broker.port, client_id="disk-full-sub")
        feeder = Feeder(ros_node)
        feeder.wait_connected()
        wait_for(lambda: sub.on(f"{BASE}/status"), 60, what="bridge online")
        broker.stop()
        burst(feeder, 1000, 20, pace=0.05)  # 20 new + 20 end events, stored while the broker is down
        wait_for(lambda: len(feeder.keys()) >= 40, 60, what="40 events published on ROS")
        accepted = set(feeder.keys())
        wait_for(lambda: _outbox_rows(outbox) >= 40, 30, what="40 events in the outbox")
        filler = fill(disk)
        burst(feeder, 2000, 20, pace=0.05)
        wait_for(lambda: "disk is full" in bridge.log(), 60, what="the bridge naming the full disk")
        assert bridge.alive(), "the bridge survives a full disk"
        line = next(ln for ln in bridge.log().splitlines() if "disk is full" in ln)
        assert str(outbox) in line, line
        broker.start()
        wait_for(lambda: accepted <= mqtt_keys(sub), 120, what="every event accepted before the disk filled")
        wait_for(lambda: len(feeder.keys()) >= 80, 60, what="40 more events published while the disk is full")
        refused = set(feeder.keys()) - accepted
        assert refused and not (refused & mqtt_keys(sub)), "events refused by the full outbox wait in memory"
        filler.unlink()
        wait_for(
            lambda: refused <= mqtt_keys(sub), 120, what="events received while the disk was full, once space returns"
        )
        before = set(feeder.keys())
        burst(feeder, 3000, 10, pace=0.05)
        wait_for(lambda: len(feeder.keys()) >= len(before) + 20, 60, what="20 more events on ROS")
        after = set(feeder.keys()) - before
        wait_for(lambda: after <= mqtt_keys(sub), 120, what="events after the space returned")
        assert bridge.alive()
        sub.close()
    finally:
        broker.stop()


def _outbox_rows(path: Path) -> int:
    import sqlite3

    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1) as db:
            return db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
    except sqlite3.Error:
        return 0
