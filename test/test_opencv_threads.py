"""core.opencv_threads: the frame nodes' OpenCV thread count (process-wide, so each case runs in its own process)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

PROBE = (
    "import cv2, logging; logging.basicConfig(); default = cv2.getNumThreads();"
    "from nano_vision_ros.core.opencv_threads import limit_opencv_threads;"
    "print(limit_opencv_threads(), cv2.getNumThreads(), default)"
)


def run(value: str | None) -> tuple[list[int], str]:
    env = {k: v for k, v in os.environ.items() if k not in ("NANO_VISION_CV_THREADS", "OPENCV_FOR_THREADS_NUM")}
    if value is not None:
        env["NANO_VISION_CV_THREADS"] = value
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True)
    return [int(x) for x in out.stdout.split()], out.stderr


@pytest.mark.parametrize(("value", "expected"), [(None, 1), ("3", 3), (" 2 ", 2)])
def test_thread_count_set(value, expected):
    (returned, now, _default), _ = run(value)
    assert returned == expected and now == expected


def test_zero_leaves_opencv_default():
    (returned, now, default), _ = run("0")
    assert returned == 0 and now == default


@pytest.mark.parametrize("value", ["many", "-1"])
def test_bad_value_is_named_and_the_default_used(value):
    (returned, now, _default), err = run(value)
    assert returned == 1 and now == 1
    assert "NANO_VISION_CV_THREADS" in err and repr(value) in err
