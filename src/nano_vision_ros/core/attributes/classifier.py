"""Running trained attribute classifiers on person tracks, with a vote per track.

Why a vote: one frame's crop is often blurred, occluded or half out of the box; a hard-hat
violation raised from one frame would be noise. Rule (documented in docs/PPE.md, after Frigate's
3 attempts / 60 % / 0.8): over the last `window` attempts of a track, the most frequent class is
*assigned* when there were at least `min_attempts` attempts, it has at least `agreement` of them,
and its attempts' mean score is at least `min_score`. A track is classified every `period` seconds
until assigned, then every `recheck` seconds (a hat taken off later is still seen), never every
frame; a track unseen for `forget` seconds is dropped.
"""

from __future__ import annotations

import json
import logging
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nano_vision_ros.core.attributes.backbone import (
    META_KEY,
    BackboneSpec,
    _session,
    read_metadata,
)
from nano_vision_ros.core.attributes.regions import REGIONS, crop
from nano_vision_ros.core.attributes.train import ATTR_KEY
from nano_vision_ros.core.detection.types import Detections
from nano_vision_ros.core.errors import ModelError

log = logging.getLogger(__name__)


class AttributeClassifier:
    """One composed ONNX (backbone + head) from `train`: crops -> class probabilities."""

    def __init__(self, path: str, threads: int = 1) -> None:
        from nano_vision_ros.core.paths import resolve

        p = str(resolve(path))
        if not Path(p).is_file():
            raise ModelError(f"attribute model {path}: file not found")
        try:
            meta = read_metadata(p)
        except Exception as err:  # noqa: BLE001 - onnx raises DecodeError & co on a broken file
            raise ModelError(f"attribute model {p}: not a readable ONNX file: {err}") from None
        if ATTR_KEY not in meta or META_KEY not in meta:
            raise ModelError(
                f"attribute model {p}: no {ATTR_KEY}/{META_KEY} metadata (train it with `nano-vision attributes train`)"
            )
        self.info: dict[str, Any] = json.loads(meta[ATTR_KEY])
        self.spec = BackboneSpec.from_json(meta[META_KEY])
        self.name: str = self.info["name"]
        self.version: str = self.info.get("version", "")
        self.classes: list[str] = list(self.info["classes"])
        self.region: str = self.info.get("region", "person")
        if self.region not in REGIONS:
            raise ModelError(f"attribute model {p}: unknown region {self.region!r}")
        self.path = p
        self.session = _session(p, threads)
        self._in = self.session.get_inputs()[0].name
        out = self.session.get_outputs()[0]
        self._out = out.name
        n = out.shape[-1] if out.shape else None
        if isinstance(n, int) and n != len(self.classes):
            raise ModelError(f"attribute model {p}: {len(self.classes)} classes in the metadata, {n} outputs")

    def predict(self, crops: list[np.ndarray]) -> np.ndarray:
        """(N, classes) probabilities of BGR crops."""
        if not crops:
            return np.zeros((0, len(self.classes)), np.float32)
        step = 1 if self.spec.batch == 1 else 16
        outs = [
            self.session.run([self._out], {self._in: self.spec.preprocess(crops[s : s + step])})[0]
            for s in range(0, len(crops), step)
        ]
        return np.concatenate(outs).astype(np.float32)


@dataclass
class VoteConfig:
    min_attempts: int = 3
    agreement: float = 0.6
    min_score: float = 0.8
    window: int = 7
    period: float = 1.0  # s between attempts while unassigned
    recheck: float = 5.0  # s between attempts once assigned
    forget: float = 10.0  # s unseen before a track's votes are dropped


@dataclass
class Vote:
    """A track's standing for one classifier (what travels with the detection)."""

    value: str | None  # assigned class, None while undecided
    score: float  # mean score of the leading class's attempts
    votes: int  # attempts for the leading class
    attempts: int  # attempts in the window
    leading: str  # the most frequent class so far (assigned or not)

    def as_dict(self, clf: AttributeClassifier) -> dict[str, Any]:
        return {
            "value": self.value,
            "leading": self.leading,
            "score": round(self.score, 4),
            "votes": self.votes,
            "attempts": self.attempts,
            "classifier": clf.name,
            "version": clf.version,
        }


@dataclass
class _TrackVotes:
    results: deque = field(default_factory=lambda: deque(maxlen=7))
    last_try: float = -1e18
    last_seen: float = 0.0
    vote: Vote | None = None


class TrackVoter:
    """Attempts per track -> the assigned class by the rule above."""

    def __init__(self, config: VoteConfig | None = None) -> None:
        self.config = config or VoteConfig()
        self.tracks: dict[int, _TrackVotes] = {}

    def due(self, tid: int, stamp: float) -> bool:
        t = self.tracks.get(tid)
        if t is None:
            return True
        gap = self.config.recheck if t.vote is not None and t.vote.value is not None else self.config.period
        return stamp - t.last_try >= gap

    def seen(self, tid: int, stamp: float) -> _TrackVotes:
        t = self.tracks.get(tid)
        if t is None:
            t = self.tracks[tid] = _TrackVotes(deque(maxlen=self.config.window))
        t.last_seen = stamp
        return t

    def add(self, tid: int, label: str, score: float, stamp: float) -> Vote:
        t = self.seen(tid, stamp)
        t.last_try = stamp
        t.results.append((label, float(score)))
        t.vote = self._decide(t.results)
        return t.vote

    def get(self, tid: int) -> Vote | None:
        t = self.tracks.get(tid)
        return t.vote if t is not None else None

    def _decide(self, results: deque) -> Vote:
        c = self.config
        labels = [r[0] for r in results]
        leading = max(set(labels), key=lambda v: (labels.count(v), -labels.index(v)))
        mine = [s for lab, s in results if lab == leading]
        score = float(np.mean(mine))
        ok = len(results) >= c.min_attempts and len(mine) / len(results) >= c.agreement and score >= c.min_score
        return Vote(leading if ok else None, score, len(mine), len(results), leading)

    def gc(self, stamp: float) -> None:
        for tid in [k for k, t in self.tracks.items() if stamp - t.last_seen > self.config.forget]:
            del self.tracks[tid]


class AttributeStage:
    """Classifiers x voters on the person tracks of each frame; votes land in
    ``dets.attributes[i]["attributes"][classifier name]`` (every frame, from the last vote)."""

    def __init__(
        self,
        classifiers: list[AttributeClassifier],
        vote: VoteConfig | None = None,
        person_labels: tuple[str, ...] = ("person",),
        min_height: int = 32,
    ) -> None:
        self.classifiers = classifiers
        self.voters = {c.name: TrackVoter(vote) for c in classifiers}
        self.person_labels = person_labels
        self.min_height = min_height
        self.runs = 0  # crops classified (diagnostics)
        self.last_ms = 0.0

    def apply(self, frame: np.ndarray, dets: Detections, stamp: float) -> Detections:
        import time

        t0 = time.perf_counter()
        people = [i for i in range(len(dets)) if int(dets.track_ids[i]) >= 0 and dets.label_of(i) in self.person_labels]
        for clf in self.classifiers:
            voter = self.voters[clf.name]
            todo, crops = [], []
            for i in people:
                tid = int(dets.track_ids[i])
                voter.seen(tid, stamp)
                b = dets.boxes[i]
                if b[3] - b[1] < self.min_height or not voter.due(tid, stamp):
                    continue
                img = crop(frame, b, clf.region)
                if img is not None:
                    todo.append(i)
                    crops.append(img)
            if crops:
                probs = clf.predict(crops)
                self.runs += len(crops)
                for i, p in zip(todo, probs):
                    k = int(np.argmax(p))
                    voter.add(int(dets.track_ids[i]), clf.classes[k], float(p[k]), stamp)
            for i in people:
                v = voter.get(int(dets.track_ids[i]))
                if v is not None:
                    dets.attributes[i].setdefault("attributes", {})[clf.name] = v.as_dict(clf)
            voter.gc(stamp)
        if people:
            self.last_ms = (time.perf_counter() - t0) * 1e3
        return dets


def evaluate_folder(model: str, folder: str | Path) -> dict[str, Any]:
    """Accuracy and confusion of a trained classifier on a held-out folder of class sub-folders."""
    from nano_vision_ros.core.attributes.train import (
        confusion,
        load_dataset,
        read_crops,
        scores,
    )
    from nano_vision_ros.core.errors import ConfigError

    clf = AttributeClassifier(model, threads=2)
    ds = load_dataset(folder)
    unknown = [c for c in ds.classes if c not in clf.classes]
    if unknown:
        raise ConfigError(
            f"{folder}: class folder(s) {', '.join(unknown)} unknown to {clf.name} ({', '.join(clf.classes)})"
        )
    y = np.array([clf.classes.index(ds.classes[k]) for k in ds.y])
    pred = []
    for s in range(0, len(ds.files), 32):
        pred.append(clf.predict(read_crops(ds.files[s : s + 32])).argmax(axis=1))
    p = np.concatenate(pred) if pred else np.zeros(0, np.int64)
    cm = confusion(y, p, len(clf.classes))
    acc, bal = scores(cm)
    return {
        "classifier": clf.name,
        "version": clf.version,
        "classes": clf.classes,
        "crops": len(y),
        "accuracy": acc,
        "balanced_accuracy": bal,
        "confusion": cm,
    }
