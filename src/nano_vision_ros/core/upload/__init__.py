"""Clip upload: the ``nano-vision-upload/1`` protocol (resumable, checked), client, receiver, persistent queue."""

from nano_vision_ros.core.upload.client import ServerAddress, UploadError, UploadResult, upload_file
from nano_vision_ros.core.upload.http_put import http_put
from nano_vision_ros.core.upload.queue import DONE, FAILED, QUEUED, UPLOADING, UploadQueue
from nano_vision_ros.core.upload.server import Receiver, ReceiverOptions
from nano_vision_ros.core.upload.uploader import Uploader

__all__ = [
    "DONE",
    "FAILED",
    "QUEUED",
    "UPLOADING",
    "Receiver",
    "ReceiverOptions",
    "ServerAddress",
    "UploadError",
    "UploadQueue",
    "UploadResult",
    "Uploader",
    "http_put",
    "upload_file",
]
