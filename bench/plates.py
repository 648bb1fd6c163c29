"""Hard plate benchmark: this project side by side with hyperlpr2 2.0.0 and agentclpr 1.1.0.

    bench/platebench_venv.sh                 # once: the peers' own venv (.venv-platebench)
    .venv/bin/python bench/plates.py [--stills 240 --empty 100 --passes 12 --clean 24]
                                     [--refs REF,...] [--systems ours,ours_vehicles,hyperlpr2,agentclpr]

Renders SYNTHETIC gate-camera frames (bench/plate_scenes.py: 1280x720, plates 70-140 px wide, yaw
+-25 deg, night gain, motion blur, dirt, JPEG 30-60; 25 % double-row yellow plates; special plates;
frames without plates; passes where a plate approaches from 70 to 250 px) into a temp dir, runs each
system in its own process pinned to one core (bench/plate_systems.py) over the same files and
prints a markdown table: whole-plate exact per kind, found (some reading on the plate), wrong (a
reading on the plate with the wrong text), false plates per 1,000 frames without plates, pass
exact (the system's own vote for ours; a majority of the frame readings for the peers), ms per
frame. ``--refs REF1,REF2`` runs this project at those git refs (src/ and models/ extracted with
git archive) instead of the working tree, e.g. before and after a change, in one run.
Systems: ``ours`` / ``ours_vehicles`` (the tree's defaults, whole frame / the scene's vehicle box),
``ours*_ppocr`` (PP-OCRv4 alone, no second reader), ``ours*_crnn`` (the plate-trained CTC reader
alone; ``PLATE_READER_MODEL`` picks another file), ``hyperlpr2``, ``agentclpr``.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import plate_scenes as ps

PEERS = ("hyperlpr2", "agentclpr")


def norm(text: str) -> str:
    out = []
    for ch in text:
        if 0xFF01 <= ord(ch) <= 0xFF5E:
            ch = chr(ord(ch) - 0xFEE0)
        if ch.isspace() or ch in "·.-_:•":
            continue
        out.append(ch.upper())
    return "".join(out)


def on_plate(box: list[float], quad: list[list[float]]) -> bool:
    q = np.array(quad)
    x1, y1 = q.min(0)
    x2, y2 = q.max(0)
    mx, my = (x2 - x1) * 0.25, (y2 - y1) * 0.25
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    return x1 - mx <= cx <= x2 + mx and y1 - my <= cy <= y2 + my


def render(args: argparse.Namespace, tmp: Path) -> list[dict]:
    frames: list[tuple[str, ps.Frame]] = []
    frames += [("still", f) for f in ps.stills(args.stills, seed=args.seed)]
    frames += [("clean", f) for f in clean_stills(args.clean, seed=args.seed + 7)]
    frames += [("empty", f) for f in ps.empty_frames(args.empty, seed=args.seed + 1)]
    frames += [("pass", f) for f in ps.passes(args.passes, frames=args.pass_frames, seed=args.seed + 2)]
    out = []
    for i, (split, f) in enumerate(frames):
        path = tmp / f"{i:05d}.jpg"
        path.write_bytes(f.jpeg)
        out.append(
            {
                "file": str(path),
                "split": split,
                "text": f.text,
                "kind": f.kind,
                "quad": None if f.quad is None else f.quad.tolist(),
                "vehicle": None if f.vehicle is None else f.vehicle.tolist(),
                "group": f.group,
            }
        )
    return out


def clean_stills(n: int, seed: int) -> list[ps.Frame]:
    """Frontal, sharp, daylight, JPEG 90, plates 110-160 px: the 'clean scene' check."""
    import random

    rng = random.Random(seed)
    out = []
    for i in range(n):
        plate = ps.random_plate(rng, ps.kind_for(i))
        cond = ps.Conditions(False, 0, 0, False, 90, 0.0, 0.0, 0.0)
        jpg, quad, vbox = ps.compose(
            ps.background(rng), plate, rng.uniform(110, 160), rng.uniform(300, 980), rng.uniform(300, 560), cond, rng
        )
        out.append(ps.Frame(jpg, plate.text, plate.kind, quad, vbox))
    return out


def run_system(system: str, run: int, frames: list[dict], tmp: Path, src: Path, peer_python: str) -> dict:
    manifest = tmp / f"manifest_{run}.json"
    manifest.write_text(json.dumps({"frames": frames}))
    out = tmp / f"out_{run}.json"
    py = peer_python if system in PEERS else sys.executable
    env = dict(os.environ, PYTHONPATH=str(src), OMP_NUM_THREADS="1")
    t0 = time.monotonic()
    subprocess.run([py, str(ROOT / "bench" / "plate_systems.py"), system, str(manifest), str(out)], env=env, check=True)
    res = json.loads(out.read_text())
    res["wall_s"] = time.monotonic() - t0
    return res


def score(frames: list[dict], res: dict) -> dict:
    kinds = collections.defaultdict(lambda: [0, 0])  # kind: [exact, n]
    found = wrong = n_plates = false = n_empty = clean_ok = n_clean = 0
    ms = []
    passes: dict[int, dict] = collections.defaultdict(lambda: {"text": "", "votes": collections.Counter(), "voted": ""})
    errors = 0
    for f, r in zip(frames, res["results"]):
        errors += bool(r["error"])
        reads = [x for x in r["readings"] if len(norm(x["text"])) >= 5]
        if f["split"] == "empty":
            n_empty += 1
            false += len(reads)
            ms.append(r["ms"])
            continue
        mine = [x for x in reads if on_plate(x["box"], f["quad"])]
        best = max(mine, key=lambda x: x["score"], default=None)
        exact = best is not None and norm(best["text"]) == f["text"]
        if f["split"] == "pass":
            p = passes[f["group"]]
            p["text"] = f["text"]
            if best is not None:
                p["votes"][norm(best["text"])] += 1
            if r["voted"]:
                p["voted"] = norm(r["voted"])
            continue
        ms.append(r["ms"])
        if f["split"] == "clean":
            n_clean += 1
            clean_ok += exact
            continue
        n_plates += 1
        kinds[f["kind"]][1] += 1
        kinds[f["kind"]][0] += exact
        found += best is not None
        wrong += best is not None and not exact
        false += len(reads) - len(mine)
    pass_ok = 0
    for p in passes.values():
        voted = p["voted"] or (p["votes"].most_common(1)[0][0] if p["votes"] else "")
        pass_ok += voted == p["text"]
    exact_all = sum(v[0] for v in kinds.values())
    return {
        "kinds": {k: v[0] / max(1, v[1]) for k, v in kinds.items()},
        "n_kinds": {k: v[1] for k, v in kinds.items()},
        "exact": exact_all / max(1, n_plates),
        "found": found / max(1, n_plates),
        "wrong": wrong / max(1, n_plates),
        "false_per_1000": 1000.0 * false / max(1, n_empty + n_plates),
        "false_empty": false,
        "clean": clean_ok / max(1, n_clean),
        "passes": pass_ok / max(1, len(passes)),
        "n_passes": len(passes),
        "ms_mean": float(np.mean(ms)) if ms else 0.0,
        "ms_p90": float(np.percentile(ms, 90)) if ms else 0.0,
        "errors": errors,
    }


def table(rows: list[tuple[str, dict]]) -> str:
    pct = lambda v: f"{100 * v:.1f} %"
    head = (
        "| system | exact | blue | yellow | yellow 2-row | green | special | found | wrong | false / 1,000 frames "
        "| pass exact | clean | ms / frame (mean, p90) |"
    )
    lines = [head, "|" + " --- |" * 13]
    for name, s in rows:
        k = s["kinds"]
        lines.append(
            f"| {name} | {pct(s['exact'])} | "
            + " | ".join(pct(k.get(x, 0)) for x in ps.KINDS)
            + f" | {pct(s['found'])} | {pct(s['wrong'])} | {s['false_per_1000']:.1f} | {pct(s['passes'])} "
            f"| {pct(s['clean'])} | {s['ms_mean']:.0f}, {s['ms_p90']:.0f} |"
        )
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stills", type=int, default=240)
    ap.add_argument("--empty", type=int, default=100)
    ap.add_argument("--passes", type=int, default=12)
    ap.add_argument("--pass-frames", type=int, default=10)
    ap.add_argument("--clean", type=int, default=24)
    ap.add_argument("--seed", type=int, default=101)
    ap.add_argument("--systems", default="ours,ours_vehicles,hyperlpr2,agentclpr")
    ap.add_argument(
        "--refs",
        default="",
        help="git refs, comma-separated: run this project's src/ and models/ at "
        "each ref (git archive) instead of the working tree, side by side",
    )
    ap.add_argument("--peer-python", default=str(ROOT / ".venv-platebench" / "bin" / "python"))
    ap.add_argument("--json", default="", help="write the scores here too")
    args = ap.parse_args()
    systems = [s for s in args.systems.split(",") if s]
    if any(s in PEERS for s in systems) and not Path(args.peer_python).exists():
        sys.exit(f"{args.peer_python} missing: run bench/platebench_venv.sh first (or --systems ours,ours_vehicles)")
    with tempfile.TemporaryDirectory(prefix="platebench-") as td:
        tmp = Path(td)
        t0 = time.monotonic()
        frames = render(args, tmp)
        print(f"rendered {len(frames)} frames in {time.monotonic() - t0:.0f} s", file=sys.stderr)
        runs: list[tuple[str, str, Path]] = []
        for k, ref in enumerate(r for r in args.refs.split(",") if r):
            bsrc = tmp / f"ref{k}"
            bsrc.mkdir()
            arch = subprocess.run(
                ["git", "-C", str(ROOT), "archive", ref, "src", "models"], check=True, capture_output=True
            ).stdout
            subprocess.run(["tar", "-x", "-C", str(bsrc)], input=arch, check=True)
            runs += [(f"{s}@{ref}", s, bsrc / "src") for s in systems if s.startswith("ours")]
        runs += [(s, s, ROOT / "src") for s in systems if not (args.refs and s.startswith("ours"))]
        rows = []
        for k, (label, system, src) in enumerate(runs):
            res = run_system(system, k, frames, tmp, src, args.peer_python)
            s = score(frames, res)
            rows.append((label, s))
            print(f"{label}: {json.dumps(s)} ({res['wall_s']:.0f} s)", file=sys.stderr)
    n = {k: v for k, v in rows[0][1]["n_kinds"].items()} if rows else {}
    print(
        f"\n{args.stills} stills ({', '.join(f'{k} {v}' for k, v in n.items())}), {args.empty} frames without "
        f"plates, {args.passes} passes x {args.pass_frames} frames, {args.clean} clean stills; seed {args.seed}\n"
    )
    print(table(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(dict(rows), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
