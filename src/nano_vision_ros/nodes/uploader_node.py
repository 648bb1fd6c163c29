"""uploader_node: deliver finished clips (``clips``) to the receiver (``nano-vision receive``).

One uploader serves the whole site: by default it subscribes every ``.../clips`` topic it discovers
and reports each clip's state on ``clip_status`` beside the clips topic it came from
(``/cam0/clips`` -> ``/cam0/clip_status``), where that camera's events node listens.

Each clip is put in a persistent SQLite queue and uploaded with ``nano-vision-upload/1``
(resumable, sha256-checked); failures are retried with exponential backoff, across restarts. Every
state change (queued, uploading, done, failed; with remote name and error) is published on
``clip_status`` (nano_vision_msgs/ClipStatus) for the events node to forward as an event update.
Clip notices are ``nano_vision_msgs/Clip``; discovery takes every ``.../clips`` topic of that type.
"""

from __future__ import annotations

import functools
import logging
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator
from rclpy.node import Node
from rclpy.publisher import Publisher
from rclpy.subscription import Subscription

from nano_vision_msgs.msg import Clip, ClipStatus
from nano_vision_ros.core.errors import ConfigError
from nano_vision_ros.core.events.clips import ClipStatusNotice
from nano_vision_ros.core.hashing import sha256_file
from nano_vision_ros.core.paths import read_token_file
from nano_vision_ros.core.upload import (
    ServerAddress,
    Uploader,
    UploadQueue,
    http_put,
    upload_file,
)
from nano_vision_ros.core.upload.protocol import ProtocolError, check_name
from nano_vision_ros.ros import diagnostics, qos
from nano_vision_ros.ros.events import clip_from_msg, status_to_msg
from nano_vision_ros.ros.params import load_config
from nano_vision_ros.ros.runtime import run_node

log = logging.getLogger(__name__)
TOKEN_ENV = "NANO_VISION_UPLOAD_TOKEN"


def _http_upload(url: str, addr: ServerAddress, path: str, name: str, sha256: str | None = None):
    """The http transport in the shape Uploader calls (addr carries token, timeout, CA)."""
    return http_put(url, addr.token, path, name, sha256, timeout=addr.timeout, tls_ca=addr.tls_ca)


class UploaderConfig(BaseModel):
    clips_topics: list[str] = Field(
        default_factory=lambda: ["*"],
        description="clip notice topics (nano_vision_msgs/Clip); ['*'] = every '.../clips' topic, discovered",
    )
    status_topic: str = Field(
        "clip_status", description="upload states; relative = beside each clips topic (/cam0/clip_status)"
    )
    transport: Literal["tcp", "http"] = Field(
        "tcp", description="tcp: nano-vision-upload/1 (resumable); http: PUT to url"
    )
    url: str = Field("", description="http transport: base URL, the clip goes to <url>/<name> (e.g. a WebDAV folder)")
    host: str = Field("127.0.0.1", description="receiver host")
    port: int = Field(9009, ge=1, le=65535, description="receiver TCP port")
    token_file: str = Field("", description=f"file holding the token; '' = ${TOKEN_ENV}, then the token parameter")
    token: str = Field(
        "", description="the token (prefer token_file or the environment: parameters are readable by any ROS tool)"
    )
    tls: bool = Field(False, description="connect over TLS")
    tls_ca: str = Field("", description="CA file that signs the receiver's certificate ('' = system CAs)")
    timeout: float = Field(30.0, gt=0, description="socket timeout in s")
    queue_db: str = Field(
        "~/.local/share/nano_vision/upload_queue.sqlite", description="persistent queue (SQLite file)"
    )
    remote_prefix: str = Field("", description="folder on the receiver; '' = the camera name of the clip")
    backoff_min: float = Field(2.0, gt=0, description="first retry delay in s")
    backoff_max: float = Field(300.0, gt=0, description="longest retry delay in s")
    max_attempts: int = Field(0, ge=0, description="give up (state failed) after this many tries; 0 = never")
    delete_after_upload: bool = Field(False, description="delete the local clip once the receiver confirmed it")
    diagnostics_period: float = Field(1.0, gt=0, description="diagnostics period in s")

    @model_validator(mode="after")
    def _http_needs_url(self) -> UploaderConfig:
        if self.transport == "http" and not self.url.startswith(("http://", "https://")):
            raise ValueError("url must be an http:// or https:// URL when transport is http")
        return self


class UploaderNode(Node):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__("uploader_node", **kwargs)
        self.cfg = c = load_config(self, UploaderConfig)
        token = self._token(c)
        self.bad_notices = 0
        self._pubs: dict[str, Publisher] = {}
        self._subs: dict[str, Subscription] = {}
        self.queue = UploadQueue(os.path.expanduser(c.queue_db))
        addr = ServerAddress(c.host, c.port, token, tls=c.tls, tls_ca=c.tls_ca or None, timeout=c.timeout)
        upload = functools.partial(_http_upload, c.url) if c.transport == "http" else upload_file
        self.uploader = Uploader(
            self.queue,
            addr,
            on_status=self._publish,
            backoff_min=c.backoff_min,
            backoff_max=c.backoff_max,
            max_attempts=c.max_attempts,
            delete_after_upload=c.delete_after_upload,
            upload=upload,
        )
        if c.clips_topics == ["*"]:
            self._discover()
            self.discovery = self.create_timer(2.0, self._discover)
        else:
            for topic in c.clips_topics:
                self._subscribe(self.resolve_topic_name(topic))
        self.diag = diagnostics.Diagnostics(self, self._collect, c.diagnostics_period)
        self.uploader.start()
        counts = self.queue.counts()
        where = c.url if c.transport == "http" else f"{c.host}:{c.port}"
        self.get_logger().info(f"uploading clips to {where} ({counts['queued']} queued from before)")

    @staticmethod
    def _token(c: UploaderConfig) -> str:
        if c.token_file:
            return read_token_file(c.token_file)
        token = os.environ.get(TOKEN_ENV, "") or c.token
        if not token:
            raise ConfigError(
                f"parameter 'token': no upload token (set token_file, ${TOKEN_ENV} or token)", parameter="token"
            )
        return token

    def _discover(self) -> None:
        """Subscribe every nano_vision_msgs/Clip topic named '.../clips' (one uploader for all cameras)."""
        for name, types in self.get_topic_names_and_types():
            if (
                (name == "/clips" or name.endswith("/clips"))
                and "nano_vision_msgs/msg/Clip" in types
                and name not in self._subs
            ):
                self._subscribe(name)

    def _subscribe(self, topic: str) -> None:
        self._subs[topic] = self.create_subscription(
            Clip, topic, functools.partial(self._on_clip, topic=topic), qos.NOTICES
        )
        self.get_logger().info(f"taking clips from {topic}")

    def _status_topic_for(self, clips_topic: str) -> str:
        if self.cfg.status_topic.startswith("/"):
            return self.cfg.status_topic
        return f"{clips_topic.rsplit('/', 1)[0]}/{self.cfg.status_topic}"

    def _on_clip(self, msg: Clip, topic: str = "") -> None:
        """A clips notice: validate, name it on the receiver, queue it (cheap; the upload runs elsewhere)."""
        try:
            clip = clip_from_msg(msg)
            path = clip.path
            known = self.queue.get(path)
            if known is not None and known.sha256 == clip.sha256:
                return  # re-delivered (transient local after a restart): already queued or done
            if not os.path.isfile(path):
                raise ValueError(f"clip file {path!r} not found")
            sha = clip.sha256 or sha256_file(path)
            size = int(clip.size or os.path.getsize(path))
            folder = self.cfg.remote_prefix or clip.camera
            name = f"{folder.strip('/')}/{Path(path).name}" if folder else Path(path).name
            check_name(name)
        except (ValueError, OSError, ProtocolError) as err:
            self.bad_notices += 1
            self.get_logger().error(f"clip notice ignored: {err}: {msg.path[:200]!r}")
            return
        meta = {
            "event_ids": list(clip.event_ids),
            "camera": clip.camera,
            "status_topic": self._status_topic_for(topic or self.resolve_topic_name("clips")),
        }
        self.uploader.add(path, name, sha, size, meta)

    def _publish(self, status: dict) -> None:
        item = self.queue.get(status["path"])
        topic = (item.meta.get("status_topic") if item else None) or self._status_topic_for(
            self.resolve_topic_name("clips")
        )
        msg = status_to_msg(
            ClipStatusNotice(
                path=status["path"],
                state=status["state"],
                sha256=status.get("sha256") or None,
                remote=status.get("remote") or None,
                error=(status.get("error") or "")[:1000] or None,
                event_ids=[str(e) for e in status.get("event_ids") or []],
            )
        )
        try:
            pub = self._pubs.get(topic)
            if pub is None:
                pub = self._pubs[topic] = self.create_publisher(ClipStatus, topic, qos.NOTICES)
            pub.publish(msg)
        except Exception as err:  # noqa: BLE001 - shutting down
            log.debug("clip_status not published: %s", err)

    def _collect(self) -> tuple[int, str, dict[str, object]]:
        s = self.uploader.stats()
        s["bad_notices"] = self.bad_notices
        if s["queue_failed"]:
            return diagnostics.WARN, f"{s['queue_failed']} clip(s) failed for good", s
        if s["last_error"]:
            return diagnostics.WARN, f"retrying: {s['last_error']}"[:200], s
        return diagnostics.OK, f"{s['queue_queued']} queued, {s['queue_done']} done", s

    def destroy_node(self) -> None:
        uploader = getattr(self, "uploader", None)  # absent when __init__ failed (bad config)
        if uploader is not None and uploader.stop():
            self.queue.close()  # else the cut upload is queued again at the next start
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    return run_node(UploaderNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
