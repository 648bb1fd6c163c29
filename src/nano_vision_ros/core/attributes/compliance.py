"""PPE compliance: when a rule applies (working hours), and who was seen compliant per zone.

Why here and not in the rule: the schedule and the tally are the same for a hard-hat and a vest
rule (and any later PPE rule); the rule types in core/events/rules.py hold one of each.
"""

from __future__ import annotations

import datetime as _dt
import threading
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
_DAYS: tuple[Day, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _hhmm(v: str) -> str:
    h, sep, m = v.partition(":")
    if not (
        sep and h.isdigit() and m.isdigit() and 0 <= int(h) <= 24 and 0 <= int(m) < 60 and int(h) * 60 + int(m) <= 1440
    ):
        raise ValueError(f"{v!r}: expected HH:MM (00:00 .. 24:00)")
    return f"{int(h):02d}:{int(m):02d}"


class Schedule(BaseModel):
    """Hours a rule is active, e.g. ``{days: [mon, tue, wed, thu, fri], start: "07:00", end: "18:00"}``.

    `start` > `end` spans midnight (a night shift); the day named is the one the window starts on.
    `timezone`: an IANA name (``Europe/Berlin``) or ``local`` (the board's); frame stamps are UTC epoch seconds.
    """

    model_config = ConfigDict(extra="forbid")
    days: list[Day] = Field(default_factory=lambda: list(_DAYS))
    start: str = "00:00"
    end: str = "24:00"
    timezone: str = "local"

    @field_validator("start", "end")
    @classmethod
    def _time(cls, v: str) -> str:
        return _hhmm(v)

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        if v != "local":
            from zoneinfo import ZoneInfo

            try:
                ZoneInfo(v)
            except Exception:  # noqa: BLE001 - ZoneInfoNotFoundError, ValueError for odd names
                raise ValueError(f"unknown timezone {v!r} (an IANA name such as Europe/Berlin, or local)") from None
        return v

    def active(self, stamp: float) -> bool:
        if self.timezone == "local":
            t = _dt.datetime.fromtimestamp(stamp).astimezone()
        else:
            from zoneinfo import ZoneInfo

            t = _dt.datetime.fromtimestamp(stamp, ZoneInfo(self.timezone))
        minute = t.hour * 60 + t.minute
        s, e = (int(x[:2]) * 60 + int(x[3:]) for x in (self.start, self.end))
        day = _DAYS[t.weekday()]
        if s <= e:
            return day in self.days and s <= minute < e
        prev = _DAYS[(t.weekday() - 1) % 7]
        return (day in self.days and minute >= s) or (prev in self.days and minute < e)


class ComplianceTally:
    """People seen where a PPE rule applies, and how many of them were (never) in violation.

    Counted by track id: a person is *seen* once a track is inside the rule's zone during its hours,
    and *violating* once the rule has a verdict against that track. Bounded: at most `remember`
    tracks per zone (oldest dropped, counters kept).
    """

    def __init__(self, remember: int = 5000) -> None:
        self._seen: dict[str, dict[int, bool]] = {}
        self._people: dict[str, int] = {}
        self._violators: dict[str, int] = {}
        self._remember = remember
        self._lock = threading.Lock()

    def see(self, zone: str, tid: int, violating: bool) -> None:
        if tid < 0:
            return
        with self._lock:
            z = self._seen.setdefault(zone, {})
            was = z.get(tid)
            if was is None:
                self._people[zone] = self._people.get(zone, 0) + 1
                if len(z) >= self._remember:
                    z.pop(next(iter(z)))
                z[tid] = False
            if violating and not z.get(tid):
                z[tid] = True
                self._violators[zone] = self._violators.get(zone, 0) + 1

    def summary(self) -> dict[str, dict[str, float]]:
        """zone -> people seen, violators, compliant share (1.0 when nobody was seen)."""
        with self._lock:
            out = {}
            for zone, n in self._people.items():
                v = self._violators.get(zone, 0)
                out[zone] = {"people": n, "violators": v, "compliant_share": round(1.0 - v / n, 4) if n else 1.0}
            return out
