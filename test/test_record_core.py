"""Recorder core: real ffmpeg H.264 and fragmented MP4s from a simulated camera (frames carry their index as gray level)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest
from record_tools import FPS, T0, Camera, image_for, probe

from nano_vision_ros.core.recording import (
    Frame,
    FrameRing,
    Recorder,
    RecorderOptions,
    Retention,
    parse_time,
    sha256_file,
)


def gray_levels(path: str) -> list[int]:
    """Mean gray of every decoded frame."""
    cap = cv2.VideoCapture(path)
    levels = []
    while True:
        ok, img = cap.read()
        if not ok:
            break
        levels.append(int(round(float(img.mean()))))
    cap.release()
    return levels


def make(tmp_path: Path, **kw) -> tuple[Recorder, list[dict], list[str]]:
    clips: list[dict] = []
    errors: list[str] = []
    kw = {"max_clip_seconds": 30.0, **kw}
    opt = RecorderOptions(
        output_dir=str(tmp_path / "clips"), camera="cam1", pre_seconds=3.0, post_seconds=4.0, fps=FPS, **kw
    )
    return Recorder(opt, on_clip=clips.append, on_error=errors.append), clips, errors


def test_clip_has_pre_and_post_seconds(tmp_path):
    rec, clips, errors = make(tmp_path)
    cam = Camera(rec)
    cam.run_until(T0 + 20, {100: [{"event_id": "e1", "state": "new", "camera": "cam1"}]})  # event at T0+10
    rec.flush()
    assert errors == [] and len(clips) == 1
    c = clips[0]
    assert c["event_ids"] == ["e1"] and Path(c["path"]).is_file()
    assert c["start"] == pytest.approx(T0 + 7.0, abs=1e-3) and c["end"] == pytest.approx(
        T0 + 14.0, abs=1e-3
    )  # closed by frame 140
    info = probe(c["path"])
    assert info["codec_name"] == "h264" and "mp4" in info["format_name"]
    assert abs(int(info["nb_read_frames"]) - 70) <= 2
    assert abs(float(info["duration"]) - 7.0) <= 2 / FPS
    assert c["size"] == os.path.getsize(c["path"]) and c["sha256"] == sha256_file(c["path"])
    # The pictures are the right ones: first ~ frame 70 (T0+7 s), last ~ frame 139 (T0+13.9 s).
    levels = gray_levels(c["path"])
    assert abs(len(levels) - 70) <= 2
    assert abs(levels[0] - (70 * 4) % 256) <= 6 and abs(levels[-1] - (139 * 4) % 256) <= 6
    assert not list((tmp_path / "clips").glob(".*"))  # no temp or log files left


def test_overlapping_events_merge_into_one_clip(tmp_path):
    rec, clips, errors = make(tmp_path)
    cam = Camera(rec)
    cam.run_until(
        T0 + 40,
        {
            100: [{"event_id": "a", "state": "new"}],  # T0+10: clip 7..14
            120: [{"event_id": "b", "state": "new"}],  # T0+12: overlaps -> 7..16
            150: [{"event_id": "a", "state": "end"}],  # T0+15: extends -> 7..19
            250: [{"event_id": "a", "state": "update", "reason": "clip"}],  # about the clip: no new footage
            300: [{"event_id": "c", "state": "new"}],  # T0+30: a new clip 27..34
        },
    )
    rec.flush()
    assert errors == []
    assert [c["event_ids"] for c in clips] == [["a", "b"], ["c"]] and rec.events_ignored == 1
    assert clips[0]["start"] == pytest.approx(T0 + 7, abs=1e-3) and clips[0]["end"] == pytest.approx(T0 + 19, abs=1e-3)
    assert abs(int(probe(clips[0]["path"])["nb_read_frames"]) - 120) <= 2
    assert abs(int(probe(clips[1]["path"])["nb_read_frames"]) - 70) <= 2


def test_event_times_from_the_schema_are_used(tmp_path):
    """An events-node `new` names its debounced start: the pre-event seconds count from there."""
    import datetime as dt

    rec, clips, _ = make(tmp_path)
    cam = Camera(rec)
    start_iso = dt.datetime.fromtimestamp(T0 + 9.0, dt.timezone.utc).isoformat().replace("+00:00", "Z")
    cam.run_until(T0 + 20, {100: [{"event_id": "s", "state": "new", "start": start_iso, "stamp": "garbage"}]})
    rec.flush()
    assert clips[0]["start"] == pytest.approx(T0 + 6.0, abs=1e-3) and clips[0]["end"] == pytest.approx(
        T0 + 13.0, abs=1e-3
    )


def test_gaps_are_filled_to_the_requested_duration(tmp_path):
    """A camera that skips frames still gives a clip of the asked length (frames repeated)."""
    rec, clips, _ = make(tmp_path)
    cam = Camera(rec)
    cam.run_until(T0 + 10, {50: [{"event_id": "g", "state": "new"}]})  # T0+5: clip 2..9
    cam.i += 20  # 2 s without frames
    cam.run_until(T0 + 14)
    rec.flush()
    assert len(clips) == 1
    assert abs(int(probe(clips[0]["path"])["nb_read_frames"]) - 70) <= 2


def test_flush_ends_an_open_clip_at_its_newest_frame(tmp_path):
    """Shutdown (or a camera gone) mid-clip: the clip ends with the footage there is, no frozen tail."""
    rec, clips, _ = make(tmp_path)
    cam = Camera(rec)
    cam.run_until(T0 + 12, {100: [{"event_id": "f", "state": "new"}]})  # asks for 7..14, frames end at 11.9
    rec.flush()
    assert clips[0]["end"] == pytest.approx(T0 + 12.0, abs=1e-3)
    assert abs(int(probe(clips[0]["path"])["nb_read_frames"]) - 50) <= 2


def test_camera_gone_finishes_the_clip(tmp_path):
    rec, clips, _ = make(tmp_path)
    cam = Camera(rec)
    cam.run_until(T0 + 12, {100: [{"event_id": "g", "state": "new"}]})
    rec.tick(now=T0 + 14 + rec.opt.frame_timeout + 1)
    rec.flush()
    assert len(clips) == 1 and clips[0]["end"] == pytest.approx(T0 + 12.0, abs=1e-3)


def test_quota_deletes_oldest_clips(tmp_path):
    rec, clips, errors = make(tmp_path, max_total_mb=1 / 1024**2)  # 1 byte: any second clip breaks the quota
    cam = Camera(rec)
    cam.run_until(T0 + 40, {50: [{"event_id": "old", "state": "new"}], 300: [{"event_id": "new", "state": "new"}]})
    rec.flush()
    assert len(clips) == 2 and errors == []
    assert not Path(clips[0]["path"]).exists() and Path(clips[1]["path"]).exists()
    assert rec.retention.deleted == 1


def test_retention_by_age_and_size(tmp_path):
    folder = tmp_path / "r"
    folder.mkdir()
    for i in range(4):
        p = folder / f"c{i}.mp4"
        p.write_bytes(b"x" * 100)
        os.utime(p, (1000 + i, 1000 + i))
    removed = Retention(folder, max_bytes=250, max_age=0).enforce(now=2000)
    assert [p.name for p in removed] == ["c0.mp4", "c1.mp4"]
    removed = Retention(folder, max_bytes=0, max_age=500).enforce(now=1503)  # c2 (1002) too old, c3 (1003) not
    assert [p.name for p in removed] == ["c2.mp4"]


def test_unwritable_folder_is_reported_not_raised(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    errors: list[str] = []
    rec = Recorder(RecorderOptions(output_dir=str(blocker / "clips"), fps=FPS), on_error=errors.append)
    assert rec.writable is False and "not writable" in errors[0]
    rec.add_frame(T0, image_for(0))
    rec.on_event({"event_id": "x", "state": "new"}, now=T0)
    assert rec.clips_failed == 1 and rec.stats()["output_dir_writable"] is False


def test_full_disk_is_reported_not_raised(tmp_path):
    rec, clips, errors = make(tmp_path, min_free_mb=10**12)
    cam = Camera(rec)
    cam.run_until(T0 + 12, {50: [{"event_id": "x", "state": "new"}]})
    rec.flush()
    assert clips == [] and rec.clips_failed == 1 and "disk full" in errors[-1]


def test_ring_is_bounded_by_time_and_bytes():
    ring = FrameRing(seconds=2.0, max_bytes=10_000)
    for i in range(100):
        ring.add(Frame(T0 + i * 0.1, b"x" * 100))
    assert ring.oldest == pytest.approx(T0 + 7.9, abs=1e-3) and len(ring) == 21
    for i in range(100, 200):
        ring.add(Frame(T0 + i * 0.1, b"x" * 1000))
    assert ring.nbytes <= 10_000 and ring.evicted_for_memory > 0


def test_parse_time():
    assert parse_time("2026-01-01T00:00:00Z") == pytest.approx(1767225600.0, abs=1e-3)
    assert parse_time(1767225600123) == pytest.approx(1767225600.123, abs=1e-3)
    assert parse_time("soon") is None and parse_time(None) is None


def test_clip_starts_at_the_keyframe_before_the_asked_pre_roll(tmp_path):
    """Clips are cut from the one encoded stream at keyframes (1 s apart): pre-roll never shorter than asked."""
    rec, clips, errors = make(tmp_path)
    cam = Camera(rec)
    cam.run_until(T0 + 20, {105: [{"event_id": "k", "state": "new"}]})  # T0+10.5: asks for 7.5..14.5
    rec.flush()
    assert errors == [] and len(clips) == 1 and rec.gop == 10
    c = clips[0]
    assert c["start"] == pytest.approx(T0 + 7.0, abs=1e-3) and c["end"] == pytest.approx(
        T0 + 15.0, abs=1e-3
    )  # keyframes at whole seconds
    assert c["frames"] == 80 and int(probe(c["path"])["nb_read_frames"]) == 80
    levels = gray_levels(c["path"])
    assert abs(levels[0] - (70 * 4) % 256) <= 6 and abs(levels[-1] - (149 * 4) % 256) <= 6
    assert rec.stats()["encoder_starts"] == 1  # one encoder for the whole run, however many clips


def test_a_long_event_continues_in_the_next_clip_without_footage_twice(tmp_path):
    rec, clips, errors = make(tmp_path, max_clip_seconds=5.0)
    cam = Camera(rec)
    cam.run_until(
        T0 + 25,
        {
            100: [{"event_id": "long", "state": "new"}],  # 7..12 (5 s at most)
            155: [{"event_id": "long", "state": "update"}],
        },
    )  # T0+15.5: asks 12.5.., after 12
    rec.flush()
    assert errors == [] and len(clips) == 2
    assert clips[0]["start"] == pytest.approx(T0 + 7.0, abs=1e-3) and clips[0]["end"] == pytest.approx(
        T0 + 12.0, abs=1e-3
    )
    assert clips[1]["start"] == pytest.approx(clips[0]["end"], abs=1e-3)  # starts at the keyframe where the first ended
    first, second = gray_levels(clips[0]["path"]), gray_levels(clips[1]["path"])
    assert abs(first[-1] - (119 * 4) % 256) <= 6 and abs(second[0] - (120 * 4) % 256) <= 6


def _decode(path: Path) -> tuple[int, int]:
    """(return code, frames decoded) of ffmpeg decoding `path` to nothing."""
    out = subprocess.run(
        ["ffmpeg", "-hide_banner", "-nostdin", "-v", "error", "-i", str(path), "-map", "0:v:0", "-f", "framemd5", "-"],
        capture_output=True,
        text=True,
        check=False,
    )
    return out.returncode, sum(1 for line in out.stdout.splitlines() if line and not line.startswith("#"))


def test_half_a_clip_plays_up_to_where_it_ends(tmp_path):
    """Clips are fragmented MP4 (a fragment per keyframe): a half-written or half-uploaded file plays."""
    rec, clips, _errors = make(tmp_path)
    cam = Camera(rec)
    cam.run_until(T0 + 20, {100: [{"event_id": "h", "state": "new"}]})
    rec.flush()
    path = Path(clips[0]["path"])
    data = path.read_bytes()
    assert b"moof" in data and b"mvex" in data  # fragmented: an empty moov, then moof+mdat pairs
    half = tmp_path / "half.mp4"
    half.write_bytes(data[: len(data) // 2])
    code, frames = _decode(half)
    assert code == 0 and 20 <= frames < 70, (code, frames)
    levels = gray_levels(str(half))
    assert abs(levels[0] - (70 * 4) % 256) <= 6 and len(levels) >= 20  # the right pictures, from the start
    # The same footage as a plain MP4 (index written at the end, as ffmpeg writes while recording)
    # cut in half does not play at all: this is what fragmenting buys.
    plain = tmp_path / "plain.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(path), "-c", "copy", str(plain)], check=True)
    cut = tmp_path / "plain_half.mp4"
    cut.write_bytes(plain.read_bytes()[: plain.stat().st_size // 2])
    assert _decode(cut)[1] == 0


def test_a_long_gap_restarts_the_stream_and_bad_frames_are_reported(tmp_path):
    """More than max_gap without frames: not filled, the encoder starts anew; an odd size is an error, not a raise."""
    rec, clips, errors = make(tmp_path, max_gap=3.0)
    cam = Camera(rec)
    cam.run_until(T0 + 5)
    cam.i += 100  # 10 s without frames
    cam.run_until(T0 + 25, {170: [{"event_id": "after", "state": "new"}]})  # T0+17: asks 14..21, stream from 15
    rec.flush()
    assert errors == [] and rec.stats()["encoder_starts"] == 2
    assert len(clips) == 1 and clips[0]["start"] == pytest.approx(
        T0 + 15.0, abs=1e-3
    )  # the new stream's first keyframe
    assert abs(gray_levels(clips[0]["path"])[0] - (150 * 4) % 256) <= 6
    rec.add_frame(T0 + 30, np.zeros((95, 128, 3), np.uint8))  # odd height: H.264 4:2:0 cannot take it
    assert errors and "odd" in errors[-1]


def test_what_asks_footage():
    """The one rule (core.events.model.asks_footage) the recorder follows: the scene while an event is
    active and its end do; an update after the end and the reports on clips / uploads (even of an
    active event: the recorder's own output coming back) do not."""
    from nano_vision_ros.core.events.model import asks_footage

    end = "2026-01-01T00:00:00Z"
    assert asks_footage("new", None, None) and asks_footage("end", end, None)
    assert asks_footage("update", None, "progress")
    assert not asks_footage("update", end, "progress")
    assert not asks_footage("update", None, "clip") and not asks_footage("update", None, "clip_status")


def test_encoder_keeps_colours_and_geometry():
    """The encoder is fed I420 converted in the node (not BGR): blue, green, red and white blocks and
    a stripe come out of the decoded stream where and as they went in (channel order, chroma planes, strides)."""
    from nano_vision_ros.core.recording.h264 import H264Encoder

    w, h = 250, 144  # half width 125: odd chroma rows catch a stride mistake
    img = np.zeros((h, w, 3), np.uint8)
    img[:, :60] = (255, 0, 0)
    img[:, 60:120] = (0, 255, 0)
    img[:, 120:180] = (0, 0, 255)
    img[:, 180:] = (255, 255, 255)
    img[100:110, :] = (0, 0, 0)
    aus: list[bytes] = []
    enc = H264Encoder(w, h, FPS, 10, lambda au, key: aus.append(au))
    for _ in range(5):
        enc.write(img)
    enc.close()
    out = subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-f",
            "h264",
            "-i",
            "pipe:0",
            "-frames:v",
            "1",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "bgr24",
            "-",
        ],
        input=b"".join(aus),
        capture_output=True,
        check=True,
    ).stdout
    got = np.frombuffer(out, np.uint8).reshape(h, w, 3).astype(int)
    for (x0, x1), bgr in (
        ((5, 55), (255, 0, 0)),
        ((65, 115), (0, 255, 0)),
        ((125, 175), (0, 0, 255)),
        ((185, 245), (255, 255, 255)),
    ):
        mean = got[10:90, x0:x1].reshape(-1, 3).mean(axis=0)
        assert np.abs(mean - bgr).max() < 30, f"block {bgr} came out as {mean.round()}"
    assert got[102:108, 5:245].mean() < 40, "the black stripe moved or vanished"
