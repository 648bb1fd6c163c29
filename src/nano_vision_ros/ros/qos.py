"""QoS by kind of traffic."""

from __future__ import annotations

from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
    qos_profile_sensor_data,
)

#: Frames and other high-rate sensor data: best effort, keep the newest few.
SENSOR = qos_profile_sensor_data

#: Latched state (class maps, status, camera info for late joiners): reliable + transient local.
LATCHED = QoSProfile(
    depth=1,
    history=HistoryPolicy.KEEP_LAST,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
)

#: Results that a consumer must not miss (detections, events, clip notices).
RELIABLE = QoSProfile(
    depth=50,
    history=HistoryPolicy.KEEP_LAST,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.VOLATILE,
)


def sensor(depth: int = 1) -> QoSProfile:
    """Sensor QoS with a chosen depth (1 = newest frame only)."""
    return QoSProfile(
        depth=depth,
        history=HistoryPolicy.KEEP_LAST,
        reliability=ReliabilityPolicy.BEST_EFFORT,
        durability=DurabilityPolicy.VOLATILE,
    )


#: Clip notices and upload states (recorder -> uploader -> events): reliable, kept for late joiners.
NOTICES = QoSProfile(
    depth=50,
    history=HistoryPolicy.KEEP_LAST,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
)
