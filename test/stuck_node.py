"""A node for tests (not a test module): bounded services with a handler that never returns.

Run as ``python test/stuck_node.py --ros-args ...`` by test_command_hostile: it is spun by the
product's runtime (ros.runtime.run_node: the default executor, or NANO_VISION_EXECUTOR), so the
test sees what a real node process does while one of its commands is stuck. Offers
``~/delete_face`` (name ``"hang"`` blocks its handler for good, any other name answers
``pong <name>``) and ``~/list_faces`` (answers at once), both through BoundedServices with a 1.5 s
timeout; echoes every std_msgs/Int32 on ``~/ping`` to ``~/pong`` (a subscription that must keep
being served) and counts ``~/tick`` at 10 Hz (a timer).
"""

from __future__ import annotations

import sys
import threading
from typing import Any

from rclpy.node import Node
from std_msgs.msg import Int32

from nano_vision_msgs.srv import DeleteFace, ListFaces
from nano_vision_ros.ros.runtime import run_node
from nano_vision_ros.ros.services import BoundedServices


class StuckNode(Node):
    """The test's server: one stuck-able service, one quick one, a subscription and a timer."""

    def __init__(self) -> None:
        super().__init__("stuck_node")
        self._never = threading.Event()
        self.pong = self.create_publisher(Int32, "~/pong", 10)
        self.create_subscription(Int32, "~/ping", lambda m: self.pong.publish(Int32(data=m.data)), 10)
        self.tick = self.create_publisher(Int32, "~/tick", 10)
        self._ticks = 0
        self.create_timer(0.1, self._on_tick)
        self.services_host = BoundedServices(self, timeout=1.5, max_overrun=2)
        self.services_host.add(DeleteFace, "delete_face", self._delete)
        self.services_host.add(ListFaces, "list_faces", self._list)

    def _on_tick(self) -> None:
        self._ticks += 1
        self.tick.publish(Int32(data=self._ticks))

    def _delete(self, req: Any, resp: Any) -> Any:
        if req.name == "hang":
            self._never.wait()  # a handler that never returns (its thread is a daemon)
        resp.message = f"pong {req.name}"
        return resp

    def _list(self, req: Any, resp: Any) -> Any:
        resp.message = "listed"
        return resp

    def destroy_node(self) -> None:
        self.services_host.destroy()
        super().destroy_node()


if __name__ == "__main__":
    sys.exit(run_node(StuckNode))
