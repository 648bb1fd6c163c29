"""The command bus (``/nano_vision/commands`` -> ``/nano_vision/command_replies``) for any node.

``CommandBus(node, {"snapshot": fn, ...}, camera="cam0")`` subscribes the command topic, answers
only commands it has a handler for and whose ``target`` is ``"*"``, the node's fully qualified
name or its camera, and publishes ``{request_id, command, node, ok, result, error}``. A handler
returns a JSON-able result or raises; the exception text becomes ``error``.

Commands are served one at a time in arrival order (a queue of `queue_size`; overflow is answered
``busy``), each time-bounded: the handler runs on its own thread and a dispatcher waits at most
`timeout` s for it. A handler that overruns is answered ``timeout: ...`` and left to finish on its
own (its late result is logged, not sent); the next command is served at once on a fresh thread.
At most `max_overrun` overrunning handlers may be alive: beyond that, commands are answered
``busy`` until one of them ends, so a handler that never returns costs one thread, not a thread per
request.

``CommandClient`` is the requesting side (the MQTT bridge): `send()` publishes a request and
collects the replies with its request_id until a timeout; it may be called from several threads.
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
    def __init__(self, node: Node, handlers: dict[str, Handler], camera: str = "", queue_size: int = 32,
                 timeout: float = 4.0, max_overrun: int = 2) -> None:
        self.node = node
        self.handlers = dict(handlers)
        self.camera = camera
        self.fqn = node.get_fully_qualified_name()
        self.timeout = float(timeout)
        self.max_overrun = int(max_overrun)
        self.handled = 0
        self.failed = 0
        self.timed_out = 0
        self._overrunning: list[threading.Thread] = []
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
        except (ValueError, RecursionError):
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
            try:
                self._serve(req)
            except Exception as err:  # noqa: BLE001 - the dispatcher must survive anything
                log.error("command %s not served: %s", str(req.get("command"))[:64], err)

    def _serve(self, req: dict[str, Any]) -> None:
        self._overrunning = [t for t in self._overrunning if t.is_alive()]
        if len(self._overrunning) >= self.max_overrun:
            self.failed += 1
            self.reply(req, ok=False, error=f"busy: {len(self._overrunning)} earlier command(s) still running past "
                                            f"their {self.timeout:g}s limit")
            return
        done = threading.Event()
        box: dict[str, Any] = {}
        t = threading.Thread(target=self._run, args=(req, box, done), name=f"command-{req.get('command')}", daemon=True)
        t.start()
        if not done.wait(self.timeout):
            self._overrunning.append(t)
            self.timed_out += 1
            self.failed += 1
            box["late"] = True  # read by _run under the GIL: its result is only logged
            log.warning("command %s (%s) still running after %gs: answered timeout", req.get("command"),
                        str(req.get("request_id"))[:64], self.timeout)
            self.reply(req, ok=False, error=f"timeout: {req.get('command')} did not finish within {self.timeout:g}s")
            return
        if "error" in box:
            self.failed += 1
            self.reply(req, ok=False, error=box["error"])
        else:
            self.handled += 1
            self.reply(req, ok=True, result=box.get("result"))

    def _run(self, req: dict[str, Any], box: dict[str, Any], done: threading.Event) -> None:
        args = req.get("args") or {}
        try:
            if not isinstance(args, dict):
                raise ValueError("args must be an object")
            box["result"] = self.handlers[req["command"]](args)
        except Exception as err:  # noqa: BLE001 - every failure becomes an error reply
            box["error"] = str(err) if isinstance(err, ValueError) else f"{type(err).__name__}: {err}"
        done.set()
        if box.get("late"):
            log.warning("command %s (%s) finished late: %s", req.get("command"), str(req.get("request_id"))[:64],
                        box.get("error", "ok"))

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
