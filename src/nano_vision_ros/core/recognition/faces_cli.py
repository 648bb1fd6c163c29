"""``nano-vision faces``: manage the known-faces gallery from a shell.

    nano-vision faces enroll --name NAME IMAGE [IMAGE…]   # quality-gated, all or nothing
    nano-vision faces list [--json]
    nano-vision faces delete NAME                         # rows, vectors, thumbnail; VACUUM
    nano-vision faces export FILE.json                    # 0600, vectors + thumbnails
    nano-vision faces import FILE.json [--replace]

The gallery file and the detector/embedder settings come from the face node's parameters file
(``--config config/face.yaml``) unless ``--gallery`` / ``--detector`` / ``--embedder`` override them.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from nano_vision_ros.core import paths
from nano_vision_ros.core.config_yaml import flatten, unflatten
from nano_vision_ros.core.errors import ConfigError, ModelError, RuntimeMissingError

MAX_IMAGE_BYTES = 50_000_000  # largest enrollment image file the CLI reads

NODE = "face_node"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        default="config/face.yaml",
        help="face node parameters file to read gallery/detector/embedder from (default: %(default)s)",
    )
    parser.add_argument("--gallery", help="gallery SQLite file (overrides the config)")
    parser.add_argument("--detector", choices=["mtcnn", "centerface"], help="face detector (overrides the config)")
    parser.add_argument("--embedder", choices=["dlib", "onnx"], help="embedder kind (overrides the config)")
    parser.add_argument("--embedding-model", help="ONNX embedding model file (with --embedder onnx)")
    sub = parser.add_subparsers(dest="action", metavar="ACTION")
    sub.required = True
    p = sub.add_parser("enroll", help="add a person from one or more photos (exactly one face each)")
    p.add_argument("--name", required=True)
    p.add_argument("images", nargs="+")
    p = sub.add_parser("list", help="list enrolled identities")
    p.add_argument("--json", action="store_true")
    p = sub.add_parser("delete", help="delete an identity and all of its data")
    p.add_argument("name")
    p = sub.add_parser("export", help="write the gallery to a JSON file (mode 0600)")
    p.add_argument("file")
    p = sub.add_parser("import", help="load a JSON export")
    p.add_argument("file")
    p.add_argument("--replace", action="store_true", help="replace identities of the same name")


def load_faces_config(args: argparse.Namespace) -> Any:
    """FacesConfig from the node's params file plus command-line overrides."""
    from nano_vision_ros.core.recognition.faces import FacesConfig

    raw: dict[str, Any] = {}
    cfg_path = paths.resolve(args.config) if args.config else None
    if cfg_path is not None and cfg_path.is_file():
        doc = yaml.safe_load(cfg_path.read_text()) or {}
        node = (doc.get(NODE) or next(iter(doc.values()), None) or {}) if isinstance(doc, dict) else None
        params = node.get("ros__parameters", {}) if isinstance(node, dict) else None
        if not isinstance(params, dict):  # a clear error, not an AttributeError from deep inside
            raise ConfigError(f"{cfg_path}: not a ROS 2 parameters file ({NODE}: ros__parameters: {{...}})")
        raw = unflatten(flatten(params))
    elif args.config and args.config != "config/face.yaml":
        raise ConfigError(f"config file not found: {args.config}")
    faces = raw.get("faces", raw)
    if not isinstance(faces, dict):
        raise ConfigError(f"faces: expected a mapping of face settings, got {faces!r}"[:200])
    faces = {k: v for k, v in faces.items() if k in FacesConfig.model_fields}
    if args.gallery:
        faces["gallery"] = args.gallery
    if args.detector:
        faces.setdefault("detector", {})["kind"] = args.detector
    if args.embedder:
        faces.setdefault("embedding", {})["kind"] = args.embedder
    if args.embedding_model:
        faces.setdefault("embedding", {})["model"] = args.embedding_model
    try:
        return FacesConfig.model_validate(faces)
    except Exception as err:  # noqa: BLE001 - pydantic ValidationError -> one readable line
        raise ConfigError(f"invalid face settings: {err}") from None


def run(args: argparse.Namespace) -> int:
    from nano_vision_ros.core.recognition.faces import EnrollmentRefused, FaceRecognizer
    from nano_vision_ros.core.recognition.gallery import Gallery, dump_export

    try:
        cfg = load_faces_config(args)
        if args.action == "enroll":
            from nano_vision_ros.core.safe_files import read_image

            images = []
            for f in args.images:
                try:  # the operator's own paths: anywhere, but regular files only (a FIFO would hang the CLI)
                    img = read_image(f, None, MAX_IMAGE_BYTES, what="image")
                except ValueError as err:
                    print(f"refused: {f}: not a readable image: {err}", file=sys.stderr)
                    return 1
                images.append((f, img))
            rec = FaceRecognizer(cfg)
            try:
                res = rec.enroll(args.name, images)
            finally:
                rec.close()
            print(f"enrolled {res.name}: {res.added} new vector(s), {res.total} in total")
            return 0
        gallery = Gallery(paths.resolve(cfg.gallery))
        try:
            if args.action == "list":
                items = gallery.list()
                if args.json:
                    print(json.dumps([i.as_dict() for i in items]))
                else:
                    for i in items:
                        ts = datetime.fromtimestamp(i.updated, timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")
                        print(f"{i.name}\t{i.embeddings} vector(s)\tupdated {ts}")
                    print(f"{len(items)} identit{'y' if len(items) == 1 else 'ies'} in {gallery.path}")
                return 0
            if args.action == "delete":
                if not gallery.delete(args.name):
                    print(f"no identity named {args.name!r}", file=sys.stderr)
                    return 1
                print(f"deleted {args.name}")
                return 0
            if args.action == "export":
                dump_export(gallery.export(), args.file)
                print(f"exported {len(gallery.list())} identities to {args.file}")
                return 0
            if args.action == "import":
                data = json.loads(Path(args.file).read_text(encoding="utf-8"))
                n = gallery.import_(data, replace=args.replace)
                print(f"imported {n} identities into {gallery.path}")
                return 0
        finally:
            gallery.close()
    except EnrollmentRefused as err:
        print(f"refused: {err}", file=sys.stderr)
        return 1
    except (ConfigError, ModelError, RuntimeMissingError, OSError, ValueError) as err:
        print(f"nano-vision faces: {err}", file=sys.stderr)
        return 2
    return 2
