"""The lifecycle shape every model node shares (detector, face, plate).

configure/activate are each node's own (load the model, subscribe). The way down is the same for
all: deactivate stops the input (subscription + worker); cleanup, shutdown and error stop the
input and free the model, so GPU memory and sessions go with the state, not with the process.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn

from nano_vision_ros.core.errors import NanoVisionError
from nano_vision_ros.ros.worker import LatestWorker

T = TypeVar("T")

#: what a model load may raise for a bad model, config or missing runtime (the node stays up)
LOAD_ERRORS: tuple[type[BaseException], ...] = (NanoVisionError, ValueError, OSError)


class ModelLifecycleNode(LifecycleNode):
    """Subclasses set ``input_subs`` and ``worker`` in on_activate and implement ``_free`` (idempotent)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.input_subs: list[Any] = []
        self.worker: LatestWorker[Any] | None = None
        self.load_error = ""

    def _load_model(self, what: str, load: Callable[[], T]) -> T | None:
        """Run `load` and warm the result up (its ``warmup()``, if any) in on_configure. A bad
        model, config or missing runtime is one ERROR line naming it, kept in `load_error` for
        diagnostics and command replies; the node stays unconfigured (and alive) and the caller
        returns FAILURE on None."""
        try:
            loaded = load()
            warmup = getattr(loaded, "warmup", None)
            if callable(warmup):
                warmup()
        except LOAD_ERRORS as err:
            self.load_error = str(err)
            self.get_logger().error(f"cannot load {what}: {err}")
            return None
        self.load_error = ""
        return loaded

    def _stop_input(self) -> None:
        """Unsubscribe the frame inputs, then stop the worker (it finishes the frame in hand)."""
        for sub in self.input_subs:
            self.destroy_subscription(sub)
        self.input_subs = []
        if self.worker is not None:
            self.worker.stop()
            self.worker = None

    def _free(self) -> None:
        raise NotImplementedError

    def _release(self) -> TransitionCallbackReturn:
        self._stop_input()
        self._free()
        return TransitionCallbackReturn.SUCCESS

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_input()
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        return self._release()

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        return self._release()

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        return self._release()
