"""Keep subscription callbacks light: hand the newest item to a worker thread, drop the rest."""
from __future__ import annotations

import logging
import threading
from typing import Callable, Generic, TypeVar

T = TypeVar("T")
log = logging.getLogger(__name__)


class LatestWorker(Generic[T]):
    """A size-1, drop-oldest queue served by one thread.

    ``submit`` never blocks: if the worker is still busy with an older item, the pending one is
    replaced and counted in ``dropped``. Exceptions in the handler are logged (rate-limited by the
    caller's logger) and counted; the worker keeps going.
    """

    def __init__(self, handler: Callable[[T], None], name: str = "worker") -> None:
        self._handler = handler
        self._cond = threading.Condition()
        self._pending: T | None = None
        self._has_pending = False
        self._stop = False
        self.submitted = 0
        self.processed = 0
        self.dropped = 0
        self.errors = 0
        self.last_error: str = ""
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, item: T) -> None:
        with self._cond:
            if self._has_pending:
                self.dropped += 1
            self._pending = item
            self._has_pending = True
            self.submitted += 1
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._has_pending and not self._stop:
                    self._cond.wait()
                if self._stop:
                    return
                item = self._pending
                self._pending = None
                self._has_pending = False
            try:
                self._handler(item)  # type: ignore[arg-type]
                self.processed += 1
            except Exception as err:  # a bad frame must not kill the node
                self.errors += 1
                self.last_error = f"{type(err).__name__}: {err}"
                log.warning("%s: %s", self._thread.name, self.last_error, exc_info=log.isEnabledFor(logging.DEBUG))

    def stop(self, timeout: float = 2.0) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)
