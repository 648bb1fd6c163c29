"""Start-up and shutdown shared by every node's ``main``.

- Bad configuration at start-up: one clear ERROR line naming the parameter, exit code 2 (the site
  runner reports it as a failed start).
- Lifecycle nodes: with their ``autostart`` parameter true (the default in the site runner, which
  has no lifecycle manager), they are configured and activated right after construction.
- Ctrl-C / SIGTERM: the executor stops, the node is destroyed (its ``destroy_node`` releases
  devices, subprocesses and models), rclpy shuts down.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Callable

import rclpy
from rclpy.executors import (
    Executor,
    ExternalShutdownException,
    MultiThreadedExecutor,
    SingleThreadedExecutor,
)
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions

from nano_vision_ros.core.errors import ConfigError

EXIT_CONFIG = 2


def setup_python_logging() -> None:
    """Route the core's module loggers to stderr in the ROS log line style."""
    level = os.environ.get("NANO_VISION_LOG_LEVEL", "INFO").upper()
    logging.basicConfig(
        level=getattr(logging, level, logging.INFO), format="[%(levelname)s] [%(name)s]: %(message)s", stream=sys.stderr
    )


#: NANO_VISION_EXECUTOR: which rclpy executor spins a process's nodes (see make_executor).
EXECUTORS = ("multi", "single", "events")


def make_executor(threads: int | None = None, default: str = "events") -> Executor:
    """The executor named by NANO_VISION_EXECUTOR, else `default` (``events``).

    ``events`` (rclpy's EventsExecutor, C++: no wait set rebuilt per wake-up) is the default by
    measurement: ``multi`` (MultiThreadedExecutor) rebuilds its wait set in Python at every
    wake-up, and in a camera's container (5 nodes, every entity walked at every wake-up) that loop
    was 89 % of the samples holding the GIL (py-spy --gil); the A/B in
    docs/performance/site_cost.md is the reason for the choice. One thread is enough because no
    callback of the nodes waits: frames and commands are handed to worker threads, and the bounded
    services (ros.services) answer from their own dispatcher threads, so a stuck command holds no
    executor thread. ``single`` (SingleThreadedExecutor) and ``multi`` (`threads` threads, default
    4) stay as overrides, e.g. should a new node need guard conditions, which EventsExecutor refuses.
    """
    kind = os.environ.get("NANO_VISION_EXECUTOR", "").strip().lower() or default
    if kind not in EXECUTORS:
        raise ConfigError(f"NANO_VISION_EXECUTOR must be one of {', '.join(EXECUTORS)} (got {kind!r})")
    if kind == "events":
        from rclpy.experimental import EventsExecutor

        return EventsExecutor()
    if kind == "single":
        return SingleThreadedExecutor()
    return MultiThreadedExecutor(num_threads=threads or 4)


def run_node(factory: Callable[[], Node], args: list[str] | None = None, threads: int | None = None) -> int:
    """Create the node, spin it until SIGINT/SIGTERM, clean up; returns the process exit code."""
    return run_nodes([("", factory)], args, threads)


def run_nodes(
    factories: list[tuple[str, Callable[[], Node]]], args: list[str] | None = None, threads: int | None = None
) -> int:
    """Create the nodes (in order) in one context and one executor, spin until SIGINT/SIGTERM.

    One process per node and a container of several nodes (nano_vision_ros.ros.container) share
    this code, so start-up errors, autostart and shutdown behave the same whichever way nodes are
    packed. A ConfigError from any node: one ERROR line naming the node and the problem, the nodes
    already created are destroyed, exit code 2.

    rclpy's own signal handler would invalidate the context at the first Ctrl-C, while worker
    threads may still publish (a clip notice, a last event). Here the signal only ends spinning;
    the nodes are destroyed (stopping their workers, which may still publish) while the context is
    valid, in the order they were created, and rclpy shuts down last.
    """
    setup_python_logging()
    from nano_vision_ros.core.memory import tune_malloc_for_frames

    tune_malloc_for_frames()  # frame-sized buffers reused, not page-faulted in per message (~3x less CPU per 1080p frame)
    rclpy.init(args=args if args is not None else sys.argv, signal_handler_options=SignalHandlerOptions.NO)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    nodes: list[Node] = []
    executor: Executor | None = None
    try:
        for label, factory in factories:
            try:
                nodes.append(factory())
            except ConfigError as err:
                where = f"{label}: " if label else ""
                rclpy.logging.get_logger("nano_vision_ros").error(f"{where}invalid configuration: {err}")
                return EXIT_CONFIG
        for node in nodes:
            _autostart(node)
        try:
            executor = make_executor(threads)
        except ConfigError as err:
            rclpy.logging.get_logger("nano_vision_ros").error(f"invalid configuration: {err}")
            return EXIT_CONFIG
        for node in nodes:
            executor.add_node(node)
        try:
            # spin_once in a loop, not spin(): with EventsExecutor.spin() a service call made from
            # another thread of the process hung in send_request (probe, rclpy 9.1.2); this loop did not
            while not stop.is_set() and rclpy.ok():
                executor.spin_once(timeout_sec=0.2)
        except (KeyboardInterrupt, ExternalShutdownException):
            pass
    finally:
        for node in nodes:
            try:
                node.destroy_node()
            except Exception as err:  # noqa: BLE001 - shutdown must finish
                logging.getLogger(__name__).warning("destroy_node %s: %s", node.get_name(), err)
        if executor is not None:
            executor.shutdown(timeout_sec=2.0)
        rclpy.try_shutdown()
    return 0


def _autostart(node: Node) -> None:
    from rclpy.lifecycle import LifecycleNode

    if not isinstance(node, LifecycleNode):
        return
    if not node.has_parameter("autostart"):
        node.declare_parameter("autostart", True)
    if not node.get_parameter("autostart").value:
        return
    from rclpy.lifecycle import TransitionCallbackReturn

    # rclpy's trigger_* return the callback's TransitionCallbackReturn, not the new state
    result = node.trigger_configure()
    if result != TransitionCallbackReturn.SUCCESS:
        node.get_logger().error(f"autostart: configure failed ({result}); waiting for a lifecycle manager")
        return
    result = node.trigger_activate()
    if result != TransitionCallbackReturn.SUCCESS:
        node.get_logger().error(f"autostart: activate failed ({result})")
