"""recorder_node: the last seconds of video encoded once into an H.264 ring; an MP4 clip around each event burst.

Frames (raw ``Image`` or a camera's jpeg ``CompressedImage``) go through a ``LatestWorker`` to
``core.recording.Recorder`` (one continuous encoder; clips are cut from it by stream copy); events
(``events``, nano_vision_msgs/Event) go through a queue thread so neither subscription waits on
ffmpeg. The recorder covers only publications that ask for footage (`core.events.model.asks_footage`:
what the scene shows while the event is active, and its end); the events node's clip and
upload-state reports are about footage that exists, so the recorder -> clips -> events loop ends
there (skipped ones are counted: `events_ignored`). Each finished clip is announced on ``clips`` (nano_vision_msgs/Clip: path, camera,
start, end, duration, size, sha256, event_ids), reliable and transient-local so an uploader
started later still gets recent clips.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from typing import Any

from pydantic import BaseModel, Field, model_validator
from rclpy.node import Node
from sensor_msgs.msg import CompressedImage, Image

from nano_vision_msgs.msg import Clip
from nano_vision_msgs.msg import Event as EventMsg
from nano_vision_ros.core.events.clips import ClipNotice
from nano_vision_ros.core.opencv_threads import limit_opencv_threads
from nano_vision_ros.core.options import options_from
from nano_vision_ros.core.recording import Recorder, RecorderOptions
from nano_vision_ros.ros import diagnostics, qos
from nano_vision_ros.ros.events import clip_to_msg, event_from_msg
from nano_vision_ros.ros.image import to_bgr
from nano_vision_ros.ros.naming import camera_name
from nano_vision_ros.ros.params import load_config
from nano_vision_ros.ros.runtime import run_node
from nano_vision_ros.ros.worker import LatestWorker

log = logging.getLogger(__name__)


class RecorderConfig(BaseModel):
    image_topic: str = Field(
        "image_raw", description="frames to record (use image_raw/compressed with compressed:=true)"
    )
    compressed: bool = Field(
        False, description="image_topic is a sensor_msgs/CompressedImage (jpeg bytes kept as they are)"
    )
    events_topic: str = Field("events", description="events topic (nano_vision_msgs/Event)")
    clips_topic: str = Field("clips", description="where finished clips are announced")
    camera: str = Field("", description="camera name for file names and the event filter; '' = the node's namespace")
    output_dir: str = Field("~/.local/share/nano_vision/clips", description="folder for the MP4 clips")
    pre_seconds: float = Field(20.0, ge=0, le=300, description="seconds before the event")
    post_seconds: float = Field(40.0, gt=0, le=600, description="seconds after the (last merged) event")
    max_clip_seconds: float = Field(
        180.0, gt=0, le=3600, description="longest clip; a longer event continues in the next"
    )
    fps: float = Field(15.0, gt=0, le=60, description="clip frame rate (frames are resampled to it)")
    buffer_max_mb: float = Field(96.0, gt=0, description="memory bound of the ring buffer in MiB")
    codec: str = Field(
        "libx264",
        description="ffmpeg H.264 encoder of the recording stream (encoded once; clips are cut by stream copy)",
    )
    crf: int = Field(26, ge=0, le=51, description="x264 quality (lower = better, bigger)")
    preset: str = Field("ultrafast", description="x264 preset (ultrafast: half the CPU of veryfast, ~1.5x the bytes)")
    keyframe_seconds: float = Field(
        1.0, gt=0, le=10, description="keyframe interval: clips start up to this much before pre_seconds"
    )
    max_total_mb: float = Field(5000.0, ge=0, description="disk quota of output_dir in MiB (oldest deleted); 0 = none")
    max_age_hours: float = Field(168.0, ge=0, description="clips older than this are deleted; 0 = keep")
    min_free_mb: float = Field(200.0, ge=0, description="skip (and report) a clip when less disk is free")
    use_header_stamp: bool = Field(True, description="time frames by their header stamp (else by arrival)")
    diagnostics_period: float = Field(1.0, gt=0, description="diagnostics period in s")

    @model_validator(mode="after")
    def _ring_holds_pre(self) -> RecorderConfig:
        if self.max_clip_seconds < self.post_seconds:
            raise ValueError("max_clip_seconds must be >= post_seconds")
        return self


class RecorderNode(Node):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__("recorder_node", **kwargs)
        limit_opencv_threads()  # per-frame OpenCV work: no busy-waiting pool (core.opencv_threads)
        self.cfg = c = load_config(self, RecorderConfig)
        self.camera = c.camera or camera_name(self.get_namespace()) or "camera"
        self._last_t = 0.0
        self.frames_recorded = 0
        self.bad_events = 0
        self.recorder = Recorder(
            options_from(RecorderOptions, c, output_dir=os.path.expanduser(c.output_dir), camera=self.camera),
            on_clip=self._publish_clip,
            on_error=lambda text: None,
        )
        self.pub = self.create_publisher(Clip, c.clips_topic, qos.NOTICES)
        self.worker = LatestWorker(self._handle_frame, name="recorder-frames")
        msg_type = CompressedImage if c.compressed else Image
        self.sub = self.create_subscription(msg_type, c.image_topic, self.worker.submit, qos.SENSOR)
        self._events: queue.Queue[EventMsg | None] = queue.Queue(maxsize=1000)
        self._event_thread = threading.Thread(target=self._event_loop, name="recorder-events", daemon=True)
        self._event_thread.start()
        self.ev_sub = self.create_subscription(EventMsg, c.events_topic, self._on_event_msg, qos.RELIABLE)
        self.timer = self.create_timer(1.0, lambda: self.recorder.tick())  # no TimerInfo into tick(now)
        self.diag = diagnostics.Diagnostics(self, self._collect, c.diagnostics_period)
        self.get_logger().info(
            f"recording {self.resolve_topic_name(c.image_topic)} ({c.pre_seconds:g}s pre / {c.post_seconds:g}s post) "
            f"to {self.recorder.opt.output_dir} as camera {self.camera}"
        )

    # -- frames ------------------------------------------------------------------------------------
    def _stamp(self, msg: Image | CompressedImage) -> float:
        now = time.time()
        if self.cfg.use_header_stamp:
            t = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
            if abs(t - now) < 60.0:
                return t
        return now

    def _handle_frame(self, msg: Image | CompressedImage) -> None:
        t = self._stamp(msg)
        if t - self._last_t < 0.9 / self.cfg.fps:
            return  # above the clip rate: not worth a conversion
        img = to_bgr(msg)  # a bad frame raises ImageError: counted by the worker's BadFrames
        self._last_t = t
        self.frames_recorded += 1
        self.recorder.add_frame(t, img)  # encoded once into the ring; clips are cut from it

    # -- events ------------------------------------------------------------------------------------
    def _on_event_msg(self, msg: EventMsg) -> None:
        try:
            self._events.put_nowait(msg)
        except queue.Full:
            self.bad_events += 1
            self.get_logger().error("event queue full; event dropped", throttle_duration_sec=5.0)

    def _event_loop(self) -> None:
        while True:
            msg = self._events.get()
            if msg is None:
                return
            try:
                ev = event_from_msg(msg)
            except ValueError as err:
                self.bad_events += 1
                self.get_logger().warning(f"bad event {msg.event_id[:64]!r} ignored: {err}", throttle_duration_sec=5.0)
                continue
            if self.cfg.camera and ev.camera != self.cfg.camera:
                continue  # what asks no footage the recorder skips and counts itself (events_ignored)
            try:
                self.recorder.on_event(ev.to_json())
            except Exception as err:  # noqa: BLE001 - a bad event must not stop recording
                self.get_logger().error(f"event {ev.event_id}: {err}")

    def _publish_clip(self, info: dict) -> None:
        notice = ClipNotice(
            path=info["path"],
            camera=info.get("camera", self.camera),
            start=info.get("start"),
            end=info.get("end"),
            duration=info.get("duration"),
            size=info.get("size"),
            sha256=info.get("sha256"),
            event_ids=list(info.get("event_ids", [])),
        )
        self.pub.publish(clip_to_msg(notice))
        self.get_logger().info(
            f"clip {info['name']} ({info['duration']:.1f}s, {info['size']} bytes) for {info['event_ids']}"
        )

    def _collect(self) -> tuple[int, str, dict[str, object]]:
        s = self.recorder.stats()
        s.update(
            frames_recorded=self.frames_recorded,
            frames_dropped=self.worker.dropped,
            frame_errors=self.worker.errors,
            bad_events=self.bad_events,
        )
        if not s["output_dir_writable"]:
            return diagnostics.ERROR, f"output_dir not writable: {s['last_error']}"[:200], s
        if s["last_error"]:
            return diagnostics.WARN, str(s["last_error"])[:200], s
        return diagnostics.OK, "recording" if s["recording"] else "buffering", s

    def destroy_node(self) -> None:
        if hasattr(self, "diag"):  # fully constructed (not a bad config)
            self.worker.stop()
            self._events.put(None)
            self._event_thread.join(2)
            self.recorder.flush()  # an open clip is finished with what there is and announced
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    return run_node(RecorderNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
