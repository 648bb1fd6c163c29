"""Keep subscription callbacks light: hand the newest item to a worker thread, drop the rest."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

from nano_vision_ros.ros.diagnostics import BadFrames
from nano_vision_ros.ros.image import ImageError

T = TypeVar("T")
log = logging.getLogger(__name__)


class LatestWorker(Generic[T]):
    """A size-1, drop-oldest queue served by one thread.

    ``submit`` never blocks: if the worker is still busy with an older item, the pending one is
    replaced and counted in ``dropped``. Exceptions in the handler are counted and logged
    throttled; the worker keeps going. An ``ImageError`` (a bad frame) goes to ``bad``
    (``BadFrames``: per-cause counts, named in the node's diagnostics), numbered by arrival.
    """

    ERROR_LOG_PERIOD = 10.0

    def __init__(self, handler: Callable[[T], None], name: str = "worker") -> None:
        self._handler = handler
        self._cond = threading.Condition()
        self._pending: T | None = None
        self._pending_no = 0
        self._has_pending = False
        self._stop = False
        self.submitted = 0
        self.processed = 0
        self.dropped = 0
        self.errors = 0
        self.last_error: str = ""
        self.bad = BadFrames(name)
        self._err_logged_t: float | None = None
        self._err_unlogged = 0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, item: T) -> None:
        with self._cond:
            if self._has_pending:
                self.dropped += 1
            self._pending = item
            self._has_pending = True
            self.submitted += 1
            self._pending_no = self.submitted
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._has_pending and not self._stop:
                    self._cond.wait()
                if self._stop:
                    return
                item = self._pending
                number = self._pending_no
                self._pending = None
                self._has_pending = False
            try:
                self._handler(item)  # type: ignore[arg-type]
                self.processed += 1
            except ImageError as err:  # a bad frame: counted by cause, logged throttled
                self.errors += 1
                self.last_error = f"{type(err).__name__}: {err}"
                self.bad.record(err, number)
            except Exception as err:  # noqa: BLE001 - a failing handler must not kill the node
                self.errors += 1
                self.last_error = f"{type(err).__name__}: {err}"
                self._log_error()

    def _log_error(self) -> None:
        """First error at WARNING, then at most one line per ERROR_LOG_PERIOD with the count."""
        now = time.monotonic()
        if self._err_logged_t is not None and now - self._err_logged_t < self.ERROR_LOG_PERIOD:
            self._err_unlogged += 1
            return
        more = f" ({self._err_unlogged} more errors since the last report)" if self._err_unlogged else ""
        log.warning("%s: %s%s", self._thread.name, self.last_error, more, exc_info=log.isEnabledFor(logging.DEBUG))
        self._err_logged_t = now
        self._err_unlogged = 0

    def stop(self, timeout: float = 2.0) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)
