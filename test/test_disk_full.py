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

from nano_vision_ros.core.events.snapshot import SnapshotWriter
from nano_vision_ros.core.mqtt.outbox import Outbox, OutboxError
from nano_vision_ros.core.recognition.gallery import Gallery, GalleryError
from nano_vision_ros.core.recording import Recorder, RecorderOptions, sha256_file
from test_record_core import FPS, T0, Camera

NO_SPACE = ("No space left", "disk is full", "disk full")


def _mount(mnt: Path, size: str) -> Path:
    mnt.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(mnt)],
                       capture_output=True, text=True)
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
        subprocess.run(["umount", "-l", str(m)], capture_output=True)


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
    assert w.failed == 1 and any("No space left" in r.getMessage() and "e1.jpg" in r.getMessage()
                                 for r in caplog.records), caplog.text
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
    vec, _, names = g.matrix("m")
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
    opt = RecorderOptions(output_dir=str(disk / "clips"), camera="cam1", pre_seconds=2.0, post_seconds=2.0,
                          fps=FPS, max_clip_seconds=30.0, min_free_bytes=2 * 1024 * 1024)
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
