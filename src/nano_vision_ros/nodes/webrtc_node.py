"""webrtc_node: the annotated stream to a browser over WebRTC (a page + WHEP), beside the RTMP output.

Idle until someone watches: the image subscription exists only while at least one viewer is
connected, so the detector does not even draw ``image_annotated`` otherwise. Frames go through a
``LatestWorker`` (drop-oldest) to ``core.streaming.webrtc.WebRtcServer``, which encodes once for
every viewer. aiortc/PyAV/aiohttp are the optional ``webrtc`` extra: missing, the node exits with
a message naming them (docs/nodes/webrtc_node.md, docs/WEBRTC.md).
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator
from rclpy.node import Node
from rclpy.subscription import Subscription
from sensor_msgs.msg import Image

from nano_vision_ros.core.errors import ConfigError, RuntimeMissingError
from nano_vision_ros.core.options import options_from
from nano_vision_ros.core.paths import read_token_file
from nano_vision_ros.core.streaming.webrtc import WebRtcOptions, WebRtcServer
from nano_vision_ros.ros import diagnostics, qos
from nano_vision_ros.ros.image import to_bgr
from nano_vision_ros.ros.naming import camera_name
from nano_vision_ros.ros.params import load_config
from nano_vision_ros.ros.runtime import run_node
from nano_vision_ros.ros.worker import LatestWorker

TOKEN_ENV = "NANO_VISION_WEBRTC_TOKEN"
logging.getLogger("aioice").setLevel(logging.WARNING)  # one INFO line per ICE check otherwise


class WebRtcConfig(BaseModel):
    image_topic: str = Field("image_annotated", description="image topic to show (image_annotated or image_raw)")
    host: str = Field("127.0.0.1", description="address the page and WHEP listen on (0.0.0.0: every interface)")
    port: int = Field(8889, ge=1, le=65535, description="TCP port of the page (http://HOST:PORT/) and of POST /whep")
    codec: Literal["h264", "vp8"] = Field("h264", description="video codec sent to browsers (h264: cheaper to encode)")
    width: int = Field(0, ge=0, le=3840, description="output width; 0 = the image's width")
    height: int = Field(0, ge=0, le=2160, description="output height; 0 = the image's height")
    fps: float = Field(10.0, gt=0, le=60, description="most frames per second sent (extra input frames are skipped)")
    bitrate_kbps: int = Field(1500, ge=100, le=20000, description="target bitrate in kbit/s")
    gop: int = Field(
        20, ge=1, le=600, description="keyframe interval in frames (a viewer that lags resyncs at the next one)"
    )
    max_viewers: int = Field(4, ge=1, le=64, description="viewers at once; more are answered 503")
    token_file: str = Field(
        "", description=f"file holding an access token; '' = ${TOKEN_ENV}; neither = no authentication"
    )
    ice_addresses: list[str] = Field(
        default_factory=list, description="addresses offered as ICE candidates; [] = host (every interface for 0.0.0.0)"
    )
    title: str = Field("", description="page title; '' = 'live view <camera>'")
    diagnostics_period: float = Field(1.0, gt=0, description="diagnostics period in s")

    @field_validator("width", "height")
    @classmethod
    def _even(cls, v: int) -> int:
        if v % 2:
            raise ValueError("must be even (4:2:0 video)")
        return v


class WebRtcNode(Node):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__("webrtc_node", **kwargs)
        self.cfg = c = load_config(self, WebRtcConfig)
        camera = camera_name(self.get_namespace()) or "camera"
        self._sub_lock = threading.Lock()
        self.sub: Subscription[Image] | None = None  # only while someone watches
        self.worker: LatestWorker[Image] = LatestWorker(self._handle, name="webrtc-encode")
        opts = options_from(
            WebRtcOptions,
            c,
            token=self._token(),
            ice_addresses=tuple(c.ice_addresses),
            title=c.title or f"live view {camera}",
        )
        try:
            self.server = WebRtcServer(opts, self._set_subscribed)
        except RuntimeMissingError as err:
            raise ConfigError(str(err), "codec") from None
        except OSError as err:
            raise ConfigError(
                f"parameter 'port': cannot serve on {c.host}:{c.port}: {err.strerror or err}", "port"
            ) from None
        self.topic = self.resolve_topic_name(c.image_topic)
        self.diag = diagnostics.Diagnostics(self, self._collect, c.diagnostics_period)
        auth = "token required" if opts.token else "no authentication"
        self.get_logger().info(
            f"live view of {self.topic} on http://{c.host}:{c.port}/ ({c.codec}, {auth}); "
            "subscribes only while someone watches"
        )

    def _token(self) -> str:
        c = self.cfg
        if c.token_file:
            return read_token_file(c.token_file)
        return os.environ.get(TOKEN_ENV, "").strip()

    def _set_subscribed(self, on: bool) -> None:
        """Called by the server when the first viewer arrives (True) and the last one leaves (False)."""
        with self._sub_lock:
            if on and self.sub is None:
                self.sub = self.create_subscription(
                    Image, self.cfg.image_topic, self.worker.submit, qos.sensor(1)
                )  # newest frame only: no backlog in the reader
            elif not on and self.sub is not None:
                self.destroy_subscription(self.sub)
                self.sub = None

    def _handle(self, msg: Image) -> None:
        self.server.push(to_bgr(msg))  # a bad frame raises ImageError: counted by the worker's BadFrames

    def _collect(self) -> tuple[int, str, dict[str, object]]:
        s = self.server.status()
        s["subscribed"] = self.sub is not None
        s["topic"] = self.topic
        s["dropped_before_encoder"] = self.worker.dropped
        s["convert_errors"] = self.worker.errors
        if self.worker.errors and self.worker.last_error:
            s["last_convert_error"] = self.worker.last_error
        if self.server.last_error:
            s["last_error"] = self.server.last_error
        n = s["viewers"]
        assert isinstance(n, int)  # what WebRtcServer.stats() gives
        return diagnostics.OK, f"{n} viewer{'s' if n != 1 else ''}" if n else "idle (no viewer)", s

    def destroy_node(self) -> None:
        if hasattr(self, "server"):  # absent when __init__ failed (bad config)
            self.server.close()
        if hasattr(self, "worker"):
            self.worker.stop()
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    return run_node(WebRtcNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
