"""The known-faces gallery: one SQLite file, private to its owner.

Tables: ``identities`` (name, thumbnail JPEG, created/updated timestamps) and ``embeddings``
(several per identity, with the embedder's name so vectors of different models never mix).
The file is created with mode 0600; ``secure_delete`` is on and a delete is followed by VACUUM,
so a deleted identity's vectors and thumbnail do not linger in free pages of the file.
Matching uses an in-memory matrix of normalised vectors, rebuilt when the gallery changes.
"""

from __future__ import annotations

import base64
import builtins
import json
import logging
import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nano_vision_ros.core.errors import ConfigError

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS identities (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    thumbnail BLOB,
    created REAL NOT NULL,
    updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS embeddings (
    id INTEGER PRIMARY KEY,
    identity_id INTEGER NOT NULL REFERENCES identities(id) ON DELETE CASCADE,
    model TEXT NOT NULL,
    dim INTEGER NOT NULL,
    vector BLOB NOT NULL,
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS embeddings_identity ON embeddings(identity_id);
"""


class GalleryError(RuntimeError):
    """A write the gallery could not make (full disk, read-only file); names the file. The
    transaction is rolled back: what was enrolled before stays as it was."""


@dataclass
class Identity:
    name: str
    embeddings: int
    created: float
    updated: float
    has_thumbnail: bool

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "embeddings": self.embeddings,
            "created": self.created,
            "updated": self.updated,
            "thumbnail": self.has_thumbnail,
        }


@dataclass
class Match:
    name: str | None  # None = unknown
    similarity: float  # cosine similarity of the best gallery vector
    distance: float  # L2 distance of the same vector (unit vectors)


class Gallery:
    """Thread-safe access to one gallery file (the node's worker and command threads share it)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path).expanduser()
        if str(self.path) != ":memory:":
            if not self.path.parent.exists():
                self.path.parent.mkdir(mode=0o700, parents=True)  # a new folder: owner only
            if not self.path.exists():
                fd = os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600)
                os.close(fd)
            os.chmod(self.path, 0o600)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA foreign_keys = ON")
        self._db.execute("PRAGMA secure_delete = ON")
        self._db.execute("PRAGMA journal_mode = DELETE")
        self._db.executescript(SCHEMA)
        self._cache: dict[str, tuple[np.ndarray, np.ndarray, list[str]]] = {}
        self.version = 0

    # --- writing -----------------------------------------------------------------------------
    def add(self, name: str, embeddings: np.ndarray, model: str, thumbnail_jpeg: bytes | None = None) -> int:
        """Add vectors (N, D) to `name` (created if new); returns the identity's vector count."""
        name = validate_name(name)
        emb = np.asarray(embeddings, np.float32).reshape(len(embeddings), -1)
        now = time.time()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                row = self._db.execute("SELECT id FROM identities WHERE name = ?", (name,)).fetchone()
                if row is None:
                    cur = self._db.execute(
                        "INSERT INTO identities(name, thumbnail, created, updated) VALUES (?,?,?,?)",
                        (name, thumbnail_jpeg, now, now),
                    )
                    ident = cur.lastrowid
                else:
                    ident = row[0]
                    if thumbnail_jpeg is not None:
                        self._db.execute(
                            "UPDATE identities SET thumbnail = ?, updated = ? WHERE id = ?",
                            (thumbnail_jpeg, now, ident),
                        )
                    else:
                        self._db.execute("UPDATE identities SET updated = ? WHERE id = ?", (now, ident))
                self._db.executemany(
                    "INSERT INTO embeddings(identity_id, model, dim, vector, created) VALUES (?,?,?,?,?)",
                    [(ident, model, int(v.size), v.astype("<f4").tobytes(), now) for v in emb],
                )
                count = self._db.execute("SELECT COUNT(*) FROM embeddings WHERE identity_id = ?", (ident,)).fetchone()[
                    0
                ]
                self._db.execute("COMMIT")
            except BaseException as err:
                self._rollback()
                if isinstance(err, sqlite3.Error):
                    raise GalleryError(f"gallery {self.path}: cannot add {name!r}: {err}") from None
                raise
            self._changed()
        return int(count)

    def delete(self, name: str) -> bool:
        """Remove the identity, all its vectors and its thumbnail; VACUUM so no bytes linger."""
        with self._lock:
            row = self._db.execute("SELECT id FROM identities WHERE name = ?", (name,)).fetchone()
            if row is None:
                return False
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute("DELETE FROM embeddings WHERE identity_id = ?", (row[0],))
                self._db.execute("DELETE FROM identities WHERE id = ?", (row[0],))
                self._db.execute("COMMIT")
            except BaseException as err:
                self._rollback()
                if isinstance(err, sqlite3.Error):
                    raise GalleryError(f"gallery {self.path}: cannot delete {name!r}: {err}") from None
                raise
            try:
                self._db.execute("VACUUM")
            except sqlite3.Error as err:  # deleted already; the space is reclaimed on a later VACUUM
                log.warning("gallery %s: VACUUM after deleting %r failed: %s", self.path, name, err)
            self._changed()
        return True

    def _rollback(self) -> None:
        """Roll back if a transaction is still open (SQLite ends it by itself on a full disk)."""
        if self._db.in_transaction:
            try:
                self._db.execute("ROLLBACK")
            except sqlite3.Error:
                pass

    def _changed(self) -> None:
        self._cache.clear()
        self.version += 1

    # --- reading -----------------------------------------------------------------------------
    def list(self) -> list[Identity]:
        with self._lock:
            rows = self._db.execute(
                "SELECT i.name, COUNT(e.id), i.created, i.updated, i.thumbnail IS NOT NULL FROM identities i "
                "LEFT JOIN embeddings e ON e.identity_id = i.id GROUP BY i.id ORDER BY i.name"
            ).fetchall()
        return [Identity(r[0], int(r[1]), float(r[2]), float(r[3]), bool(r[4])) for r in rows]

    def names(self) -> builtins.list[str]:
        return [i.name for i in self.list()]

    def thumbnail(self, name: str) -> bytes | None:
        with self._lock:
            row = self._db.execute("SELECT thumbnail FROM identities WHERE name = ?", (name,)).fetchone()
        return row[0] if row else None

    def matrix(self, model: str) -> tuple[np.ndarray, np.ndarray, builtins.list[str]]:
        """(M, D) vectors of `model` as stored, the same normalised, and each row's name (cached)."""
        with self._lock:
            if model in self._cache:
                return self._cache[model]
            rows = self._db.execute(
                "SELECT i.name, e.vector FROM embeddings e JOIN identities i ON i.id = e.identity_id "
                "WHERE e.model = ? ORDER BY e.id",
                (model,),
            ).fetchall()
            if rows:
                raw = np.stack([np.frombuffer(r[1], "<f4") for r in rows]).astype(np.float32)
                unit = raw / np.maximum(np.linalg.norm(raw, axis=1, keepdims=True), 1e-12)
            else:
                raw = unit = np.zeros((0, 0), np.float32)
            names = [r[0] for r in rows]
            self._cache[model] = (raw, unit, names)
            return raw, unit, names

    def match(
        self, vectors: np.ndarray, model: str, metric: str = "cosine", threshold: float = 0.5
    ) -> builtins.list[Match]:
        """Nearest gallery vector for each query; unknown unless it passes the threshold
        (cosine: highest similarity >= threshold; l2: smallest distance of the vectors as
        stored <= threshold). The match carries both the similarity and the distance."""
        raw, unit, names = self.matrix(model)
        q = np.asarray(vectors, np.float32).reshape(len(vectors), -1)
        out: builtins.list[Match] = []
        if len(q) == 0:
            return out
        if raw.size == 0 or raw.shape[1] != q.shape[1]:
            return [Match(None, 0.0, float("inf")) for _ in range(len(q))]
        qn = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
        sims = qn @ unit.T
        if metric == "cosine":
            best = sims.argmax(axis=1)
        else:
            d2 = (q * q).sum(1)[:, None] - 2.0 * q @ raw.T + (raw * raw).sum(1)[None, :]
            best = d2.argmin(axis=1)
        for i, j in enumerate(best):
            s = float(sims[i, j])
            d = float(np.linalg.norm(q[i] - raw[j]))
            ok = s >= threshold if metric == "cosine" else d <= threshold
            out.append(Match(names[j] if ok else None, s, d))
        return out

    # --- export / import -----------------------------------------------------------------------
    def export(self) -> dict[str, Any]:
        """Everything as JSON-able data (vectors and thumbnails base64)."""
        with self._lock:
            idents = self._db.execute(
                "SELECT id, name, thumbnail, created, updated FROM identities ORDER BY name"
            ).fetchall()
            out = []
            for ident, name, thumb, created, updated in idents:
                embs = self._db.execute(
                    "SELECT model, dim, vector, created FROM embeddings WHERE identity_id = ? ORDER BY id", (ident,)
                ).fetchall()
                out.append(
                    {
                        "name": name,
                        "created": created,
                        "updated": updated,
                        "thumbnail_jpeg_b64": base64.b64encode(thumb).decode() if thumb else None,
                        "embeddings": [
                            {"model": m, "dim": d, "vector_f32le_b64": base64.b64encode(v).decode(), "created": c}
                            for m, d, v, c in embs
                        ],
                    }
                )
        return {"format": "nano_vision_faces", "version": 1, "identities": out}

    def import_(self, data: dict[str, Any], replace: bool = False) -> int:
        """Load an export; existing names get the vectors added (or replaced with `replace`)."""
        if not isinstance(data, dict) or data.get("format") != "nano_vision_faces":
            raise ConfigError("not a nano_vision faces export (format field missing)")
        n = 0
        for ident in data.get("identities", []):
            name = ident["name"]
            if replace:
                self.delete(name)
            groups: dict[str, list[np.ndarray]] = {}
            for e in ident.get("embeddings", []):
                vec = np.frombuffer(base64.b64decode(e["vector_f32le_b64"]), "<f4")
                if vec.size != int(e["dim"]):
                    raise ConfigError(f"identity {name!r}: vector size {vec.size} != dim {e['dim']}")
                groups.setdefault(e["model"], []).append(vec)
            thumb = base64.b64decode(ident["thumbnail_jpeg_b64"]) if ident.get("thumbnail_jpeg_b64") else None
            for model, vecs in groups.items():
                self.add(name, np.stack(vecs), model, thumb)
                thumb = None
            n += 1
        return n

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> Gallery:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def validate_name(name: Any) -> str:
    """Identity names: 1..64 printable characters, not 'unknown' (reserved for strangers)."""
    if not isinstance(name, str) or not name.strip():
        raise ConfigError("identity name must be a non-empty string")
    name = name.strip()
    if len(name) > 64 or not name.isprintable():
        raise ConfigError(f"identity name {name[:80]!r} must be at most 64 printable characters")
    if name.lower() == "unknown":
        raise ConfigError("'unknown' is reserved for faces not in the gallery")
    return name


def dump_export(data: dict[str, Any], path: str | os.PathLike[str]) -> None:
    """Write an export file readable by its owner only (it holds biometric data)."""
    fd = os.open(str(path), os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(data, f)
