"""``nano-vision env``: the environment the runners apply, for starting nodes by hand (`eval $(nano-vision env)`)."""

from __future__ import annotations

import argparse
import sys

from nano_vision_ros.core.errors import ConfigError
from nano_vision_ros.site.config import load_site
from nano_vision_ros.site.graph import environment


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", nargs="?", default="config/site.yaml")


def run(args: argparse.Namespace) -> int:
    try:
        site, path = load_site(args.config)
        env = environment(site, path)
    except ConfigError as err:
        print(f"nano-vision env: {err}", file=sys.stderr)
        return 2
    for k, v in sorted(env.items()):
        print(f"export {k}={v}")
    return 0
