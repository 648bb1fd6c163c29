"""Disk quota and age limit for the clip folder: the oldest clips go first."""

from __future__ import annotations

import logging
import time
from pathlib import Path

log = logging.getLogger(__name__)


class Retention:
    """Keeps ``*.mp4`` in `folder` under ``max_bytes`` in all and younger than ``max_age`` seconds.

    Files named in ``keep`` (the clip just written) are never deleted; 0 disables a limit.
    """

    def __init__(self, folder: Path, max_bytes: int, max_age: float, pattern: str = "*.mp4") -> None:
        self.folder = Path(folder)
        self.max_bytes = int(max_bytes)
        self.max_age = float(max_age)
        self.pattern = pattern
        self.deleted = 0
        self.used_bytes = 0

    def _clips(self) -> list[tuple[float, int, Path]]:
        out = []
        for p in self.folder.glob(self.pattern):
            try:
                st = p.stat()
            except OSError:
                continue  # deleted meanwhile (the uploader, an operator)
            out.append((st.st_mtime, st.st_size, p))
        out.sort()
        return out

    def enforce(self, keep: set[Path] | None = None, extra_needed: int = 0, now: float | None = None) -> list[Path]:
        """Delete what breaks the limits (plus `extra_needed` bytes more, oldest first); returns them."""
        keep = {Path(k) for k in (keep or set())}
        now = time.time() if now is None else now
        clips = self._clips()
        total = sum(size for _, size, _ in clips)
        removed: list[Path] = []
        deletable = sum(size for _, size, path in clips if path not in keep)
        if extra_needed > deletable:
            # something else fills the disk: deleting every clip would still not make room, so
            # delete none for it (recorded evidence is not thrown away for nothing)
            log.warning(
                "retention: %d bytes needed but all clips in %s hold %d; none deleted for space",
                extra_needed,
                self.folder,
                deletable,
            )
            extra_needed = 0
        for mtime, size, path in clips:
            too_old = self.max_age > 0 and now - mtime > self.max_age
            too_big = (self.max_bytes > 0 and total > self.max_bytes) or extra_needed > 0
            if path in keep or not (too_old or too_big):
                continue
            try:
                path.unlink()
            except FileNotFoundError:
                pass
            except OSError as err:
                log.warning("retention: cannot delete %s: %s", path, err)
                continue
            total -= size
            extra_needed -= size
            removed.append(path)
            self.deleted += 1
            log.info("retention: deleted %s (%s)", path.name, "age" if too_old else "quota")
        self.used_bytes = total
        return removed
