"""The lifecycle shape every model node shares (detector, face, plate).

configure/activate are each node's own (load the model, subscribe). The way down is the same for
all: deactivate stops the input (subscription + worker); cleanup, shutdown and error stop the
input and free the model, so GPU memory and sessions go with the state, not with the process.
"""
from __future__ import annotations

from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn


class ModelLifecycleNode(LifecycleNode):
    """Subclasses implement ``_stop_input`` (idempotent) and ``_free`` (idempotent)."""

    def _stop_input(self) -> None:
        raise NotImplementedError

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
