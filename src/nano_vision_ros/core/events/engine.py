"""Rules on tracked detections -> events with a lifecycle (new -> update* -> end).

Each rule evaluates a frame into *hits*: keys (a track, a label, a plate text) whose condition
holds now, with the boxes that show it. A per-(rule, key) state machine debounces hits
(`min_duration` seconds of frame time and `min_frames` frames before `new`), ends an event when
its key has been absent for `end_after` seconds, and keeps that key quiet for `cooldown` seconds
after the end. Detections without a track id share one key per label ("untracked:<label>").
Clip notices (recorder) and upload states (uploader) become `update` events (reason `clip` /
`clip_status`) of the events they name, also after their `end` (bookkeeping in `clips.ClipBook`).
Every publication is a `model.Event`: the MQTT JSON and the ROS message are made from it.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from nano_vision_ros.core.detection.types import Detections
from nano_vision_ros.core.events.clips import ClipBook, ClipNotice, ClipStatusNotice
from nano_vision_ros.core.events.model import Event, Evidence, FaceInfo, PlateInfo, Reason, SnapshotRef, State
from nano_vision_ros.core.events.rules import Hit, RuleBase
from nano_vision_ros.core.events.schema import iso

log = logging.getLogger(__name__)


@dataclass
class _State:
    rule: RuleBase
    key: str
    first: float
    last: float
    frames: int = 1
    event: Event | None = None  # the event while active (its last publication)
    last_pub: float = 0.0


_EXTRA_MODELS = {
    "face": FaceInfo,
    "plate": PlateInfo,
    "evidence": Evidence,
}  # Hit.extra dicts -> their typed event fields


class EventEngine:
    """Per-camera rule evaluation and event lifecycle; thread-safe (one lock)."""

    def __init__(
        self,
        rules: list[RuleBase],
        site_id: str,
        device_id: str,
        camera: str,
        clock: Callable[[], float] = time.time,
        remember: int = 2000,
    ) -> None:
        self.rules = list(rules)
        self.site_id, self.device_id, self.camera = site_id, device_id, camera
        self.clock = clock
        self._states: dict[tuple[str, str], _State] = {}
        self._cooldown: dict[tuple[str, str], float] = {}
        self._recent: OrderedDict[str, Event] = OrderedDict()  # event_id -> its last publication
        self.clips = ClipBook(remember)
        self._remember = remember
        self._lock = threading.Lock()
        self.published = 0
        self.active_count = 0

    # -- frames --------------------------------------------------------------------------------
    def process(self, source: str, dets: Detections, stamp: float) -> list[Event]:
        """Evaluate every rule fed by `source` on this frame; returns the events to publish in order."""
        out: list[Event] = []
        with self._lock:
            for rule in self.rules:
                if rule.source != source:
                    continue
                hits = rule.evaluate_at(dets, stamp)
                seen = set()
                for hit in hits:
                    seen.add(hit.key)
                    ev = self._on_hit(rule, hit, dets, stamp)
                    if ev is not None:
                        out.append(ev)
                out.extend(self._expire(rule, stamp, seen))
            self._gc(stamp)
        return out

    def tick(self, stamp: float) -> list[Event]:
        """End events whose keys are gone when no frames come (timer; `stamp` = now)."""
        out: list[Event] = []
        with self._lock:
            for rule in self.rules:
                out.extend(self._expire(rule, stamp, set()))
            self._gc(stamp)
        return out

    def flush(self, stamp: float) -> list[Event]:
        """End every active event now (rules reloaded, node stopping)."""
        out: list[Event] = []
        with self._lock:
            for rule in self.rules:
                out.extend(self._expire(rule, float("inf"), set(), end_stamp=stamp))
        return out

    def _on_hit(self, rule: RuleBase, hit: Hit, dets: Detections, stamp: float) -> Event | None:
        k = (rule.name, hit.key)
        st = self._states.get(k)
        if st is None:
            until = self._cooldown.get(k)
            if until is not None and stamp < until:
                return None
            st = self._states[k] = _State(rule, hit.key, stamp, stamp)
        else:
            st.frames += 1
            st.last = max(st.last, stamp)
        payload = self._payload(hit, dets, st)
        if st.event is None:
            if st.last - st.first >= rule.debounce and st.frames >= rule.min_frames:
                now = iso(self.clock())
                st.event = Event(
                    event_id=str(uuid.uuid4()),
                    sequence=0,
                    site_id=self.site_id,
                    device_id=self.device_id,
                    camera=self.camera,
                    type=hit.type,
                    rule=rule.name,
                    state="new",
                    stamp=iso(stamp),
                    start=iso(st.first),
                    end=None,
                    published=now,
                    **payload,
                )
                st.last_pub = stamp
                self.active_count += 1
                return self._publish(st.event)
            return None
        for key, value in payload.items():
            setattr(st.event, key, value)
        if rule.update_interval > 0 and stamp - st.last_pub >= rule.update_interval:
            st.last_pub = stamp
            return self._publish(st.event, state="update", stamp=stamp, reason="progress")
        return None

    def _payload(self, hit: Hit, dets: Detections, st: _State) -> dict[str, Any]:
        idx = hit.idx[:256]
        p: dict[str, Any] = {
            "track_ids": [int(dets.track_ids[i]) for i in idx],
            "labels": [dets.label_of(i)[:128] for i in idx],
            "scores": [round(min(1.0, max(0.0, float(dets.scores[i]))), 4) for i in idx],
            "boxes": [tuple(round(float(v), 1) for v in dets.boxes[i]) for i in idx],
        }
        for key, value in hit.extra.items():
            model = _EXTRA_MODELS.get(key)
            p[key] = model(**value) if model is not None and isinstance(value, dict) else value
        p.update(st.rule.progress(st.first, st.last))
        return p

    def _expire(self, rule: RuleBase, stamp: float, seen: set[str], end_stamp: float | None = None) -> list[Event]:
        out = []
        for k in [k for k in self._states if k[0] == rule.name and k[1] not in seen]:
            st = self._states[k]
            if stamp - st.last < rule.end_after:
                continue
            del self._states[k]
            if st.event is not None:
                self.active_count -= 1
                self._cooldown[k] = st.last + rule.cooldown
                st.event.end = iso(st.last)
                for key, value in rule.progress(st.first, st.last).items():
                    setattr(st.event, key, value)
                out.append(self._publish(st.event, state="end", stamp=stamp if end_stamp is None else end_stamp))
        return out

    def _gc(self, stamp: float) -> None:
        if len(self._cooldown) > 1000:
            for k in [k for k, until in self._cooldown.items() if until <= stamp]:
                del self._cooldown[k]

    def _publish(
        self, ev: Event, state: State | None = None, stamp: float | None = None, reason: Reason | None = None
    ) -> Event:
        """Stamp the next publication of `ev` and return a copy of it (`ev` keeps changing)."""
        if state is not None:
            assert stamp is not None  # a new state comes with the stamp of what caused it (every caller)
            ev.sequence += 1
            ev.state = state
            ev.reason = reason
            ev.stamp = iso(stamp)
            if state == "update":
                ev.updated = iso(stamp)
        ev.published = iso(self.clock())
        ev.message = _message(ev)
        self._recent[ev.event_id] = ev
        self._recent.move_to_end(ev.event_id)
        while len(self._recent) > self._remember:
            self._recent.popitem(last=False)
        self.published += 1
        return ev.model_copy(deep=True)

    # -- snapshots, clips -----------------------------------------------------------------------
    def attach_snapshot(self, event_id: str, snapshot: SnapshotRef) -> None:
        """Record the snapshot of an event (later publications of it carry it too)."""
        with self._lock:
            ev = self._recent.get(event_id)
            if ev is not None:
                ev.snapshot = snapshot

    def on_clip(self, clip: ClipNotice | dict[str, Any]) -> list[Event]:
        """Recorder's clip notice -> an `update` (reason clip) for each named event we know.

        A dict is validated as a `ClipNotice` (pydantic's ValidationError is a ValueError)."""
        clip = clip if isinstance(clip, ClipNotice) else ClipNotice.model_validate(clip)
        out = []
        with self._lock:
            early = self.clips.add(clip)
            for eid in clip.event_ids:
                ev = self._recent.get(eid)
                if ev is None:
                    continue
                ev.clip = clip.clip_info()
                out.append(self._publish(ev, state="update", stamp=self.clock(), reason="clip"))
            # the uploader's status can overtake the recorder's notice (different topics): apply it now
            for status in early:
                out.extend(self._apply_status(status, clip.event_ids))
        return out

    def on_clip_status(self, status: ClipStatusNotice | dict[str, Any]) -> list[Event]:
        """Uploader's state of a clip -> an `update` (reason clip_status) for its events."""
        status = status if isinstance(status, ClipStatusNotice) else ClipStatusNotice.model_validate(status)
        with self._lock:
            ids = self.clips.events_of(status)
            return [] if ids is None else self._apply_status(status, ids)

    def _apply_status(self, status: ClipStatusNotice, event_ids: list[str]) -> list[Event]:
        out = []
        for eid in event_ids:
            ev = self._recent.get(eid)
            if ev is None or ev.clip is None or ev.clip.path != status.path:
                continue
            if ClipBook.apply(ev.clip, status):
                out.append(self._publish(ev, state="update", stamp=self.clock(), reason="clip_status"))
        return out

    def active(self) -> int:
        return self.active_count


def _message(ev: Event) -> str:
    what = ev.type.replace("_", " ")
    extra = ""
    if ev.zone:
        extra += f" in zone {ev.zone}"
    if ev.count is not None:
        extra += f" (count {ev.count} >= {ev.threshold or 0:g})"
    if ev.face:
        extra += f" ({ev.face.identity})"
    if ev.plate:
        extra += f" ({ev.plate.text})"
    tracks = ",".join(str(t) for t in ev.track_ids if t >= 0)
    return (f"{ev.camera}: {what}{extra}" + (f" track {tracks}" if tracks else "") + f" [{ev.state}]")[:512]
