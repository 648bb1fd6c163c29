#!/usr/bin/env python3
"""Cost of a site, per process and in total: CPU (cores), PSS and RSS (MB), beside the floor
(the model's own inference CPU per frame x fps), and each camera's detection rate.

    .venv/bin/python bench/site_cost.py                                # demo site, 1 camera
    .venv/bin/python bench/site_cost.py --cameras 3 --processes per_camera
    .venv/bin/python bench/site_cost.py --cameras 3 --processes per_camera --max-rate 4   # detection target 4 Hz
    .venv/bin/python bench/site_cost.py --site config/site.yaml       # a site file as it is

It writes a site file like the demo's (config/site.yaml + config/site_params.yaml, with free
ports and a temporary var/), runs it with ``nano-vision site`` for --warmup + --duration seconds
and measures every process of the site (nodes, their ffmpeg children, the local services, the
runner): CPU from /proc/PID/stat over the window, PSS/RSS from /proc/PID/smaps_rollup at the end.
Detections per camera are counted by a probe node (small messages only: it takes no frames).
Figures go to docs/performance/site_cost.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))
NANO_VISION = str(Path(sys.executable).parent / "nano-vision")
TICKS = os.sysconf("SC_CLK_TCK")
DEMO_NODES = ["camera", "detector", "events", "rtmp_streamer", "recorder"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- /proc ------------------------------------------------------------------------------------
def children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                out += [int(c) for c in Path(f"/proc/{pid}/task/{tid}/children").read_text().split()]
            except OSError:
                pass
    except OSError:
        pass
    return out


def tree(pid: int) -> list[int]:
    todo, seen = [pid], []
    while todo:
        p = todo.pop()
        seen.append(p)
        todo += children(p)
    return seen


def cpu_ticks(pid: int) -> int | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return int(fields[11]) + int(fields[12])  # utime + stime (fields 14, 15 of stat)


def mem_mb(pid: int) -> tuple[float, float]:
    """(PSS, RSS) in MB from smaps_rollup."""
    pss = rss = 0
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                pss = int(line.split()[1])
            elif line.startswith("Rss:"):
                rss = int(line.split()[1])
    except OSError:
        pass
    return pss / 1024, rss / 1024


def label(pid: int) -> tuple[str, str]:
    """(label, group) from the command line: a node, a container of nodes, ffmpeg, a service."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return f"pid {pid}", "other"
    args = [a.decode(errors="replace") for a in argv if a]
    if not args:
        return f"pid {pid}", "other"
    exe = Path(args[0]).name
    text = " ".join(args)
    if "nano_vision_ros.ros.container" in text or (len(args) > 1 and args[1:2] == ["container"]):
        names = []
        for a in args:
            if a.startswith("{"):
                try:
                    spec = json.loads(a)
                    names.append(f"{spec.get('namespace', '').strip('/')}/{spec['name']}".strip("/"))
                except (ValueError, KeyError):
                    pass
        return "container[" + " + ".join(names) + "]", "node"
    if exe.endswith("_node") or any(Path(a).name.endswith("_node") for a in args[:2]):
        node = next(Path(a).name for a in args[:2] if Path(a).name.endswith("_node"))
        ns = next((a.split(":=", 1)[1].strip("/") for a in args if a.startswith("__ns:=")), "")
        return (f"{ns}/{node}" if ns else node), "node"
    if exe == "ffmpeg":
        role = (
            "recorder encoder"
            if "h264" in args and "pipe:1" in args
            else "clip writer, stream copy"
            if "copy" in args
            else "streamer encoder"
            if "flv" in args
            else ""
        )
        return (f"ffmpeg ({role})" if role else "ffmpeg"), "node"
    if "mosquitto" in text or "nginx" in text:
        return ("nginx" if "nginx" in text else "mosquitto"), "service"
    if "receive" in args:
        return "clip_receiver", "service"
    if "site" in args:
        return "nano-vision site (runner)", "runner"
    return exe, "other"


@dataclass
class Row:
    pid: int
    parent: str
    label: str
    group: str
    cores: float
    pss: float
    rss: float


# -- the site --------------------------------------------------------------------------------
def write_site(
    tmp: Path,
    cameras: int,
    nodes: list[str],
    fps: float,
    width: int,
    height: int,
    processes: str,
    source: str,
    max_rate: float = 0.0,
) -> Path:
    site = yaml.safe_load((REPO / "config" / "site.yaml").read_text())
    params = {
        k: v["ros__parameters"] for k, v in yaml.safe_load((REPO / "config" / "site_params.yaml").read_text()).items()
    }
    var = tmp / "var"
    mqtt_port, rtmp_port, recv_port = free_port(), free_port(), free_port()
    site["params_file"] = str(tmp / "site_params.yaml")
    from nano_vision_ros.site.config import resolve_relative

    for key in ("fastdds_profile", "fastdds_small_profile"):
        if isinstance(site.get(key), str) and site[key]:
            site[key] = str(resolve_relative(site[key], REPO / "config" / "site.yaml"))
    site["services"]["mosquitto"]["port"] = mqtt_port
    site["services"]["nginx_rtmp"]["port"] = rtmp_port
    site["services"]["clip_receiver"].update(port=recv_port, dir=str(var / "received"), token_file=str(var / "token"))
    cams = [f"cam{i}" for i in range(cameras)]
    site["cameras"] = [
        {"name": c, "nodes": list(nodes), **({"processes": processes} if processes else {})} for c in cams
    ]
    if processes:
        site["site_processes"] = "per_node" if processes == "per_node" else "one"
    params["/**/camera_node"].update(source=source, loop=True)
    params["/**/camera_node"]["fps"] = fps
    if width and height:
        params["/**/camera_node"].update(resize_width=width, resize_height=height)
    if max_rate:
        params["/**/detector_node"].setdefault("motion", {})["max_rate"] = max_rate
    params["/**/events_node"]["snapshot_dir"] = str(var / "snapshots")
    # url, broker and receiver host/port/token_file: derived from `services:` (site.graph.derived_parameters)
    stream = params.pop("/cam0/rtmp_streamer_node")
    for c in cams:
        params[f"/{c}/rtmp_streamer_node"] = {**stream, "fps": fps}
    params["/**/recorder_node"]["output_dir"] = str(var / "clips")
    params["mqtt_bridge_node"].update(
        outbox_path=str(var / "outbox.sqlite"), events_topics=[f"/{c}/events" for c in cams]
    )
    params.setdefault("metrics_node", {})["port"] = free_port()  # the demo's 9469 may be taken
    params["uploader_node"].update(queue_db=str(var / "queue.sqlite"))
    (tmp / "site_params.yaml").write_text(yaml.safe_dump({k: {"ros__parameters": v} for k, v in params.items()}))
    path = tmp / "site.yaml"
    path.write_text(yaml.safe_dump(site, sort_keys=False))
    return path


class DetectionCounter:
    """A probe node counting Detection2DArray messages per camera (no frames), and the model runs
    the detectors report in /diagnostics (with motion gating a gated frame still gets a message,
    but no inference)."""

    def __init__(self, cams: list[str]) -> None:
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.executors import SingleThreadedExecutor
        from vision_msgs.msg import Detection2DArray

        from nano_vision_ros.ros import qos

        if not rclpy.ok():
            rclpy.init(args=[])
        self.node = rclpy.create_node("site_cost_probe")
        self.counts = {c: 0 for c in cams}
        self.runs: dict[str, int] = {}  # detector status name -> model_runs
        self.lock = threading.Lock()
        for c in cams:
            self.node.create_subscription(
                Detection2DArray, f"/{c}/detections", lambda _m, c=c: self._hit(c), qos.RELIABLE
            )
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._diag, 50)
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()

    def _hit(self, cam: str) -> None:
        with self.lock:
            self.counts[cam] += 1

    def _diag(self, msg: object) -> None:  # diagnostic_msgs/DiagnosticArray
        for st in msg.status:  # type: ignore[attr-defined]
            if "detector" not in st.name:
                continue
            for kv in st.values:
                if kv.key == "model_runs":
                    with self.lock:
                        self.runs[st.name] = int(float(kv.value))

    def snapshot(self) -> dict[str, int]:
        with self.lock:
            return dict(self.counts)

    def model_runs(self) -> int | None:
        with self.lock:
            return sum(self.runs.values()) if self.runs else None

    def runs_by_detector(self) -> dict[str, int]:
        with self.lock:
            return dict(self.runs)

    def close(self) -> None:
        self.executor.shutdown(timeout_sec=2)
        self.node.destroy_node()


def inference_floor(task: str, frames: int, image_path: Path) -> float:
    """CPU seconds (all threads of this process) per raw model inference, as the detector runs it."""
    import cv2

    from nano_vision_ros.core.detection.profiles import build_detector, load_profile

    det = build_detector(load_profile(task))
    img = cv2.imread(str(image_path)) if image_path.suffix in (".jpg", ".png") else None
    if img is None:
        cap = cv2.VideoCapture(str(image_path))
        _ok, img = cap.read()
        cap.release()
    det.warmup(5)
    tensor, _ = det.preprocessor(img)
    feeds = {det._input_name: tensor.copy(), **det._extra}
    t0 = time.process_time()
    for _ in range(frames):
        det.backend.infer(feeds)
    per = (time.process_time() - t0) / frames
    det.close()
    return per


def measure(
    runner_pid: int, duration: float, counter: DetectionCounter | None
) -> tuple[list[Row], dict[str, int], float, float | None, dict[str, float]]:
    pids = tree(runner_pid)
    t_start = {p: cpu_ticks(p) for p in pids}
    c0 = counter.snapshot() if counter else {}
    r0 = counter.model_runs() if counter else None
    by0 = counter.runs_by_detector() if counter else {}
    w0 = time.monotonic()
    time.sleep(duration)
    wall = time.monotonic() - w0
    c1 = counter.snapshot() if counter else {}
    r1 = counter.model_runs() if counter else None
    by1 = counter.runs_by_detector() if counter else {}
    runs_per_detector = {k: (v - by0[k]) / wall for k, v in sorted(by1.items()) if k in by0}
    run_rate = (r1 - r0) / wall if r0 is not None and r1 is not None else None
    if run_rate is None:
        print("WARNING: no model_runs in the detectors' diagnostics: inference counted from detections/s", flush=True)
    rows = []
    for p in tree(runner_pid):
        t0, t1 = t_start.get(p), cpu_ticks(p)
        if t1 is None:
            continue
        cores = (t1 - (t0 if t0 is not None else 0)) / TICKS / wall
        pss, rss = mem_mb(p)
        lab, group = label(p)
        parent = ""
        try:
            ppid = int(Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()[1])
            parent = label(ppid)[0] if group == "node" and lab.startswith("ffmpeg") else ""
        except (OSError, ValueError):
            pass
        rows.append(Row(p, parent, lab, group, cores, pss, rss))
    rates = {c: (c1.get(c, 0) - c0.get(c, 0)) / wall for c in c1}
    return rows, rates, wall, run_rate, runs_per_detector


def still_source(tmp: Path, video: Path, fps: float) -> Path:
    """A static scene: the first frame of `video` as a 10 s video of that one picture (looped by the camera)."""
    png, out = tmp / "still.png", tmp / "still.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(video), "-frames:v", "1", str(png)], check=True)
    subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-y",
            "-loop",
            "1",
            "-framerate",
            f"{fps:g}",
            "-i",
            str(png),
            "-t",
            "10",
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-pix_fmt",
            "yuv420p",
            str(out),
        ],
        check=True,
    )
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--site", help="run this site file as it is (no generated site; no detection counts unless cams named)"
    )
    ap.add_argument("--cameras", type=int, default=1)
    ap.add_argument("--nodes", default=",".join(DEMO_NODES), help="node kinds per camera (comma separated)")
    ap.add_argument("--fps", type=float, default=10.0)
    ap.add_argument("--width", type=int, default=0, help="camera resize (0: the source's own size, 768x576)")
    ap.add_argument("--height", type=int, default=0)
    ap.add_argument(
        "--processes",
        default="",
        choices=["", "per_node", "per_camera", "one"],
        help="packing of each camera's nodes (default: the site file's)",
    )
    ap.add_argument("--source", default="samples/vtest.mp4")
    ap.add_argument("--static", action="store_true", help="a static scene: the source's first frame, looped")
    ap.add_argument(
        "--compare",
        type=int,
        default=0,
        metavar="ROUNDS",
        help="side by side, ROUNDS times each: demo 1 camera, static scene 1 camera, 3 cameras",
    )
    ap.add_argument(
        "--max-rate",
        type=float,
        default=0.0,
        help="the detectors' motion.max_rate (Hz): each camera's detection target (0: every frame)",
    )
    ap.add_argument(
        "--three-camera-rate",
        type=float,
        default=4.0,
        help="--compare: also the 3-camera row with this detection target per camera (0: leave it out)",
    )
    ap.add_argument("--warmup", type=float, default=20.0)
    ap.add_argument("--duration", type=float, default=30.0)
    ap.add_argument("--task", default="coco_objects")
    ap.add_argument("--json", help="also write the figures here")
    ap.add_argument("--env", action="append", default=[], help="KEY=VALUE for the site's processes")
    return ap.parse_args(argv)


def run_row(a: argparse.Namespace, floor_s: float, quiet: bool = False) -> dict:
    """Start the site, measure one window, stop it; the figures as a dict (and the table printed)."""
    from nano_vision_ros.core import paths

    tmp = Path(tempfile.mkdtemp(prefix="site-cost-"))
    source = str(still_source(tmp, paths.resolve(a.source), a.fps)) if a.static else a.source
    if a.site:
        site_path = Path(a.site).resolve()
        cams = [c["name"] for c in (yaml.safe_load(site_path.read_text()).get("cameras") or [])]
    else:
        site_path = write_site(
            tmp, a.cameras, a.nodes.split(","), a.fps, a.width, a.height, a.processes, source, a.max_rate
        )
        cams = [f"cam{i}" for i in range(a.cameras)]
    env = {**os.environ, **dict(kv.split("=", 1) for kv in a.env)}
    log = open(tmp / "site.log", "w+")  # noqa: SIM115 - the site's output, read at the end
    proc = subprocess.Popen(
        [NANO_VISION, "site", str(site_path), "--workdir", str(tmp / "work")],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        cwd=tmp,
        env=env,
    )
    counter = None
    load0 = os.getloadavg()[0]
    try:
        counter = DetectionCounter(cams)
        end = time.monotonic() + a.warmup
        while time.monotonic() < end and proc.poll() is None:
            time.sleep(0.5)
        if "detector" in a.nodes:  # a loaded machine starts slowly: the window opens once a detector reports
            end = time.monotonic() + 30.0
            while counter.model_runs() is None and time.monotonic() < end and proc.poll() is None:
                time.sleep(0.5)
        if proc.poll() is not None:
            log.seek(0)
            print(log.read()[-4000:])
            raise RuntimeError("the site stopped during warm-up")
        rows, rates, wall, run_rate, runs_per_detector = measure(proc.pid, a.duration, counter)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        if counter:
            counter.close()
    load1 = os.getloadavg()[0]
    log.seek(0)
    text = log.read()
    if "Traceback" in text:
        print("WARNING: a Traceback in the site log:\n" + text[-3000:])

    nodes = [r for r in rows if r.group == "node"]
    floor = floor_s * a.fps * len(cams)
    total_cpu = sum(r.cores for r in nodes)
    runs = run_rate if run_rate is not None else sum(rates.values())
    done = floor_s * runs  # the inference the detectors actually ran in the window
    out = {
        "rows": [r.__dict__ for r in rows],
        "rates": rates,
        "model_runs_per_s": runs,
        "model_runs_per_detector": runs_per_detector,
        "max_rate": a.max_rate,
        "floor_cores": floor,
        "floor_at_rate_cores": done,
        "floor_ms": floor_s * 1e3,
        "nodes_cpu": total_cpu,
        "outside_inference": total_cpu - done,
        "outside_per_camera": (total_cpu - done) / len(cams),
        "nodes_pss": sum(r.pss for r in nodes),
        "load": (load0, load1),
        "cameras": len(cams),
        "static": a.static,
    }
    if quiet:
        return out
    print(
        f"\nmachine: {platform.node()} {platform.machine()} {os.cpu_count()} cores, load {load0:.2f} -> {load1:.2f}; "
        f"window {wall:.1f}s after {a.warmup:.0f}s warm-up"
    )
    print(
        f"site: {len(cams)} camera(s) x [{a.nodes}] at {a.fps:g} fps, processes={a.processes or 'site file'}"
        f"{', static scene' if a.static else ''}\n"
    )
    print("| process | CPU (cores) | PSS MB | RSS MB |")
    print("|---|---:|---:|---:|")
    for r in sorted(rows, key=lambda r: (r.group != "node", -r.cores)):
        name = (
            r.label + (f" (child of {r.parent})" if r.parent else "") + ("" if r.group == "node" else f" [{r.group}]")
        )
        print(f"| {name} | {r.cores:.3f} | {r.pss:.0f} | {r.rss:.0f} |")
    print(
        f"| **nodes total** | **{total_cpu:.2f}** | **{sum(r.pss for r in nodes):.0f}** | {sum(r.rss for r in nodes):.0f} |"
    )
    print(
        f"| all processes (+ services, runner) | {sum(r.cores for r in rows):.2f} | {sum(r.pss for r in rows):.0f} | "
        f"{sum(r.rss for r in rows):.0f} |"
    )
    print(
        f"\nfloor: model inference {floor_s * 1e3:.1f} ms CPU per frame (alone, before the site ran) x {a.fps:g} fps x "
        f"{len(cams)} camera(s) = {floor:.2f} cores; at the {runs:.2f} model runs/s measured: {done:.2f} cores; everything "
        f"else {total_cpu - done:.2f} cores ({(total_cpu - done) / len(cams):.2f} per camera)"
    )
    for c in cams:
        r = rates.get(c, 0.0)
        print(f"detections {c}: {r:.2f} /s (input {a.fps:g} fps){'  BELOW INPUT RATE' if r < a.fps * 0.95 else ''}")
    for name, r in runs_per_detector.items():  # a camera's own detection rate: its detector's model runs
        target = a.max_rate or a.fps
        low = "  BELOW TARGET" if r < target * 0.95 and not a.static else ""
        print(f"model runs {name}: {r:.2f} /s (target {target:g}: {'motion.max_rate' if a.max_rate else 'fps'}){low}")
    return out


def per_det(res: dict) -> str:
    """Model runs/s of each detector (a camera's detection rate), '/' separated."""
    return " / ".join(f"{v:.2f}" for v in res["model_runs_per_detector"].values()) or "-"


def compare(a: argparse.Namespace, floor_s: float) -> list[tuple[str, dict]]:
    """The three rows of issue 9 side by side, interleaved (demo, static, 3 cameras, demo, …)."""
    rows = [
        ("demo, 1 camera", {}),
        ("static scene, 1 camera", {"static": True}),
        ("3 cameras", {"cameras": 3}),
        *(
            [
                (
                    f"3 cameras, detection target {a.three_camera_rate:g} Hz",
                    {"cameras": 3, "max_rate": a.three_camera_rate},
                )
            ]
            if a.three_camera_rate
            else []
        ),
    ]
    results: list[tuple[str, dict]] = []
    for rnd in range(a.compare):
        for name, change in rows:
            row = argparse.Namespace(**{**vars(a), **change})
            res = run_row(row, floor_s, quiet=True)
            results.append((name, res))
            print(
                f"round {rnd + 1}: {name}: nodes {res['nodes_cpu']:.2f} cores, outside inference "
                f"{res['outside_per_camera']:.2f}/camera, PSS {res['nodes_pss']:.0f} MB, model runs "
                f"{res['model_runs_per_s']:.2f}/s ({per_det(res)}), detections/s {' / '.join(f'{v:.2f}' for v in res['rates'].values())}, "
                f"load {res['load'][0]:.1f}->{res['load'][1]:.1f}",
                flush=True,
            )
    print(
        f"\n| row | nodes CPU (cores) | CPU outside inference per camera | nodes PSS MB | model runs/s | "
        f"model runs/s per camera | "
        f"detections/s per camera (input {a.fps:g}) | load avg |"
    )
    print("|---|---:|---:|---:|---:|---|---|---|")
    for name, _ in rows:
        rs = [r for n, r in results if n == name]

        def rng(key: str, fmt: str = ".2f", rs: list[dict] = rs) -> str:
            vals = [r[key] for r in rs]
            return f"{min(vals):{fmt}}–{max(vals):{fmt}}" if len(vals) > 1 else f"{vals[0]:{fmt}}"

        det = " ; ".join(" / ".join(f"{v:.2f}" for v in r["rates"].values()) for r in rs)
        loads = ", ".join(f"{r['load'][0]:.1f}–{r['load'][1]:.1f}" for r in rs)
        print(
            f"| {name} | {rng('nodes_cpu')} | {rng('outside_per_camera')} | {rng('nodes_pss', '.0f')} | "
            f"{rng('model_runs_per_s')} | {' ; '.join(per_det(r) for r in rs)} | {det} | {loads} |"
        )
    return results


def main() -> int:
    try:
        return _main()
    finally:
        try:
            import rclpy

            rclpy.try_shutdown()  # the probe's context, once for all rows
        except ImportError:
            pass


def _main() -> int:
    a = parse_args()
    # a DDS domain of its own: another site on this machine (a soak, a test) must not feed or count here
    os.environ.setdefault("ROS_DOMAIN_ID", str(101 + os.getpid() % 120))
    from nano_vision_ros.core import paths

    floor_s = inference_floor(a.task, 30, paths.resolve(a.source))
    if a.compare:
        results = compare(a, floor_s)
        if a.json:
            Path(a.json).write_text(json.dumps([{"row": n, **r} for n, r in results], indent=1))
        return 0
    try:
        out = run_row(a, floor_s)
    except RuntimeError as err:
        print(err)
        return 1
    if a.json:
        Path(a.json).write_text(json.dumps({**out, "args": vars(a)}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
