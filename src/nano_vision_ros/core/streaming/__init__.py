"""Live streaming: raw frames -> H.264 encoder subprocess (ffmpeg or GStreamer) -> RTMP, self-healing."""

from nano_vision_ros.core.streaming.encoder import EncoderSettings, build_command, ffmpeg_command, gstreamer_command
from nano_vision_ros.core.streaming.streamer import RtmpStreamer, StreamerOptions

__all__ = ["EncoderSettings", "RtmpStreamer", "StreamerOptions", "build_command", "ffmpeg_command", "gstreamer_command"]
