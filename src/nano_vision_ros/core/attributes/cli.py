"""``nano-vision attributes collect | train | eval``: attribute classifiers a site makes itself.

nano-vision attributes collect --video samples/vtest.mp4 --out crops/   # offline: the project's detector + tracker
nano-vision attributes collect --camera cam0 --minutes 10 --out crops/  # live site, over DDS
# sort crops/torso/*.jpg into data/vest/ and data/no_vest/ …
nano-vision attributes train data/ --name vest --region torso --out models/site/
nano-vision attributes eval models/site/vest.onnx heldout/
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _progress():
    try:
        from tqdm import tqdm
    except ImportError:  # the bar is a convenience: train without it
        return None
    return lambda **kw: tqdm(file=sys.stderr, dynamic_ncols=True, **kw)


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", metavar="ACTION")
    sub.required = True
    c = sub.add_parser(
        "collect", help="save person/head/torso crops of tracked people into a folder, with contact sheets"
    )
    c.add_argument("--camera", default="cam0", help="camera name (live: its namespace; offline: the file-name prefix)")
    c.add_argument("--video", default="", help="a video file: run the detector + tracker here instead of a live site")
    c.add_argument("--task", default="coco_objects", help="detector task for --video (a profile with a person class)")
    c.add_argument("--minutes", type=float, default=10.0, help="how long to collect (0 = the whole video)")
    c.add_argument("--out", default="crops", help="output folder (person/, head/, torso/ and contact sheets)")
    c.add_argument("--every", type=float, default=3.0, help="seconds between two crops of one track")
    c.add_argument("--regions", default="person,head,torso", help="comma list of regions to save")
    t = sub.add_parser(
        "train", help="train a classifier from class folders; writes NAME.onnx, its card and a confusion PNG"
    )
    t.add_argument("dir", help="folder with one sub-folder of crops per class")
    t.add_argument("--name", required=True, help="classifier name (rules refer to it), e.g. helmet")
    t.add_argument(
        "--region",
        default="torso",
        choices=["person", "head", "torso"],
        help="region of the person box the crops show (head: hard hats, torso: vests)",
    )
    t.add_argument("--out", default="", help="output folder (default: DIR/..)")
    t.add_argument("--backbone", default="models/attr_backbone_mobilenetv2.onnx")
    t.add_argument("--folds", type=int, default=5)
    t.add_argument("--version", default="", help="version string (default: the UTC time)")
    e = sub.add_parser("eval", help="accuracy and confusion matrix of a trained classifier on a held-out folder")
    e.add_argument("model", help="NAME.onnx from train")
    e.add_argument("dir", help="held-out folder with one sub-folder per class")


def run(args: argparse.Namespace) -> int:
    from nano_vision_ros.core.errors import NanoVisionError

    try:
        return {"collect": _collect, "train": _train, "eval": _eval}[args.action](args)
    except NanoVisionError as err:
        print(f"nano-vision attributes {args.action}: {err}", file=sys.stderr)
        return 2


def _collect(args: argparse.Namespace) -> int:
    from nano_vision_ros.core.attributes.collect import (
        CollectConfig,
        contact_sheet,
        image_files,
    )

    cfg = CollectConfig(regions=tuple(r.strip() for r in args.regions.split(",") if r.strip()), every=args.every)
    out = Path(args.out)
    if args.video:
        from nano_vision_ros.core.attributes.collect import collect_video

        col = collect_video(
            args.video, out, camera=args.camera, task=args.task, minutes=args.minutes, config=cfg, progress=_progress()
        )
    else:
        from nano_vision_ros.ros.attributes_live import collect_live

        col = collect_live(args.camera, out, args.minutes, cfg)
    sheets = []
    for r in cfg.regions:
        files = image_files(out / r)
        for k in range(0, len(files), 256):
            sheets.append(contact_sheet(files[k : k + 256], out / f"contact_{r}_{k // 256}.png"))
    print(
        f"{col.saved} tracks x regions saved ({col.skipped_similar} near-copies skipped) under {out}; "
        f"contact sheets: {', '.join(str(s) for s in sheets) or 'none'}"
    )
    print(
        "next: sort the crops of one region into class folders (e.g. data/vest/, data/no_vest/) and run "
        "`nano-vision attributes train data --name vest --region torso`"
    )
    return 0


def _train(args: argparse.Namespace) -> int:
    from nano_vision_ros.core.attributes.train import confusion_text, train

    out = Path(args.out) if args.out else Path(args.dir).resolve().parent
    res = train(
        args.dir,
        args.name,
        out,
        region=args.region,
        backbone=args.backbone,
        version=args.version,
        folds=args.folds,
        progress=_progress(),
    )
    cv = res.cv
    print(
        f"cross-validated ({cv.folds} folds by track, {cv.groups} tracks): accuracy {cv.accuracy:.1%}, "
        f"balanced {cv.balanced_accuracy:.1%}"
    )
    print(confusion_text(cv.confusion, res.info["classes"]))
    print(
        f"wrote {res.model} (classes {res.info['classes']}, version {res.info['version']}), {res.card}, {res.confusion_png}"
    )
    return 0


def _eval(args: argparse.Namespace) -> int:
    from nano_vision_ros.core.attributes.classifier import evaluate_folder
    from nano_vision_ros.core.attributes.train import confusion_text

    r = evaluate_folder(args.model, args.dir)
    print(
        f"{r['classifier']} {r['version']} on {r['crops']} crops of {args.dir}: accuracy {r['accuracy']:.1%}, "
        f"balanced {r['balanced_accuracy']:.1%}"
    )
    print(confusion_text(r["confusion"], r["classes"]))
    return 0
