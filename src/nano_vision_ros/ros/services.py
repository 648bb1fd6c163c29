"""The nodes' commands as ROS services (nano_vision_msgs/srv), time-bounded; and the caller side.

Server: ``BoundedServices(node, timeout)`` and ``add(SetThreshold, "set_threshold", handler)`` offer
``~/set_threshold`` (e.g. ``/cam0/detector_node/set_threshold``). Why the wrapping: a handler may read
a file, run a model or wait on a lock, and a hostile or unlucky request must not hold the node.

- The executor never waits for a handler: the service callback only queues the request and returns;
  each service has its own dispatcher thread that runs the handler and sends the answer (a deferred
  response). So a slow or stuck request holds no executor thread, and the nodes' subscriptions,
  timers, parameters, lifecycle and other services go on under any executor, one-threaded ones
  included (``events``, the default: ros.runtime).
- Each service is served in order, one request at a time, by its own dispatcher, so a slow request
  of one service never delays another service. At most `queue_depth` requests wait per service;
  beyond that a request is answered ``busy`` at once.
- The handler runs on its own thread; the dispatcher waits at most `timeout` s for it. A handler
  that overruns is answered ``success=false, message="timeout: ..."`` and left to finish on its own
  (its late result is logged, not sent); the next request is served at once. At most `max_overrun`
  overrunning handlers per service are kept alive: beyond that, requests are answered ``busy``
  until one ends (a handler that never returns costs one thread, not one per request).
- ``handler(request, response)`` fills and returns the response; a ValueError (or any exception)
  becomes ``success=false`` with its text in ``message``. Every response type has success/message.
- Counters ``handled``, ``failed``, ``timed_out`` (every refusal, busy included, counts as failed).

How the answer is deferred: rclpy has no deferred-response API, but every executor (the Python
ones and the C++ EventsExecutor) answers a request by calling the Service object's
``send_response(response, header)`` with what the callback returned. The callback returns a
``_Queued`` marker and the service's ``send_response`` is wrapped, so the marker (with the
request's header) goes to the dispatcher and the real answer is sent later from its thread.
Why not ``async def`` callbacks awaiting a Future: rclpy's EventsExecutor re-posts a suspended task
at once, so it spins while it waits (1.1 s of CPU in a 3 s wait, measured:
docs/performance/site_cost.md); the Python executors handle it without spinning.

Caller (the MQTT bridge): ``ServiceCommands(node)`` turns an MQTT command ``{request_id, command,
target, args}`` into calls of every matching service (target ``"*"``, a camera name by
ros.naming.camera_name, or a node's fully qualified name, looked up in the ROS graph) and returns
the per-node replies ``{node, ok, result, error}`` the MQTT reply carries (docs/EVENTS.md).
"""

from __future__ import annotations

import base64
import binascii
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from builtin_interfaces.msg import Time
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node
from rclpy.service import Service

from nano_vision_ros.ros.naming import camera_name, split_service

log = logging.getLogger(__name__)
Handler = Callable[[Any, Any], Any]


class _Queued:
    """What a bounded service's callback returns instead of a response: the request, to be queued."""

    __slots__ = ("request",)

    def __init__(self, request: Any) -> None:
        self.request = request


class BoundedServices:
    """The time-bounded services of one node (see the module docstring)."""

    def __init__(self, node: Node, timeout: float = 4.0, max_overrun: int = 2, queue_depth: int = 10) -> None:
        self.node = node
        self.timeout = float(timeout)
        self.max_overrun = int(max_overrun)
        self.queue_depth = int(queue_depth)
        self.handled = 0
        self.failed = 0
        self.timed_out = 0
        self.services: list[Any] = []
        self._lock = threading.Lock()  # the counters: one dispatcher per service updates them
        self._lanes: list[_Lane] = []

    def add(self, srv_type: Any, name: str, handler: Handler) -> Any:
        lane = _Lane(self, srv_type, name, handler)
        srv: Service[Any, Any] = self.node.create_service(
            srv_type, f"~/{name}", lambda req, _resp: _Queued(req), callback_group=MutuallyExclusiveCallbackGroup()
        )
        lane.attach(srv)
        self._lanes.append(lane)
        self.services.append(srv)
        return srv

    def _count(self, ok: bool, timed_out: bool = False) -> None:
        with self._lock:
            if ok:
                self.handled += 1
            else:
                self.failed += 1
            if timed_out:
                self.timed_out += 1

    def destroy(self) -> None:
        for srv in self.services:
            self.node.destroy_service(srv)
        for lane in self._lanes:
            lane.stop()
        self.services = []
        self._lanes = []


class _Lane:
    """One service's queue and dispatcher thread: requests in order, each bounded by the timeout."""

    def __init__(self, host: BoundedServices, srv_type: Any, name: str, handler: Handler) -> None:
        self.host = host
        self.srv_type = srv_type
        self.name = name
        self.handler = handler
        self.queue: queue.Queue[tuple[Any, Any] | None] = queue.Queue(maxsize=max(1, host.queue_depth))
        self.overrunning: list[threading.Thread] = []
        self._send: Callable[[Any, Any], None] | None = None
        self._thread = threading.Thread(target=self._dispatch, name=f"srv-{name}", daemon=True)

    def attach(self, srv: Service[Any, Any]) -> None:
        """Wrap the Service's send_response (see the module docstring) and start the dispatcher."""
        self._send = srv.send_response
        setattr(srv, "send_response", self._on_send)  # noqa: B010 - an instance attribute over the method
        self._thread.start()

    def _on_send(self, response: Any, header: Any) -> None:
        assert self._send is not None
        if not isinstance(response, _Queued):
            self._send(response, header)
            return
        try:
            self.queue.put_nowait((response.request, header))
        except queue.Full:
            self.host._count(ok=False)
            msg = f"busy: {self.queue.maxsize} earlier {self.name} request(s) already waiting"
            self._send(_refuse(self.srv_type.Response(), msg), header)

    def stop(self) -> None:
        try:
            self.queue.put_nowait(None)
        except queue.Full:
            pass  # the dispatcher is a daemon thread: it ends with the process

    def _dispatch(self) -> None:
        while (item := self.queue.get()) is not None:
            req, header = item
            resp = self._serve(req)
            try:
                assert self._send is not None
                self._send(resp, header)
            except Exception as err:  # noqa: BLE001 - a destroyed service or node: nobody to answer
                log.warning("%s: answer not sent: %s", self.name, err)

    def _serve(self, req: Any) -> Any:
        host, name = self.host, self.name
        alive = self.overrunning = [t for t in self.overrunning if t.is_alive()]
        if len(alive) >= host.max_overrun:
            host._count(ok=False)
            return _refuse(
                self.srv_type.Response(),
                f"busy: {len(alive)} earlier {name} request(s) still running past their {host.timeout:g}s limit",
            )
        done = threading.Event()
        box: dict[str, Any] = {}
        t = threading.Thread(
            target=self._run, args=(req, self.srv_type.Response(), box, done), name=f"srv-{name}-handler", daemon=True
        )
        t.start()
        if not done.wait(host.timeout):
            alive.append(t)
            host._count(ok=False, timed_out=True)
            box["late"] = True  # read by _run under the GIL: its result is only logged
            log.warning(
                "%s%s still running after %gs: answered timeout",
                host.node.get_fully_qualified_name(),
                f"/{name}",
                host.timeout,
            )
            return _refuse(self.srv_type.Response(), f"timeout: {name} did not finish within {host.timeout:g}s")
        if "error" in box:
            host._count(ok=False)
            return _refuse(self.srv_type.Response(), box["error"])
        host._count(ok=True)
        out = box["result"]
        out.success = True
        return out

    def _run(self, req: Any, resp: Any, box: dict[str, Any], done: threading.Event) -> None:
        try:
            box["result"] = self.handler(req, resp)
        except Exception as err:  # noqa: BLE001 - every failure becomes success=false
            box["error"] = str(err) if isinstance(err, ValueError) else f"{type(err).__name__}: {err}"
        done.set()
        if box.get("late"):
            log.warning("%s finished late: %s", self.name, box.get("error", "ok"))


def _refuse(resp: Any, message: str) -> Any:
    resp.success = False
    resp.message = message[:2000]
    return resp


# --- time stamps -----------------------------------------------------------------------------------
def to_time(t: float) -> Time:
    sec = int(t)
    return Time(sec=sec, nanosec=round((t - sec) * 1e9) % 1_000_000_000)


def from_time(t: Time) -> float:
    return t.sec + t.nanosec * 1e-9


# --- the caller side: MQTT command -> service calls -------------------------------------------------
def _f32(x: float) -> float:
    return round(float(x), 6)  # float32 on the wire: 0.6 -> 0.6000000238 -> 0.6


@dataclass(frozen=True)
class CommandSpec:
    """How one MQTT command maps onto one service: type, short name, request from args, result."""

    srv: str  # "nano_vision_msgs/srv/SetThreshold"
    service: str  # "set_threshold" (under each node's name)
    request: Callable[[Any, dict[str, Any]], Any]
    result: Callable[[Any, str, dict[str, Any]], dict[str, Any]]  # (response, node's camera, args) -> reply's result

    def srv_type(self) -> Any:
        import importlib

        pkg, _, name = self.srv.split("/")
        return getattr(importlib.import_module(f"{pkg}.srv"), name)


def _enroll_request(req: Any, args: dict[str, Any]) -> Any:
    req.name = args["name"]
    if "image_b64" in args:
        text = args["image_b64"]
        text = text.split(",", 1)[-1] if text.startswith("data:") else text
        try:
            req.image = base64.b64decode(text, validate=False)
        except (binascii.Error, ValueError) as err:
            raise ValueError(f"image_b64 is not valid base64: {err}") from None
    else:
        req.image_path = args["image_path"]
    return req


def _set_threshold_request(req: Any, args: dict[str, Any]) -> Any:
    req.score_threshold = float(args.get("score_threshold", -1.0))
    req.nms_threshold = float(args.get("nms_threshold", -1.0))
    return req


def _snapshot_result(r: Any, camera: str, args: dict[str, Any]) -> dict[str, Any]:
    from nano_vision_ros.core.events.schema import iso

    return {"camera": r.camera, "path": r.path, "stamp": iso(from_time(r.stamp)), "width": r.width, "height": r.height}


def _with(**fields: Any) -> Callable[[Any, dict[str, Any]], Any]:
    def make(req: Any, args: dict[str, Any]) -> Any:
        for k, v in fields.items():
            setattr(req, k, v(args) if callable(v) else v)
        return req

    return make


COMMANDS: dict[str, CommandSpec] = {
    "enroll_face": CommandSpec(
        "nano_vision_msgs/srv/EnrollFace",
        "enroll_face",
        _enroll_request,
        lambda r, cam, args: {"name": r.name, "added": r.added, "total": r.total, "faces": r.faces},
    ),
    "delete_face": CommandSpec(
        "nano_vision_msgs/srv/DeleteFace",
        "delete_face",
        _with(name=lambda a: a["name"]),
        lambda r, cam, args: {"deleted": args["name"]},
    ),
    "set_threshold": CommandSpec(
        "nano_vision_msgs/srv/SetThreshold",
        "set_threshold",
        _set_threshold_request,
        lambda r, cam, args: {"score_threshold": _f32(r.score_threshold), "nms_threshold": _f32(r.nms_threshold)},
    ),
    "snapshot": CommandSpec(
        "nano_vision_msgs/srv/Snapshot", "snapshot", _with(camera=lambda a: a.get("camera", "")), _snapshot_result
    ),
    "reload_config": CommandSpec(
        "nano_vision_msgs/srv/ReloadConfig",
        "reload_config",
        _with(),
        lambda r, cam, args: {"camera": cam, "rules": list(r.rules)},
    ),
}


class UnknownTarget(ValueError):
    """No node offers the command's service for the target."""


class ServiceCommands:
    """Call the service(s) of an MQTT command; usable from several threads at once."""

    def __init__(self, node: Node, discovery_wait: float = 1.0) -> None:
        self.node = node
        self.discovery_wait = float(discovery_wait)
        self._clients: dict[str, Any] = {}
        self._lock = threading.Lock()

    def resolve(self, command: str, target: str) -> list[str]:
        """Service names of `command` for target "*", a camera name or a node FQN, from the graph."""
        spec = COMMANDS[command]
        target = target or "*"
        out = []
        for name, types in self.node.get_service_names_and_types():
            ns, fqn, short = split_service(name)
            if short != spec.service or spec.srv not in types:
                continue
            if target in ("*", fqn) or target == camera_name(ns):
                out.append(name)
        return sorted(out)

    def _client(self, command: str, name: str) -> Any:
        with self._lock:
            c = self._clients.get(name)
            if c is None:
                c = self._clients[name] = self.node.create_client(COMMANDS[command].srv_type(), name)
            return c

    def call(self, request: dict[str, Any], timeout: float) -> list[dict[str, Any]]:
        """Per-node replies ``{node, ok, result, error}``; [] when none answered within `timeout`.

        UnknownTarget when no node offers the service for the target; ValueError for args the
        request cannot be built from (e.g. image_b64 that is not base64)."""
        command, target = request["command"], str(request.get("target") or "*")
        spec = COMMANDS[command]
        names = self.resolve(command, target)
        wait_until = time.monotonic() + min(self.discovery_wait, timeout)
        while not names and time.monotonic() < wait_until:  # a node that just started may not be discovered yet
            time.sleep(0.1)
            names = self.resolve(command, target)
        if not names:
            raise UnknownTarget(f"no node offers {spec.service} ({spec.srv}) for target {target!r}")
        srv_type = spec.srv_type()
        req = spec.request(srv_type.Request(), request.get("args") or {})
        deadline = time.monotonic() + timeout
        calls: list[tuple[str, Any, Any, threading.Event]] = []
        for name in names:
            client = self._client(command, name)
            if not client.wait_for_service(max(0.0, min(deadline - time.monotonic(), timeout))):
                continue
            done = threading.Event()
            fut = client.call_async(req)
            fut.add_done_callback(lambda _f, done=done: done.set())
            calls.append((name, client, fut, done))
        replies: list[dict[str, Any]] = []
        answered = 0
        for name, client, fut, done in calls:
            ns, node, _ = split_service(name)
            if not done.wait(max(0.0, deadline - time.monotonic())) or not fut.done():
                client.remove_pending_request(fut)
                replies.append(
                    {"node": node, "ok": False, "result": None, "error": f"timeout: no answer within {timeout:g}s"}
                )
                continue
            answered += 1
            resp = fut.result()
            ok = bool(resp.success)
            replies.append(
                {
                    "node": node,
                    "ok": ok,
                    "result": spec.result(resp, camera_name(ns), request.get("args") or {}) if ok else None,
                    "error": None if ok else resp.message,
                }
            )
        return replies if answered else []

    def destroy(self) -> None:
        with self._lock:
            for c in self._clients.values():
                self.node.destroy_client(c)
            self._clients = {}
