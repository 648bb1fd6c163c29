"""The uploader's persistent queue (SQLite): what is queued, uploading, done or failed survives restarts."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

QUEUED, UPLOADING, DONE, FAILED = "queued", "uploading", "done", "failed"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS uploads (
    path TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    size INTEGER NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_try REAL NOT NULL DEFAULT 0,
    error TEXT NOT NULL DEFAULT '',
    remote TEXT NOT NULL DEFAULT '',
    meta TEXT NOT NULL DEFAULT '{}',
    created REAL NOT NULL,
    updated REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS uploads_due ON uploads(state, next_try);
"""


@dataclass
class Item:
    path: str
    name: str
    sha256: str
    size: int
    state: str
    attempts: int
    next_try: float
    error: str
    remote: str
    meta: dict[str, Any]

    def status(self) -> dict[str, Any]:
        """The clip_status JSON for this item."""
        return {
            "path": self.path,
            "name": self.name,
            "sha256": self.sha256,
            "size": self.size,
            "state": self.state,
            "attempts": self.attempts,
            "remote": self.remote,
            "error": self.error,
            "event_ids": self.meta.get("event_ids", []),
            "camera": self.meta.get("camera", ""),
        }


class UploadQueue:
    def __init__(self, db_path: str | Path) -> None:
        Path(db_path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(db_path), check_same_thread=False, isolation_level=None, timeout=10)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()
        # An upload cut by a crash or restart is simply queued again (the server resumes it).
        with self._lock:
            self._db.execute("UPDATE uploads SET state=? WHERE state=?", (QUEUED, UPLOADING))

    def add(self, path: str, name: str, sha256: str, size: int, meta: dict[str, Any] | None = None) -> Item | None:
        """Queue a clip; None if the same file (path and sha256) is already known."""
        now = time.time()
        with self._lock:
            row = self._db.execute("SELECT sha256 FROM uploads WHERE path=?", (path,)).fetchone()
            if row is not None and row[0] == sha256:
                return None
            self._db.execute(
                "INSERT OR REPLACE INTO uploads(path,name,sha256,size,state,attempts,next_try,error,remote,meta,created,updated)"
                " VALUES (?,?,?,?,?,0,0,'','',?,?,?)",
                (path, name, sha256, int(size), QUEUED, json.dumps(meta or {}), now, now),
            )
        return self.get(path)

    def get(self, path: str) -> Item | None:
        with self._lock:
            row = self._db.execute(
                "SELECT path,name,sha256,size,state,attempts,next_try,error,remote,meta FROM uploads WHERE path=?",
                (path,),
            ).fetchone()
        return _item(row) if row else None

    def next_due(self, now: float | None = None) -> Item | None:
        now = time.time() if now is None else now
        with self._lock:
            row = self._db.execute(
                "SELECT path,name,sha256,size,state,attempts,next_try,error,remote,meta FROM uploads "
                "WHERE state=? AND next_try<=? ORDER BY next_try, created LIMIT 1",
                (QUEUED, now),
            ).fetchone()
        return _item(row) if row else None

    def next_wait(self, now: float | None = None) -> float | None:
        """Seconds until the next queued item is due (None if nothing is queued)."""
        now = time.time() if now is None else now
        with self._lock:
            row = self._db.execute("SELECT MIN(next_try) FROM uploads WHERE state=?", (QUEUED,)).fetchone()
        return None if row[0] is None else max(0.0, row[0] - now)

    def update(self, path: str, **fields: Any) -> Item | None:
        allowed = {"state", "attempts", "next_try", "error", "remote"}
        sets = {k: v for k, v in fields.items() if k in allowed}
        sets["updated"] = time.time()
        cols = ",".join(f"{k}=?" for k in sets)
        with self._lock:
            self._db.execute(f"UPDATE uploads SET {cols} WHERE path=?", (*sets.values(), path))
        return self.get(path)

    def counts(self) -> dict[str, int]:
        with self._lock:
            rows = self._db.execute("SELECT state, COUNT(*) FROM uploads GROUP BY state").fetchall()
        out = {QUEUED: 0, UPLOADING: 0, DONE: 0, FAILED: 0}
        out.update({s: n for s, n in rows})
        return out

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _item(row: tuple) -> Item:
    return Item(
        row[0],
        row[1],
        row[2],
        int(row[3]),
        row[4],
        int(row[5]),
        float(row[6]),
        row[7],
        row[8],
        json.loads(row[9] or "{}"),
    )
