"""core.options.options_from: a core dataclass from a parameter model, shared fields passed on by name."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from pydantic import BaseModel

from nano_vision_ros.core.options import options_from


@dataclass
class _Core:
    fps: float
    width: int = 0
    token: str = ""
    keepalive: float = 1.0  # core-only: keeps its default


class _Params(BaseModel):
    fps: float = 10.0
    width: int = 320
    image_topic: str = "image_raw"  # node-only: not passed


def test_shared_fields_by_name_overrides_win():
    core = options_from(_Core, _Params(fps=5.0), token="t", width=640)
    assert core == _Core(fps=5.0, width=640, token="t", keepalive=1.0)


# Every parameter model the nodes turn into a core dataclass with options_from: (model, dataclass,
# the model's names the core does not take, the core's names the node derives or leaves at their default).
# A field added to one side only, or renamed on one side, fails here instead of being dropped silently.
def _pairs():
    from nano_vision_ros.core.detection.motion import MotionConfig
    from nano_vision_ros.core.mqtt.client import LinkSettings
    from nano_vision_ros.core.recording import RecorderOptions
    from nano_vision_ros.core.streaming.streamer import StreamerOptions
    from nano_vision_ros.core.streaming.webrtc import WebRtcOptions
    from nano_vision_ros.core.tracking import TrackerConfig
    from nano_vision_ros.nodes.detector_node import MotionParams, TrackingParams
    from nano_vision_ros.nodes.mqtt_bridge_node import MqttBridgeConfig
    from nano_vision_ros.nodes.recorder_node import RecorderConfig
    from nano_vision_ros.nodes.rtmp_streamer_node import StreamerConfig
    from nano_vision_ros.nodes.webrtc_node import WebRtcConfig

    return {
        "tracking": (TrackingParams, TrackerConfig, {"enabled"}, {"new_track_threshold", "low_match_iou"}),
        "motion": (MotionParams, MotionConfig, set(), {"global_change"}),
        "recorder": (
            RecorderConfig,
            RecorderOptions,
            {"image_topic", "compressed", "events_topic", "clips_topic", "use_header_stamp", "diagnostics_period"},
            {"max_gap", "frame_timeout"},
        ),
        "mqtt_link": (
            MqttBridgeConfig,
            LinkSettings,
            set(MqttBridgeConfig.model_fields)
            - {
                "host",
                "port",
                "client_id",
                "keepalive",
                "username",
                "tls",
                "ca_file",
                "cert_file",
                "key_file",
                "tls_insecure",
                "reconnect_min",
                "reconnect_max",
                "window",
            },
            {"password", "will_topic"},
        ),
        "rtmp_streamer": (
            StreamerConfig,
            StreamerOptions,
            {"image_topic", "diagnostics_period"},
            {"stable_after", "max_repeat", "keepalive"},
        ),
        "webrtc": (WebRtcConfig, WebRtcOptions, {"image_topic", "token_file", "diagnostics_period"}, {"token"}),
    }


@pytest.mark.parametrize("pair", ["tracking", "motion", "recorder", "mqtt_link", "rtmp_streamer", "webrtc"])
def test_node_models_and_core_options_cannot_drift(pair):
    import dataclasses

    model, core, node_only, core_only = _pairs()[pair]
    model_names = set(model.model_fields)
    core_names = {f.name for f in dataclasses.fields(core)}
    assert model_names - core_names == node_only, "a node parameter the core does not take (or no longer)"
    assert core_names - model_names == core_only, "a core option the node cannot set (or now can)"
