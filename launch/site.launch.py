"""ros2 launch nano_vision_ros site.launch.py [site_config:=PATH] [start_services:=true|false] [board:=NAME] [check:=false]

The same node graph as `nano-vision site`: both come from nano_vision_ros.site.graph.build_graph
reading config/site.yaml (cameras, the nodes of each, site-wide nodes, one params file), packed
into the same processes (`processes:` per camera: one Node action per single-node process, one
container process per group) with the same Fast DDS profile per process. Like `nano-vision site`, it
runs `nano-vision check` first and starts nothing when the site has problems.
"""

import os
import sys

from launch.actions import DeclareLaunchArgument, ExecuteProcess, OpaqueFunction, SetEnvironmentVariable
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from launch import LaunchDescription


def _nodes(context, *args, **kwargs):
    from nano_vision_ros.site.check import check_in_child
    from nano_vision_ros.site.config import load_site
    from nano_vision_ros.site.graph import build_graph

    site, path = load_site(LaunchConfiguration("site_config").perform(context))
    board = LaunchConfiguration("board").perform(context) or None
    graph = build_graph(site, path, board)
    start_services = LaunchConfiguration("start_services").perform(context).lower() in ("1", "true", "yes")
    if LaunchConfiguration("check", default="true").perform(context).lower() in ("1", "true", "yes"):
        # `nano-vision check` first, in a child process: every problem of the site at once, nothing started
        code, report = check_in_child(path, board, services=start_services)
        if code != 0:
            raise RuntimeError(f"the site does not pass `nano-vision check`, nothing started:\n{report}")
        print(f"[site.launch] {report}", flush=True)
    actions = [SetEnvironmentVariable(k, v) for k, v in graph.env.items()]
    if start_services:
        if graph.runs_service("mosquitto"):
            actions.append(
                ExecuteProcess(
                    cmd=[
                        sys.executable,
                        "-m",
                        "nano_vision_ros.site.services",
                        "mosquitto",
                        "--host",
                        site.services.mosquitto.host,
                        "--port",
                        str(site.services.mosquitto.port),
                    ],
                    name="mosquitto",
                    output="screen",
                )
            )
        if graph.runs_service("nginx_rtmp"):
            actions.append(
                ExecuteProcess(
                    cmd=[
                        sys.executable,
                        "-m",
                        "nano_vision_ros.site.services",
                        "nginx_rtmp",
                        "--host",
                        site.services.nginx_rtmp.host,
                        "--port",
                        str(site.services.nginx_rtmp.port),
                    ],
                    name="nginx_rtmp",
                    output="screen",
                )
            )
        rx = site.services.clip_receiver
        if graph.runs_service("clip_receiver"):
            actions.append(
                ExecuteProcess(
                    cmd=[
                        sys.executable,
                        "-m",
                        "nano_vision_ros.site.services",
                        "clip_receiver",
                        "--host",
                        rx.host,
                        "--port",
                        str(rx.port),
                        "--dir",
                        rx.dir,
                        "--token-file",
                        rx.token_file,
                        "--status-port",
                        str(rx.status_port),
                    ],
                    name="clip_receiver",
                    output="screen",
                )
            )
    for proc in graph.processes:
        if proc.is_container:
            # several nodes in one process (the site file's `processes:`); each keeps its own name,
            # namespace, parameters and remappings (nano_vision_ros.ros.container)
            actions.append(
                ExecuteProcess(
                    cmd=proc.command(),
                    name=proc.label,
                    output="screen",
                    emulate_tty=True,
                    additional_env=proc.env or None,
                    respawn=proc.respawn,
                    respawn_delay=proc.respawn_delay,
                )
            )
            continue
        n = proc.nodes[0]
        actions.append(
            Node(
                package="nano_vision_ros",
                executable=n.executable,
                name=n.name,
                namespace=n.namespace.strip("/") or None,
                parameters=[*n.params_files, n.parameters] if n.parameters else list(n.params_files),
                remappings=list(n.remappings.items()),
                respawn=n.respawn,
                respawn_delay=n.respawn_delay,
                output="screen",
                emulate_tty=True,
                additional_env=proc.env or None,
            )
        )
    return actions


def generate_launch_description():
    from ament_index_python.packages import get_package_share_directory

    default_site = os.path.join(get_package_share_directory("nano_vision_ros"), "config", "site.yaml")
    return LaunchDescription(
        [
            DeclareLaunchArgument("site_config", default_value=default_site, description="site file"),
            DeclareLaunchArgument(
                "start_services",
                default_value="true",
                description="start the local mosquitto and nginx-rtmp named in the site file",
            ),
            DeclareLaunchArgument(
                "check", default_value="true", description="run `nano-vision check` on the site first (false: skip it)"
            ),
            DeclareLaunchArgument(
                "board", default_value="", description='start only this board\'s part of a multi-board site ("" = all)'
            ),
            OpaqueFunction(function=_nodes),
        ]
    )
