"""Clip and upload bookkeeping of the events engine: which clip covers which events.

The recorder announces a finished clip (`ClipNotice`: path, the event ids it covers) and the
uploader reports its upload state (`ClipStatusNotice`). Both come on their own topics, so a status
can overtake its clip's notice; `ClipBook` keeps such statuses until the notice arrives. The
engine turns both into `update` publications (reason `clip` / `clip_status`) of the events named.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from nano_vision_ros.core.events.model import ClipInfo

UploadStatus = Literal["queued", "uploading", "done", "failed"]


class ClipNotice(BaseModel):
    """A clip is ready (recorder): the file, its times and the events it covers."""

    model_config = ConfigDict(extra="forbid")
    path: str = Field(min_length=1, max_length=4096)
    camera: str = ""
    start: float | None = Field(None, description="epoch seconds of the first frame")
    end: float | None = Field(None, description="epoch seconds of the last frame")
    duration: float | None = Field(None, ge=0)
    size: int | None = Field(None, ge=0)
    sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")
    event_ids: list[str] = Field(default_factory=list, max_length=256)

    def clip_info(self) -> ClipInfo:
        """The event's `clip` field for this clip, before any upload state."""
        return ClipInfo(
            path=self.path, duration=self.duration, size=self.size, sha256=self.sha256, upload_state="pending"
        )


class ClipStatusNotice(BaseModel):
    """Where a clip's upload stands (uploader)."""

    model_config = ConfigDict(extra="forbid")
    path: str = Field(min_length=1, max_length=4096)
    state: UploadStatus
    sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")
    remote: str | None = Field(None, max_length=4096)
    error: str | None = Field(None, max_length=1000)
    event_ids: list[str] = Field(default_factory=list, max_length=256)


class ClipBook:
    """Clip path -> the event ids it covers; statuses that came before their clip's notice.

    Bounded: the newest `remember` clips and 100 early statuses are kept.
    """

    def __init__(self, remember: int = 2000) -> None:
        self._events: OrderedDict[str, list[str]] = OrderedDict()
        self._early: OrderedDict[str, list[ClipStatusNotice]] = OrderedDict()
        self._remember = remember

    def add(self, clip: ClipNotice) -> list[ClipStatusNotice]:
        """Record a clip's events; returns the statuses of it that arrived before (to apply now)."""
        self._events[clip.path] = list(clip.event_ids)
        self._events.move_to_end(clip.path)
        while len(self._events) > self._remember:
            self._events.popitem(last=False)
        return self._early.pop(clip.path, [])

    def events_of(self, status: ClipStatusNotice) -> list[str] | None:
        """The event ids a status is about; None (and kept for later) when its clip is not known yet."""
        ids = self._events.get(status.path)
        if ids is None:
            self._early.setdefault(status.path, []).append(status)
            while len(self._early) > 100:
                self._early.popitem(last=False)
        return ids

    @staticmethod
    def apply(clip: ClipInfo, status: ClipStatusNotice) -> bool:
        """Put `status` into an event's clip; False when nothing changed (a repeated state)."""
        if clip.upload_state == status.state and status.state != "failed":
            return False
        clip.upload_state = status.state
        clip.remote = status.remote[:4096] if status.remote else clip.remote
        clip.error = status.error[:1000] if status.error else None
        return True
