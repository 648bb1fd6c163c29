"""The annotated view of a camera (``image_annotated``): frame + what the rules see, only while watched.

The events node owns one: it has the zones (its rules), the active events (``core.overlay.Violations``)
and every detections topic of the camera, and it already keeps the newest frames (matched by stamp)
for snapshots. ``submit`` is called from the rules thread; it costs a subscriber count when nobody
watches, else a hand-over to a drop-oldest worker that converts, draws (core.overlay) and publishes.
"""

from __future__ import annotations

import logging
from typing import Any

from sensor_msgs.msg import Image

from nano_vision_ros.core import overlay
from nano_vision_ros.core.detection.types import Detections
from nano_vision_ros.core.events.snapshot import FrameBuffer
from nano_vision_ros.ros import qos
from nano_vision_ros.ros.image import converter, to_bgr
from nano_vision_ros.ros.worker import LatestWorker

log = logging.getLogger(__name__)


class AnnotatedView:
    """Publishes frames with boxes, zones + counts, violators in red and a legend on ``topic``."""

    def __init__(self, node: Any, topic: str, frames: FrameBuffer[Image], tolerance: float) -> None:
        self.pub = node.create_publisher(Image, topic, qos.sensor(1))
        self.frames, self.tolerance = frames, tolerance
        self.zones: list[overlay.ZoneShape] = []
        self.lines: list[overlay.LineShape] = []
        self.violations = overlay.Violations()
        self.published = 0
        self._latest: dict[int, Detections] = {}  # detections topic index -> its newest message
        self.no_frame = 0  # detections whose frame was not (or no longer) in the buffer
        self._conv = converter()
        self.worker: LatestWorker[tuple[float, list[Detections]]] = LatestWorker(self._draw, name="events-annotated")

    def watching(self) -> bool:
        return self.pub.get_subscription_count() > 0

    def submit(self, source: int, stamp: float, dets: Detections) -> None:
        """Detections of the camera's `source`-th detections topic. The first topic's messages are
        drawn (on their frame), with the newest of every other topic (other detectors)."""
        if not self.watching():
            self._latest.clear()
            return
        self._latest[source] = dets
        if source == 0:
            self.worker.submit((stamp, [d for _, d in sorted(self._latest.items())]))

    def _draw(self, item: tuple[float, list[Detections]]) -> None:
        stamp, dets = item
        found = self.frames.nearest(stamp, self.tolerance)
        if found is None:
            self.no_frame += 1
            return
        msg = found[1]
        img = to_bgr(msg)  # ImageError: counted by the worker as a bad frame
        out = overlay.draw(img, overlay.scene(dets, self.zones, self.violations.snapshot(), self.lines))
        self.pub.publish(self._conv.to_msg(out, "bgr8", msg.header))
        self.published += 1

    def stop(self) -> None:
        self.worker.stop()
