"""metrics_node: /diagnostics -> Prometheus /metrics (docs/METRICS.md, docs/nodes/metrics_node.md).

Thin: each status is copied into core.metrics.MetricsStore (a dict copy, no work in the
callback); the metrics are built only when Prometheus scrapes, on prometheus_client's own HTTP
thread, which blocks on its socket between scrapes (the node idles).
"""

from __future__ import annotations

import os
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray
from prometheus_client import start_http_server
from prometheus_client.registry import CollectorRegistry
from pydantic import BaseModel, Field, model_validator
from rclpy.node import Node

from nano_vision_ros.core.errors import ConfigError
from nano_vision_ros.core.metrics import MetricsCollector, MetricsStore, Status
from nano_vision_ros.ros import diagnostics
from nano_vision_ros.ros.params import load_config
from nano_vision_ros.ros.runtime import run_node

MAX_VALUES = 200  # key/values kept per status (a hostile publisher cannot make one status huge)


class MetricsConfig(BaseModel):
    host: str = Field("127.0.0.1", description="address /metrics listens on (0.0.0.0 for a Prometheus on another host)")
    port: int = Field(9469, ge=1, le=65535, description="TCP port of /metrics")
    stale_after: float = Field(
        5.0, gt=0, description="a node silent this long (s) is reported up=0 and its series withdrawn"
    )
    forget_after: float = Field(3600.0, gt=0, description="a node silent this long (s) is dropped from /metrics")
    diagnostics_period: float = Field(1.0, gt=0, description="period of this node's own diagnostics (s)")

    @model_validator(mode="after")
    def _forget_after_stale(self) -> MetricsConfig:
        if self.forget_after < self.stale_after:
            raise ValueError("forget_after must be >= stale_after")
        return self


def status_of(st: Any) -> Status:
    """diagnostic_msgs/DiagnosticStatus (a rosidl message: untyped for mypy) -> core Status."""
    lv = st.level
    level = lv[0] if isinstance(lv, (bytes, bytearray)) and lv else int(lv) if isinstance(lv, int) else 0
    values = {kv.key: kv.value for kv in list(st.values)[:MAX_VALUES]}
    return Status(
        name=str(st.name)[:200],
        level=level,
        message=str(st.message)[:200],
        hardware_id=str(st.hardware_id)[:200],
        values=values,
    )


class MetricsNode(Node):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__("metrics_node", **kwargs)
        self.cfg = c = load_config(self, MetricsConfig)
        self.store = MetricsStore(c.stale_after, c.forget_after)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(MetricsCollector(self.store, self_node=(self.get_fully_qualified_name(), os.getpid())))
        try:
            self._server, self._thread = start_http_server(c.port, addr=c.host, registry=self.registry)
        except OSError as err:
            raise ConfigError(f"parameter 'port': cannot serve /metrics on {c.host}:{c.port}: {err}", "port") from None
        self.statuses = 0
        self.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 50)
        self.diag = diagnostics.Diagnostics(self, self._collect, c.diagnostics_period)
        self.get_logger().info(f"serving http://{c.host}:{c.port}/metrics")

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        for st in msg.status[:MAX_VALUES]:
            self.store.update(status_of(st))
            self.statuses += 1

    def _collect(self) -> tuple[int, str, dict[str, object]]:
        values: dict[str, object] = {
            "nodes": len(self.store),
            "statuses": self.statuses,
            "refused_nodes": self.store.refused,
            "url": f"http://{self.cfg.host}:{self.cfg.port}/metrics",
        }
        if self.store.refused:
            return diagnostics.WARN, f"{self.store.refused} statuses of new nodes refused (too many nodes)", values
        return diagnostics.OK, f"{values['nodes']} nodes", values

    def destroy_node(self) -> None:
        server = getattr(self, "_server", None)  # absent when __init__ was refused (bad configuration)
        if server is not None:
            server.shutdown()
            server.server_close()
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    return run_node(MetricsNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
