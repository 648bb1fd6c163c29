"""Rules on tracked detections -> events with a lifecycle (new -> update* -> end).

Each rule evaluates a frame into *hits*: keys (a track, a label, a plate text) whose condition
holds now, with the boxes that show it. A per-(rule, key) state machine debounces hits
(`min_duration` seconds of frame time and `min_frames` frames before `new`), ends an event when
its key has been absent for `end_after` seconds, and keeps that key quiet for `cooldown` seconds
after the end. Detections without a track id share one key per label ("untracked:<label>").
Clip notices (recorder) and upload states (uploader) become `update` events (reason `clip` /
`clip_status`) of the events they name, also after their `end`.
"""
from __future__ import annotations

import logging
import re
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable

import cv2
import numpy as np

from nano_vision_ros.core.detection.types import Detections
from nano_vision_ros.core.events.config import RuleConfig
from nano_vision_ros.core.events.schema import SCHEMA_VERSION, iso

log = logging.getLogger(__name__)

_PLATE_NORM = re.compile(r"[\s\-·•.]+")


def norm_plate(text: str) -> str:
    return _PLATE_NORM.sub("", text).upper()


@dataclass
class Hit:
    """A rule's condition holding for one key in one frame."""

    key: str
    type: str
    idx: list[int]
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class _State:
    rule: RuleConfig
    key: str
    first: float
    last: float
    frames: int = 1
    event: dict[str, Any] | None = None  # last published dict while active
    last_pub: float = 0.0
    ended_at: float | None = None


def _box_overlap(box: np.ndarray, region: np.ndarray) -> float:
    """Share of `box`'s area inside `region` (both x1, y1, x2, y2)."""
    ix = max(0.0, min(box[2], region[2]) - max(box[0], region[0]))
    iy = max(0.0, min(box[3], region[3]) - max(box[1], region[1]))
    area = max(1e-6, (box[2] - box[0]) * (box[3] - box[1]))
    return float(ix * iy / area)


class _ZoneTest:
    def __init__(self, rule: RuleConfig) -> None:
        z = rule.zone
        assert z is not None
        self.name = z.name
        self.anchor = z.anchor
        self.poly = np.asarray(z.polygon, np.float32).reshape(-1, 1, 2)

    def inside(self, box: np.ndarray) -> bool:
        x = float(box[0] + box[2]) / 2.0
        y = float(box[3]) if self.anchor == "bottom_center" else float(box[1] + box[3]) / 2.0
        return cv2.pointPolygonTest(self.poly, (x, y), False) >= 0


def _key(dets: Detections, i: int, prefix: str = "t") -> str:
    tid = int(dets.track_ids[i])
    return f"{prefix}{tid}" if tid >= 0 else f"untracked:{dets.label_of(i)}"


def evaluate(rule: RuleConfig, dets: Detections, zone: _ZoneTest | None) -> list[Hit]:
    """The hits of one rule on one frame's detections."""
    labels = [dets.label_of(i) for i in range(len(dets))]
    ok = dets.scores >= rule.min_score
    t = rule.type
    hits: dict[str, Hit] = {}

    def add(key: str, typ: str, i: int, **extra: Any) -> None:
        h = hits.get(key)
        if h is None:
            hits[key] = Hit(key, typ, [i], dict(extra))
        else:
            h.idx.append(i)

    if t in ("no_hardhat", "no_vest"):
        top, bottom = rule.region  # type: ignore[misc]
        persons = [i for i in range(len(dets)) if ok[i] and labels[i] in rule.person_labels]
        ppe = [i for i in range(len(dets)) if ok[i] and labels[i] in (rule.ppe_labels or [])]
        bad = [i for i in range(len(dets)) if ok[i] and labels[i] in (rule.violation_labels or [])]
        used_bad: set[int] = set()
        for p in persons:
            b = dets.boxes[p]
            h = b[3] - b[1]
            region = np.array([b[0], b[1] + top * h, b[2], b[1] + bottom * h], np.float32)
            has_ppe = any(_box_overlap(dets.boxes[j], region) >= rule.min_overlap for j in ppe)
            viol = [j for j in bad if _box_overlap(dets.boxes[j], region) >= rule.min_overlap]
            used_bad.update(viol)
            if viol or (rule.require_ppe and not has_ppe):
                key = _key(dets, p)
                add(key, t, p)
                hits[key].idx.extend(viol)
        for j in bad:  # a bare head / no-vest box with no person around it is a violation on its own
            if j not in used_bad:
                add(_key(dets, j, "v"), t, j)
    elif t in ("no_mask", "object"):
        for i in range(len(dets)):
            if ok[i] and labels[i] in (rule.labels or []):
                add(_key(dets, i), t, i)
    elif t in ("smoke", "fire"):
        for i in range(len(dets)):
            if ok[i] and labels[i] in (rule.labels or []):
                add(f"label:{labels[i]}", t, i)
    elif t in ("intrusion", "loitering"):
        for i in range(len(dets)):
            if ok[i] and labels[i] in (rule.labels or []) and zone is not None and zone.inside(dets.boxes[i]):
                add(_key(dets, i), t, i, zone=zone.name)
    elif t == "count":
        for label, threshold in rule.thresholds.items():
            idx = [i for i in range(len(dets)) if ok[i] and labels[i] == label
                   and (zone is None or zone.inside(dets.boxes[i]))]
            if len(idx) >= threshold:
                hits[f"count:{label}"] = Hit(f"count:{label}", "count", idx,
                                             {"count": len(idx), "threshold": float(threshold),
                                              "zone": zone.name if zone else None})
    elif t == "face":
        watch = set(rule.watchlist)
        for i in range(len(dets)):
            if not ok[i]:
                continue
            ident = labels[i] or rule.unknown_label
            known = ident != rule.unknown_label
            on_list = ident in watch
            typ = "face_watchlist" if on_list else ("face_known" if known else "face_unknown")
            if (typ == "face_known" and not rule.report_known) or (typ == "face_unknown" and not rule.report_unknown):
                continue
            key = _key(dets, i) if int(dets.track_ids[i]) >= 0 else f"id:{ident}"
            add(key, typ, i, face={"identity": ident, "known": known, "watchlist": on_list, "score": float(dets.scores[i])})
    elif t == "plate":
        allow = {norm_plate(p) for p in rule.allow}
        deny = {norm_plate(p) for p in rule.deny}
        for i in range(len(dets)):
            text = norm_plate(labels[i])
            if not ok[i] or not text:
                continue
            lst = "deny" if text in deny else ("allow" if text in allow else "none")
            if lst == "none" and not rule.report_unlisted:
                continue
            typ = {"deny": "plate_denied", "allow": "plate_allowed"}.get(lst, "plate_read")
            add(f"plate:{text}", typ, i, plate={"text": text[:32], "list": lst, "score": float(dets.scores[i])})
    return list(hits.values())


class EventEngine:
    """Per-camera rule evaluation and event lifecycle; thread-safe (one lock)."""

    def __init__(self, rules: list[RuleConfig], site_id: str, device_id: str, camera: str,
                 clock: Callable[[], float] = time.time, remember: int = 2000) -> None:
        self.rules = list(rules)
        self.site_id, self.device_id, self.camera = site_id, device_id, camera
        self.clock = clock
        self._zones = {r.name: _ZoneTest(r) for r in self.rules if r.zone is not None}
        self._states: dict[tuple[str, str], _State] = {}
        self._cooldown: dict[tuple[str, str], float] = {}
        self._recent: OrderedDict[str, dict[str, Any]] = OrderedDict()  # event_id -> last published dict
        self._clip_events: OrderedDict[str, list[str]] = OrderedDict()  # clip path -> event ids
        self._early_status: OrderedDict[str, list[dict[str, Any]]] = OrderedDict()  # status before its clip notice
        self._remember = remember
        self._lock = threading.Lock()
        self.published = 0
        self.active_count = 0

    # -- frames --------------------------------------------------------------------------------
    def process(self, source: str, dets: Detections, stamp: float) -> list[dict[str, Any]]:
        """Evaluate every rule fed by `source` on this frame; returns the events to publish in order."""
        out: list[dict[str, Any]] = []
        with self._lock:
            for rule in self.rules:
                if rule.source != source:
                    continue
                hits = evaluate(rule, dets, self._zones.get(rule.name))
                seen = set()
                for hit in hits:
                    seen.add(hit.key)
                    ev = self._on_hit(rule, hit, dets, stamp)
                    if ev is not None:
                        out.append(ev)
                out.extend(self._expire(rule, stamp, seen))
            self._gc(stamp)
        return out

    def tick(self, stamp: float) -> list[dict[str, Any]]:
        """End events whose keys are gone when no frames come (timer; `stamp` = now)."""
        out: list[dict[str, Any]] = []
        with self._lock:
            for rule in self.rules:
                out.extend(self._expire(rule, stamp, set()))
            self._gc(stamp)
        return out

    def flush(self, stamp: float) -> list[dict[str, Any]]:
        """End every active event now (rules reloaded, node stopping)."""
        out: list[dict[str, Any]] = []
        with self._lock:
            for rule in self.rules:
                out.extend(self._expire(rule, float("inf"), set(), end_stamp=stamp))
        return out

    def _on_hit(self, rule: RuleConfig, hit: Hit, dets: Detections, stamp: float) -> dict[str, Any] | None:
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
            if st.last - st.first >= rule.debounce and st.frames >= (rule.min_frames or 1):
                ev = {
                    "schema_version": SCHEMA_VERSION, "event_id": str(uuid.uuid4()), "sequence": 0,
                    "site_id": self.site_id, "device_id": self.device_id, "camera": self.camera,
                    "type": hit.type, "rule": rule.name, "state": "new", "reason": None,
                    "stamp": iso(stamp), "start": iso(st.first), "end": None, "updated": None,
                    "zone": None, "dwell_s": None, "count": None, "threshold": None, "face": None, "plate": None,
                    "snapshot": None, "clip": None,
                }
                ev.update(payload)
                ev["message"] = _message(ev)
                st.event = ev
                st.last_pub = stamp
                self.active_count += 1
                return self._publish(ev)
            return None
        st.event.update(payload)
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
            "boxes": [[round(float(v), 1) for v in dets.boxes[i]] for i in idx],
        }
        p.update(hit.extra)
        if st.rule.type == "loitering":
            p["dwell_s"] = round(st.last - st.first, 3)
        return p

    def _expire(self, rule: RuleConfig, stamp: float, seen: set[str], end_stamp: float | None = None) -> list[dict[str, Any]]:
        out = []
        for k in [k for k in self._states if k[0] == rule.name and k[1] not in seen]:
            st = self._states[k]
            if stamp - st.last < rule.end_after:
                continue
            del self._states[k]
            if st.event is not None:
                self.active_count -= 1
                self._cooldown[k] = st.last + rule.cooldown
                st.event["end"] = iso(st.last)
                if rule.type == "loitering":
                    st.event["dwell_s"] = round(st.last - st.first, 3)
                out.append(self._publish(st.event, state="end", stamp=stamp if end_stamp is None else end_stamp, reason=None))
        return out

    def _gc(self, stamp: float) -> None:
        if len(self._cooldown) > 1000:
            for k in [k for k, until in self._cooldown.items() if until <= stamp]:
                del self._cooldown[k]

    def _publish(self, ev: dict[str, Any], state: str | None = None, stamp: float | None = None,
                 reason: str | None = None) -> dict[str, Any]:
        if state is not None:
            ev["sequence"] += 1
            ev["state"] = state
            ev["reason"] = reason
            ev["stamp"] = iso(stamp)
            if state == "update":
                ev["updated"] = iso(stamp)
        ev["published"] = iso(self.clock())
        ev["message"] = _message(ev)
        out = _copy(ev)
        self._recent[ev["event_id"]] = ev
        self._recent.move_to_end(ev["event_id"])
        while len(self._recent) > self._remember:
            self._recent.popitem(last=False)
        self.published += 1
        return out

    # -- snapshots, clips -----------------------------------------------------------------------
    def attach_snapshot(self, event_id: str, snapshot: dict[str, Any]) -> None:
        """Record the snapshot of an event (later publications of it carry it too)."""
        with self._lock:
            ev = self._recent.get(event_id)
            if ev is not None:
                ev["snapshot"] = snapshot

    def on_clip(self, info: dict[str, Any]) -> list[dict[str, Any]]:
        """Recorder's clip notice -> an `update` (reason clip) for each named event we know."""
        ids = info.get("event_ids")
        path = info.get("path")
        if not isinstance(ids, list) or not isinstance(path, str) or not path:
            raise ValueError("clip notice needs event_ids (list) and path (string)")
        sha = info.get("sha256")
        clip = {"path": path[:4096], "duration": _num(info.get("duration")), "size": _int(info.get("size")),
                "sha256": sha if isinstance(sha, str) and re.fullmatch(r"[0-9a-f]{64}", sha) else None,
                "upload_state": "pending", "remote": None, "error": None}
        out = []
        with self._lock:
            self._clip_events[path] = [str(i) for i in ids][:256]
            while len(self._clip_events) > self._remember:
                self._clip_events.popitem(last=False)
            for eid in ids:
                ev = self._recent.get(str(eid))
                if ev is None:
                    continue
                ev["clip"] = dict(clip)
                out.append(self._publish(ev, state="update", stamp=self.clock(), reason="clip"))
            # the uploader's status can overtake the recorder's notice (different topics): apply it now
            for status in self._early_status.pop(path, []):
                out.extend(self._apply_status(path, status))
        return out

    def on_clip_status(self, info: dict[str, Any]) -> list[dict[str, Any]]:
        """Uploader's state of a clip -> an `update` (reason clip_status) for its events."""
        path = info.get("path")
        state = info.get("state")
        if not isinstance(path, str) or state not in ("queued", "uploading", "done", "failed"):
            raise ValueError("clip status needs path and state queued|uploading|done|failed")
        with self._lock:
            if path not in self._clip_events:
                self._early_status.setdefault(path, []).append(dict(info))
                while len(self._early_status) > 100:
                    self._early_status.popitem(last=False)
                return []
            return self._apply_status(path, info)

    def _apply_status(self, path: str, info: dict[str, Any]) -> list[dict[str, Any]]:
        state = info.get("state")
        out = []
        for eid in self._clip_events.get(path, []):
            ev = self._recent.get(eid)
            if ev is None or ev.get("clip") is None:
                continue
            clip = ev["clip"]
            if clip.get("upload_state") == state and state != "failed":
                continue
            clip["upload_state"] = state
            remote = info.get("remote")
            clip["remote"] = str(remote)[:4096] if remote else clip.get("remote")
            err = info.get("error")
            clip["error"] = str(err)[:1000] if err else None
            out.append(self._publish(ev, state="update", stamp=self.clock(), reason="clip_status"))
        return out

    def active(self) -> int:
        return self.active_count


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0 else None


def _int(v: Any) -> int | None:
    return int(v) if isinstance(v, int) and not isinstance(v, bool) and v >= 0 else None


def _copy(ev: dict[str, Any]) -> dict[str, Any]:
    out = dict(ev)
    for k in ("clip", "snapshot", "face", "plate"):
        if isinstance(out.get(k), dict):
            out[k] = dict(out[k])
    for k in ("track_ids", "labels", "scores", "boxes"):
        out[k] = list(out[k])
    return out


def _message(ev: dict[str, Any]) -> str:
    what = ev["type"].replace("_", " ")
    extra = ""
    if ev.get("zone"):
        extra += f" in zone {ev['zone']}"
    if ev.get("count") is not None:
        extra += f" (count {ev['count']} >= {ev['threshold']:g})"
    if ev.get("face"):
        extra += f" ({ev['face']['identity']})"
    if ev.get("plate"):
        extra += f" ({ev['plate']['text']})"
    tracks = ",".join(str(t) for t in ev["track_ids"] if t >= 0)
    return (f"{ev['camera']}: {what}{extra}" + (f" track {tracks}" if tracks else "") + f" [{ev['state']}]")[:512]
