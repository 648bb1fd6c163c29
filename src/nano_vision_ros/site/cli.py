"""``nano-vision site [CONFIG]``: run a site's node graph on a machine without launch_ros."""

from __future__ import annotations

import argparse
import shlex
import signal
import sys
import tempfile
from pathlib import Path

from nano_vision_ros.core.errors import ConfigError
from nano_vision_ros.site.check import check_in_child
from nano_vision_ros.site.config import load_site
from nano_vision_ros.site.graph import build_graph
from nano_vision_ros.site.runner import SiteRunner, StartupError

_NOT_PASSED = "the site does not pass `nano-vision check`, nothing started:\n"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", nargs="?", default="config/site.yaml", help="site file (default: config/site.yaml)")
    p.add_argument(
        "--board", default=None, help="start only this board's part of a multi-board site (its `boards:` entry)"
    )
    p.add_argument("--dry-run", action="store_true", help="print the node commands and environment, start nothing")
    p.add_argument("--no-services", action="store_true", help="do not start the local mosquitto / nginx-rtmp")
    p.add_argument("--no-check", action="store_true", help="start without `nano-vision check` first")
    p.add_argument("--duration", type=float, default=None, help="stop after this many seconds (demos, smoke tests)")
    p.add_argument("--workdir", default=None, help="folder for service configs and logs (default: a temp folder)")


def run(args: argparse.Namespace) -> int:
    try:
        site, path = load_site(args.config)
        graph = build_graph(site, path, args.board)
    except ConfigError as err:
        # the site file itself is wrong: name every problem of the site, not only the first
        code, report = (0, "") if args.no_check else check_in_child(args.config, args.board, ports=False)
        print(f"nano-vision site: {_NOT_PASSED}{report}" if code else f"nano-vision site: {err}", file=sys.stderr)
        return 2
    if not args.dry_run and not args.no_check:
        code, report = check_in_child(path, args.board, services=not args.no_services)
        if code != 0:
            print(f"nano-vision site: {_NOT_PASSED}{report}", file=sys.stderr)
            return 1
        print(f"[site] {report}", flush=True)
    if args.dry_run:
        for k, v in sorted(graph.env.items()):
            print(f"export {k}={v}")
        for proc in graph.processes:
            prefix = "".join(f"{k}={v} " for k, v in sorted(proc.env.items()))
            print(prefix + shlex.join(proc.command()))
        return 0
    runner = SiteRunner(graph, start_services=not args.no_services)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: runner.request_stop())
    tmp = None
    workdir = Path(args.workdir) if args.workdir else Path(tmp := tempfile.mkdtemp(prefix="nano-vision-site-"))
    try:
        runner.start(workdir)
    except StartupError as err:
        print(f"nano-vision site: start-up failed: {err}", file=sys.stderr)
        return 1
    except (OSError, RuntimeError, ImportError, ConfigError) as err:
        hint = ""
        if "already in use" in str(err):
            hint = (
                "\n  another server holds that port: change its port under `services:` in the site file (and the "
                "nodes' matching parameters in the params file), or set `enabled: false` to use the running one"
            )
        print(f"nano-vision site: start-up failed: {err}{hint}", file=sys.stderr)
        return 1
    print(
        f"[site] {len(graph.nodes)} node(s) in {len(runner.procs)} process(es) running; Ctrl-C stops them", flush=True
    )
    try:
        code = runner.supervise(duration=args.duration)
    except StartupError as err:
        print(f"nano-vision site: start-up failed: {err}", file=sys.stderr)
        code = 1
    finally:
        runner.stop()
        print("[site] stopped", flush=True)
    if tmp:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return code
