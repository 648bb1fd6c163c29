"""rtmp_streamer_node: an image topic (raw or annotated) -> H.264 -> RTMP (nginx-rtmp), self-healing.

The subscription callback only hands the message to a ``LatestWorker``; its thread converts to
BGR and passes the frame to ``core.streaming.RtmpStreamer``, whose own writer thread feeds the
encoder subprocess. Neither blocks the subscription: late frames are dropped and counted.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator
from rclpy.node import Node
from sensor_msgs.msg import Image

from nano_vision_ros.core.opencv_threads import limit_opencv_threads
from nano_vision_ros.core.options import options_from
from nano_vision_ros.core.streaming import RtmpStreamer, StreamerOptions
from nano_vision_ros.ros import diagnostics, qos
from nano_vision_ros.ros.image import to_bgr
from nano_vision_ros.ros.naming import expand_camera
from nano_vision_ros.ros.params import load_config
from nano_vision_ros.ros.runtime import run_node
from nano_vision_ros.ros.worker import LatestWorker

log = logging.getLogger(__name__)


class StreamerConfig(BaseModel):
    image_topic: str = Field("image_annotated", description="image topic to stream (image_raw or image_annotated)")
    url: str = Field(
        "rtmp://127.0.0.1:1935/live/{camera}",
        description="RTMP URL to publish to; {camera} = the node's namespace (e.g. cam0)",
    )
    width: int = Field(0, ge=0, le=7680, description="output width; 0 = the image's width")
    height: int = Field(0, ge=0, le=4320, description="output height; 0 = the image's height")
    fps: float = Field(15.0, gt=0, le=120, description="output frame rate (extra input frames are skipped)")
    bitrate_kbps: int = Field(2000, ge=50, le=100000, description="target video bitrate in kbit/s")
    gop: int = Field(30, ge=1, le=1000, description="keyframe interval in frames (a new viewer waits up to gop/fps s)")
    preset: str = Field("ultrafast", description="x264 preset (ultrafast .. medium)")
    encoder: Literal["auto", "ffmpeg", "gstreamer"] = Field("auto", description="encoder subprocess")
    ffmpeg_codec: str = Field("auto", description="ffmpeg codec: auto (hardware if it works, else libx264) or a name")
    backoff_min: float = Field(0.5, gt=0, description="first reconnect delay in s")
    backoff_max: float = Field(10.0, gt=0, description="longest reconnect delay in s")
    stall_timeout: float = Field(5.0, gt=0, description="restart an encoder that accepts no frame for this long (s)")
    diagnostics_period: float = Field(1.0, gt=0, description="diagnostics period in s")

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not v.startswith(("rtmp://", "rtmps://")):
            raise ValueError("must start with rtmp:// or rtmps://")
        return v

    @field_validator("width", "height")
    @classmethod
    def _even(cls, v: int) -> int:
        if v % 2:
            raise ValueError("must be even (H.264 4:2:0)")
        return v


class RtmpStreamerNode(Node):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__("rtmp_streamer_node", **kwargs)
        limit_opencv_threads()  # per-frame OpenCV work: no busy-waiting pool (core.opencv_threads)
        self.cfg = load_config(self, StreamerConfig)
        c = self.cfg
        self.url = expand_camera(c.url, self.get_namespace())
        self.streamer = RtmpStreamer(options_from(StreamerOptions, c, url=self.url))
        self.worker: LatestWorker[Image] = LatestWorker(self._handle, name="streamer-convert")
        self.sub = self.create_subscription(Image, c.image_topic, self.worker.submit, qos.SENSOR)
        self.diag = diagnostics.Diagnostics(self, self._collect, c.diagnostics_period)
        self.get_logger().info(f"streaming {self.resolve_topic_name(c.image_topic)} to {self.url} at {c.fps:g} fps")

    def _handle(self, msg: Image) -> None:
        self.streamer.push(to_bgr(msg))  # a bad frame raises ImageError: counted by the worker's BadFrames

    def _collect(self) -> tuple[int, str, dict[str, object]]:
        s = self.streamer.stats()
        dropped, age = s["dropped"], s["input_age_s"]
        assert isinstance(dropped, int) and isinstance(age, float)  # what RtmpStreamer.stats() gives
        s["dropped_before_encoder"] = self.worker.dropped
        s["dropped_total"] = dropped + self.worker.dropped
        s["convert_errors"] = self.worker.errors
        state = s["state"]
        if state == "streaming" and age > 5.0:
            level, text = diagnostics.WARN, f"no new frame for {age:.0f}s; repeating the last one"
        elif state == "streaming":
            level, text = diagnostics.OK, "streaming"
        elif state in ("idle", "starting"):
            level, text = diagnostics.OK, "waiting for frames" if state == "idle" else "starting encoder"
        else:
            level, text = diagnostics.WARN, f"{state}: {s['last_error']}"[:200]
        if self.worker.errors and self.worker.last_error:
            s["last_convert_error"] = self.worker.last_error
        return level, text, s

    def destroy_node(self) -> None:
        if hasattr(self, "worker"):  # absent when __init__ failed (bad config)
            self.worker.stop()
        if hasattr(self, "streamer"):
            self.streamer.close()
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    return run_node(RtmpStreamerNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
