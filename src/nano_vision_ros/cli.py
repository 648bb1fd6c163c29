"""``nano-vision``: the project's command line. Each sub-command lives in its own module,
imported only when used, so a missing optional dependency of one never breaks the others."""

from __future__ import annotations

import argparse
import importlib
import sys

#: sub-command -> (module, one-line help). Each module defines ``add_arguments(parser)`` and ``run(args) -> int``.
COMMANDS: dict[str, tuple[str, str]] = {
    "site": ("nano_vision_ros.site.cli", "run a site's node graph (cameras and the nodes attached to each)"),
    "check": (
        "nano_vision_ros.site.check",
        "validate a whole site (files, parameters, models, rules, ports) before it starts",
    ),
    "receive": ("nano_vision_ros.core.upload.receiver_cli", "receive uploaded clips (the uploader's server side)"),
    "faces": ("nano_vision_ros.core.recognition.faces_cli", "enroll, list, delete, export and import known faces"),
    "attributes": (
        "nano_vision_ros.core.attributes.cli",
        "collect crops of people, train and evaluate attribute classifiers (PPE)",
    ),
    "env": ("nano_vision_ros.site.env_cli", "print the environment variables the project's runners apply"),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="nano-vision", description=__doc__)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text)
        p.set_defaults(_module=module)
        if argv[:1] == [name]:
            # Only the chosen command's module is imported (its options are added here).
            try:
                importlib.import_module(module).add_arguments(p)
            except ImportError as err:
                print(f"nano-vision {name}: unavailable: {err}", file=sys.stderr)
                return 1
    args = parser.parse_args(argv)
    return int(importlib.import_module(args._module).run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
