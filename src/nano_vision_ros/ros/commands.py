"""The command bus (``/nano_vision/commands`` -> ``/nano_vision/command_replies``) for any node.

``CommandBus(node, {"snapshot": fn, ...}, camera="cam0")`` subscribes the command topic, answers
only commands it has a handler for and whose ``target`` is ``"*"``, the node's fully qualified
name or its camera, runs handlers on one worker thread (a queue of `queue_size`; overflow is
answered ``busy``) and publishes ``{request_id, command, node, ok, result, error}``. A handler
returns a JSON-able result or raises; the exception text becomes ``error``.

``CommandClient`` is the requesting side (the MQTT bridge): `send()` publishes a request and
collects the replies with its request_id until a timeout.
"""
from __future__ import annotations

import json
import logging
import queue
import threading
import time
from typing import Any, Callable

from rclpy.node import Node
from std_msgs.msg import String

from nano_vision_ros.ros import qos

COMMANDS_TOPIC = "/nano_vision/commands"
REPLIES_TOPIC = "/nano_vision/command_replies"

log = logging.getLogger(__name__)
Handler = Callable[[dict[str, Any]], Any]


class CommandBus:
    def __init__(self, node: Node, handlers: dict[str, Handler], camera: str = "", queue_size: int = 32) -> None:
        self.node = node
        self.handlers = dict(handlers)
        self.camera = camera
        self.fqn = node.get_fully_qualified_name()
        self.handled = 0
        self.failed = 0
        self._q: queue.Queue[dict[str, Any] | None] = queue.Queue(maxsize=queue_size)
        self._pub = node.create_publisher(String, REPLIES_TOPIC, qos.RELIABLE)
        self._sub = node.create_subscription(String, COMMANDS_TOPIC, self._on_msg, qos.RELIABLE)
        self._thread = threading.Thread(target=self._loop, name="command-bus", daemon=True)
        self._thread.start()

    def targets_me(self, target: Any) -> bool:
        t = str(target) if target is not None else "*"
        return t in ("*", "", self.fqn) or (bool(self.camera) and t == self.camera)

    def _on_msg(self, msg: String) -> None:
        try:
            req = json.loads(msg.data)
        except ValueError:
            log.warning("ignored a command that is not JSON (%d bytes)", len(msg.data))
            return
        if not isinstance(req, dict) or req.get("command") not in self.handlers or not self.targets_me(req.get("target", "*")):
            return
        try:
            self._q.put_nowait(req)
        except queue.Full:
            self.reply(req, ok=False, error="busy: too many commands queued")

    def _loop(self) -> None:
        while True:
            req = self._q.get()
            if req is None:
                return
            args = req.get("args") or {}
            try:
                if not isinstance(args, dict):
                    raise ValueError("args must be an object")
                result = self.handlers[req["command"]](args)
                self.handled += 1
                self.reply(req, ok=True, result=result)
            except Exception as err:  # noqa: BLE001 - every failure becomes an error reply
                self.failed += 1
                self.reply(req, ok=False, error=f"{type(err).__name__}: {err}" if not isinstance(err, ValueError) else str(err))

    def reply(self, req: dict[str, Any], ok: bool, result: Any = None, error: str | None = None) -> None:
        body = {"request_id": req.get("request_id"), "command": req.get("command"), "node": self.fqn,
                "ok": ok, "result": result, "error": error}
        self._pub.publish(String(data=json.dumps(body, default=str)))

    def destroy(self) -> None:
        try:
            self._q.put_nowait(None)
        except queue.Full:
            pass
        self.node.destroy_subscription(self._sub)
        self.node.destroy_publisher(self._pub)


class CommandClient:
    """Send requests on the bus and wait for the replies that carry their request_id."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self._pending: dict[str, list[dict[str, Any]]] = {}
        self._cond = threading.Condition()
        self._pub = node.create_publisher(String, COMMANDS_TOPIC, qos.RELIABLE)
        self._sub = node.create_subscription(String, REPLIES_TOPIC, self._on_reply, qos.RELIABLE)

    def _on_reply(self, msg: String) -> None:
        try:
            rep = json.loads(msg.data)
        except ValueError:
            return
        if not isinstance(rep, dict):
            return
        with self._cond:
            bucket = self._pending.get(str(rep.get("request_id")))
            if bucket is not None:
                bucket.append(rep)
                self._cond.notify_all()

    def send(self, request: dict[str, Any], timeout: float = 3.0, grace: float = 0.3) -> list[dict[str, Any]]:
        """Publish; return the replies received until `timeout` (or `grace` s after the first one)."""
        rid = str(request["request_id"])
        with self._cond:
            self._pending[rid] = []
        try:
            self._pub.publish(String(data=json.dumps(request)))
            deadline = time.monotonic() + timeout
            graced = False
            with self._cond:
                while True:
                    bucket = self._pending[rid]
                    if bucket and not graced:  # more nodes may answer a "*" command: wait a little longer
                        deadline = min(deadline, time.monotonic() + grace)
                        graced = True
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return list(bucket)
                    self._cond.wait(remaining)
        finally:
            with self._cond:
                self._pending.pop(rid, None)
