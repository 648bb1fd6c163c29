"""Recorder test helpers shared by the recorder core, node, camera and disk-full tests: a simulated
camera whose frames carry their index as gray level, and ffprobe of a clip.

A helper module, not a test module (pytest does not collect it): test modules share code through
conftest.py and modules like this one, never by importing each other (test_lint checks)."""

from __future__ import annotations

import json
import subprocess

import numpy as np

from nano_vision_ros.core.recording import Recorder

T0 = 1_700_000_000.0
FPS = 10.0


def image_for(index: int) -> np.ndarray:
    return np.full((96, 128, 3), (index * 4) % 256, np.uint8)


def probe(path: str) -> dict:
    out = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-count_frames",
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=codec_name,width,height,nb_read_frames,avg_frame_rate:format=duration,format_name",
            "-of",
            "json",
            path,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    data = json.loads(out.stdout)
    return {**data["streams"][0], **data["format"]}


class Camera:
    """Feeds frames at FPS from T0 into a recorder; events are given at chosen frame times."""

    def __init__(self, rec: Recorder) -> None:
        self.rec = rec
        self.i = 0

    @property
    def t(self) -> float:
        return T0 + self.i / FPS

    def run_until(self, t_end: float, events: dict[int, list[dict]] | None = None) -> None:
        events = events or {}
        while self.t < t_end:
            self.rec.add_frame(self.t, image_for(self.i))
            for ev in events.get(self.i, []):
                self.rec.on_event(ev, now=self.t)
            self.i += 1
