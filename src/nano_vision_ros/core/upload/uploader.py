"""Deliver queued clips one at a time with exponential backoff; report each state change."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nano_vision_ros.core.hashing import sha256_file
from nano_vision_ros.core.upload.client import ServerAddress, UploadError, upload_file
from nano_vision_ros.core.upload.queue import DONE, FAILED, QUEUED, UPLOADING, Item, UploadQueue

log = logging.getLogger(__name__)


class Uploader:
    """``add()`` queues a clip; a worker thread uploads due items and calls ``on_status(dict)``."""

    def __init__(
        self,
        queue: UploadQueue,
        addr: ServerAddress,
        on_status: Callable[[dict[str, Any]], None] | None = None,
        backoff_min: float = 2.0,
        backoff_max: float = 300.0,
        max_attempts: int = 0,
        delete_after_upload: bool = False,
        upload: Callable[..., Any] = upload_file,
    ) -> None:
        self.queue = queue
        self.addr = addr
        self.on_status = on_status or (lambda s: None)
        self.backoff_min = backoff_min
        self.backoff_max = backoff_max
        self.max_attempts = max_attempts  # 0 = retry forever (clips matter; the queue persists)
        self.delete_after_upload = delete_after_upload
        self._upload = upload
        self._wake = threading.Event()
        self._stop = threading.Event()
        self.uploaded = 0
        self.failures = 0
        self.bytes_sent = 0
        self.last_error = ""
        self.current = ""
        self._thread = threading.Thread(target=self._run, name="uploader", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def add(self, path: str, name: str, sha256: str, size: int, meta: dict[str, Any] | None = None) -> bool:
        item = self.queue.add(path, name, sha256, size, meta)
        if item is None:
            return False
        self._report(item)
        self._wake.set()
        return True

    def _report(self, item: Item | None, **extra: Any) -> None:
        if item is None:
            return
        try:
            self.on_status({**item.status(), **extra})
        except Exception:
            log.exception("on_status callback")

    def _run(self) -> None:
        while not self._stop.is_set():
            item = self.queue.next_due()
            if item is None:
                wait = self.queue.next_wait()
                self._wake.wait(timeout=min(wait if wait is not None else 5.0, 5.0))
                self._wake.clear()
                continue
            self._attempt(item)

    def _attempt(self, item: Item) -> None:
        attempts = item.attempts + 1
        self.current = item.name
        self._report(self.queue.update(item.path, state=UPLOADING, attempts=attempts))
        try:
            if not os.path.isfile(item.path):
                raise UploadError(f"{item.path} no longer exists", retryable=False, code="local")
            if sha256_file(item.path) != item.sha256:
                raise UploadError(
                    f"{item.path} changed since it was queued (sha256 differs)", retryable=False, code="local"
                )
            result = self._upload(self.addr, item.path, item.name, sha256=item.sha256)
        except UploadError as err:
            self.failures += 1
            self.last_error = str(err)
            permanent = not err.retryable or (self.max_attempts and attempts >= self.max_attempts)
            if permanent:
                log.error("upload of %s failed for good: %s", item.name, err)
                self._report(self.queue.update(item.path, state=FAILED, error=str(err)))
            else:
                delay = min(self.backoff_min * 2 ** (attempts - 1), self.backoff_max)
                log.warning("upload of %s failed (attempt %d): %s; retry in %.0fs", item.name, attempts, err, delay)
                self._report(
                    self.queue.update(item.path, state=QUEUED, error=str(err), next_try=time.time() + delay),
                    retry_in=round(delay, 1),
                )
        except Exception as err:
            self.failures += 1
            self.last_error = f"{type(err).__name__}: {err}"
            log.exception("upload of %s", item.name)
            self._report(
                self.queue.update(
                    item.path, state=QUEUED, error=self.last_error, next_try=time.time() + self.backoff_max
                )
            )
        else:
            self.uploaded += 1
            self.bytes_sent += result.sent
            self.last_error = ""
            log.info("uploaded %s (%d bytes, resumed at %d)", item.name, result.size, result.resumed_from)
            self._report(
                self.queue.update(item.path, state=DONE, error="", remote=result.remote),
                resumed_from=result.resumed_from,
            )
            if self.delete_after_upload:
                try:
                    Path(item.path).unlink()
                except OSError as err:
                    log.warning("cannot delete uploaded %s: %s", item.path, err)
        finally:
            self.current = ""

    def stats(self) -> dict[str, object]:
        return {
            **{f"queue_{k}": v for k, v in self.queue.counts().items()},
            "uploaded": self.uploaded,
            "failures": self.failures,
            "bytes_sent": self.bytes_sent,
            "current": self.current,
            "last_error": self.last_error,
        }

    def stop(self, timeout: float = 5.0) -> bool:
        """Stop after the current upload; True if the worker ended (the queue may then be closed)."""
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        return not self._thread.is_alive()
