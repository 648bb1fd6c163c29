"""Periodic diagnostic_msgs/DiagnosticArray on /diagnostics, one status per node."""
from __future__ import annotations

import socket
from typing import Callable

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.node import Node

OK, WARN, ERROR, STALE = DiagnosticStatus.OK, DiagnosticStatus.WARN, DiagnosticStatus.ERROR, DiagnosticStatus.STALE


class Diagnostics:
    """Calls `collect()` every `period` s and publishes its (level, message, values) as one status.

    `collect` returns ``(level, message, {key: value})``; values are turned into strings.
    """

    def __init__(
        self,
        node: Node,
        collect: Callable[[], tuple[int, str, dict[str, object]]],
        period: float = 1.0,
        hardware_id: str | None = None,
    ) -> None:
        self._node = node
        self._collect = collect
        self._pub = node.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._name = f"{node.get_fully_qualified_name()}"
        self._hw = hardware_id or socket.gethostname()
        self._timer = node.create_timer(period, self.publish)

    def publish(self) -> None:
        level, message, values = self._collect()
        st = DiagnosticStatus(level=bytes([level]) if isinstance(level, int) else level,
                              name=self._name, message=message, hardware_id=self._hw)
        st.values = [KeyValue(key=str(k), value=_fmt(v)) for k, v in values.items()]
        arr = DiagnosticArray(status=[st])
        arr.header.stamp = self._node.get_clock().now().to_msg()
        self._pub.publish(arr)

    def destroy(self) -> None:
        self._node.destroy_timer(self._timer)
        self._node.destroy_publisher(self._pub)


def _fmt(v: object) -> str:
    if isinstance(v, float):
        return f"{v:.3f}"
    return str(v)
