"""A disk outbox (SQLite, WAL): messages are stored before they are published and deleted only
when the broker has acknowledged them (QoS 1 PUBACK), so a broker outage, a network cut or a
restart of the bridge loses nothing that was accepted.

Bound policy (``max_messages``): when a new message would exceed the bound, the oldest ``update``
is dropped first (a later update or the ``end`` of the same event carries the same state); only
when no ``update`` is left is the oldest message of any kind dropped. Both are counted
(``dropped_updates``, ``dropped_other``, kept in the file) and logged. ``new`` and ``end`` are
therefore kept as long as anything else can go.

Dedupe: ``put(..., key=...)`` ignores a key (event_id:sequence) it has seen among the last
``remember_keys`` accepted, so a re-delivered event (the ROS publisher's history after a bridge
restart) is not published twice. Duplicates can still reach the broker when the process dies
between PUBACK and the delete; consumers deduplicate by (event_id, sequence).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  topic TEXT NOT NULL,
  payload BLOB NOT NULL,
  qos INTEGER NOT NULL DEFAULT 1,
  retain INTEGER NOT NULL DEFAULT 0,
  kind TEXT NOT NULL DEFAULT 'other',
  key TEXT,
  created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_kind ON outbox(kind, id);
CREATE TABLE IF NOT EXISTS seen (key TEXT PRIMARY KEY, n INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS seen_n ON seen(n);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


@dataclass(frozen=True)
class OutboxMessage:
    id: int
    topic: str
    payload: bytes
    qos: int
    retain: bool
    kind: str
    key: str | None
    created: float


class OutboxError(RuntimeError):
    """The outbox file cannot be opened or written (disk full, permissions, corrupt file)."""


class Outbox:
    """Thread-safe SQLite outbox; one connection guarded by a lock."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        max_messages: int = 100_000,
        remember_keys: int = 20_000,
        synchronous: str = "FULL",
    ) -> None:
        if max_messages < 1:
            raise ValueError("max_messages must be >= 1")
        if synchronous.upper() not in ("OFF", "NORMAL", "FULL", "EXTRA"):
            raise ValueError("synchronous must be OFF, NORMAL, FULL or EXTRA")
        self.path = Path(os.path.expanduser(str(path)))
        self.max_messages = int(max_messages)
        self.remember_keys = int(remember_keys)
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None, timeout=10)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={synchronous.upper()}")
            self._db.executescript(_SCHEMA)
        except (sqlite3.Error, OSError) as err:
            raise OutboxError(f"outbox {self.path}: {err}") from None
        self._count = self._scalar("SELECT COUNT(*) FROM outbox")
        self._seen_n = self._scalar("SELECT COALESCE(MAX(n), 0) FROM seen")

    # -- helpers ---------------------------------------------------------------------------------
    def _scalar(self, sql: str, args: tuple = ()) -> int:
        row = self._db.execute(sql, args).fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    def _bump(self, name: str, by: int = 1) -> None:
        self._db.execute(
            "INSERT INTO meta(name, value) VALUES(?, ?) ON CONFLICT(name) DO UPDATE SET value = value + ?",
            (name, by, by),
        )

    def counter(self, name: str) -> int:
        with self._lock:
            return self._scalar("SELECT value FROM meta WHERE name = ?", (name,))

    # -- API -------------------------------------------------------------------------------------
    def put(
        self,
        topic: str,
        payload: bytes | str,
        kind: str = "other",
        key: str | None = None,
        qos: int = 1,
        retain: bool = False,
    ) -> int | None:
        """Store a message durably; returns its id, or None for a duplicate key."""
        return self.put_many([(topic, payload, kind, key, qos, retain)])[0]

    def put_many(self, items: list[tuple]) -> list[int | None]:
        """Store several messages in one transaction (one fsync): ``(topic, payload, kind, key[, qos, retain])``."""
        ids: list[int | None] = []
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    seen_n, count = self._seen_n, self._count
                    for item in items:
                        topic, payload, kind, key = item[:4]
                        qos = item[4] if len(item) > 4 else 1
                        retain = item[5] if len(item) > 5 else False
                        data = payload.encode() if isinstance(payload, str) else bytes(payload)
                        if key is not None:
                            if self._db.execute("SELECT 1 FROM seen WHERE key = ?", (key,)).fetchone():
                                ids.append(None)
                                continue
                            self._seen_n += 1
                            self._db.execute("INSERT INTO seen(key, n) VALUES(?, ?)", (key, self._seen_n))
                            if self._seen_n % 1000 == 0:
                                self._db.execute("DELETE FROM seen WHERE n <= ?", (self._seen_n - self.remember_keys,))
                        while self._count >= self.max_messages:
                            self._evict()
                        cur = self._db.execute(
                            "INSERT INTO outbox(topic, payload, qos, retain, kind, key, created) VALUES(?, ?, ?, ?, ?, ?, ?)",
                            (topic, data, int(qos), int(bool(retain)), kind, key, time.time()),
                        )
                        self._count += 1
                        rowid = cur.lastrowid
                        assert rowid is not None  # an INSERT that returned sets it
                        ids.append(rowid)
                    self._db.execute("COMMIT")
                except BaseException:
                    self._seen_n, self._count = seen_n, count
                    if self._db.in_transaction:  # SQLite rolls back by itself on a full disk
                        try:
                            self._db.execute("ROLLBACK")
                        except sqlite3.Error:
                            pass  # keep the first error: it names the problem
                    raise
            except sqlite3.Error as err:
                raise OutboxError(f"outbox {self.path}: {err}") from None
        return ids

    def _evict(self) -> None:
        row = self._db.execute("SELECT id, key FROM outbox WHERE kind = 'update' ORDER BY id LIMIT 1").fetchone()
        if row is not None:
            self._bump("dropped_updates")
            log.warning("outbox full (%d): dropped the oldest update %s", self.max_messages, row[1])
        else:
            row = self._db.execute("SELECT id, key FROM outbox ORDER BY id LIMIT 1").fetchone()
            self._bump("dropped_other")
            log.error("outbox full (%d) of new/end messages: dropped the oldest %s", self.max_messages, row[1])
        self._db.execute("DELETE FROM outbox WHERE id = ?", (row[0],))
        self._count -= 1

    def pending(self, after_id: int = 0, limit: int = 100) -> list[OutboxMessage]:
        """Stored messages with id > after_id, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, topic, payload, qos, retain, kind, key, created FROM outbox WHERE id > ? ORDER BY id LIMIT ?",
                (after_id, limit),
            ).fetchall()
        return [OutboxMessage(r[0], r[1], bytes(r[2]), r[3], bool(r[4]), r[5], r[6], r[7]) for r in rows]

    def ack(self, msg_id: int) -> bool:
        """The broker acknowledged it: delete. False if it was not there (already acked or evicted)."""
        return self.ack_many([msg_id]) == 1

    def ack_many(self, msg_ids: list[int]) -> int:
        """Delete several acknowledged messages in one transaction; returns how many were there."""
        if not msg_ids:
            return 0
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                n = 0
                for i in range(0, len(msg_ids), 500):
                    chunk = msg_ids[i : i + 500]
                    cur = self._db.execute(f"DELETE FROM outbox WHERE id IN ({','.join('?' * len(chunk))})", chunk)
                    n += cur.rowcount
                self._db.execute("COMMIT")
            except sqlite3.Error as err:
                if self._db.in_transaction:
                    try:
                        self._db.execute("ROLLBACK")
                    except sqlite3.Error:
                        pass
                raise OutboxError(f"outbox {self.path}: {err}") from None
            self._count -= n
            return n

    def __len__(self) -> int:
        return self._count

    def exists(self, msg_id: int) -> bool:
        with self._lock:
            return self._db.execute("SELECT 1 FROM outbox WHERE id = ?", (msg_id,)).fetchone() is not None

    def oldest_age(self) -> float:
        with self._lock:
            row = self._db.execute("SELECT MIN(created) FROM outbox").fetchone()
        return max(0.0, time.time() - row[0]) if row and row[0] is not None else 0.0

    def stats(self) -> dict[str, int | float]:
        return {
            "outbox_pending": len(self),
            "outbox_oldest_s": round(self.oldest_age(), 1),
            "outbox_dropped_updates": self.counter("dropped_updates"),
            "outbox_dropped_other": self.counter("dropped_other"),
        }

    def close(self) -> None:
        with self._lock:
            try:
                self._db.close()
            except sqlite3.Error:
                pass
