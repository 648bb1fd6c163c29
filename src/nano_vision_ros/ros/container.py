"""Several nodes in one process (ROS 2 composition for rclpy): one interpreter, one context, one
DDS participant (one shared-memory segment), one executor.

    python -m nano_vision_ros.ros.container '{"executable": "camera_node", "name": "camera_node",
        "namespace": "/cam0", "args": ["--ros-args", "-r", "__node:=camera_node", ...]}' ...

Each argument is one node as the site graph describes it (nano_vision_ros.site.graph). Every node
keeps its own name, namespace, parameters and remappings: its ``--ros-args`` are passed as the
node's own ``cli_args`` with ``use_global_arguments=False``, exactly what it would get as its own
process. Start-up, autostart and shutdown are runtime.run_nodes, the same as for one node.
"""

from __future__ import annotations

import importlib
import inspect
import json
import sys
from collections.abc import Callable
from functools import partial
from typing import Any

from rclpy.node import Node

from nano_vision_ros.ros.runtime import EXIT_CONFIG, run_nodes


class ContainerError(ValueError):
    """A node argument the container cannot turn into a node (names the argument)."""


def node_class(executable: str) -> type[Node]:
    """The rclpy Node class of a node's module (nano_vision_ros.nodes.<executable>)."""
    if not executable.isidentifier():
        raise ContainerError(f"not a node executable: {executable!r}")
    try:
        module = importlib.import_module(f"nano_vision_ros.nodes.{executable}")
    except ImportError as err:
        raise ContainerError(f"node {executable!r}: cannot import its module: {err}") from None
    classes = [
        c
        for _n, c in inspect.getmembers(module, inspect.isclass)
        if issubclass(c, Node) and c.__module__ == module.__name__
    ]
    if len(classes) != 1:
        raise ContainerError(f"node {executable!r}: expected one Node class in its module, found {len(classes)}")
    return classes[0]


def parse_spec(text: str) -> dict[str, Any]:
    try:
        spec = json.loads(text)
    except ValueError as err:
        raise ContainerError(f"node argument is not JSON ({err}): {text[:80]!r}") from None
    if (
        not isinstance(spec, dict)
        or not isinstance(spec.get("executable"), str)
        or not isinstance(spec.get("args"), list)
    ):
        raise ContainerError(f"node argument needs 'executable' and 'args': {text[:80]!r}")
    return spec


def factories(specs: list[dict[str, Any]]) -> list[tuple[str, Callable[[], Node]]]:
    out: list[tuple[str, Callable[[], Node]]] = []
    for spec in specs:
        cls = node_class(spec["executable"])
        args = [str(a) for a in spec["args"]]
        ns = str(spec.get("namespace", "") or "")
        label = f"{ns.strip('/')}/{spec.get('name', spec['executable'])}".strip("/")
        out.append((label, partial(cls, namespace=ns or None, cli_args=args, use_global_arguments=False)))
    return out


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        print("usage: python -m nano_vision_ros.ros.container NODE_JSON [NODE_JSON ...]", file=sys.stderr)
        return EXIT_CONFIG
    try:
        made = factories([parse_spec(a) for a in argv])
    except ContainerError as err:
        print(f"container: {err}", file=sys.stderr)
        return EXIT_CONFIG
    return run_nodes(made, args=[sys.argv[0]])


if __name__ == "__main__":
    sys.exit(main())
