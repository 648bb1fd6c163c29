#!/usr/bin/env python3
"""Soak: run the demo site for a set time and watch every process for growth.

    .venv/bin/python bench/soak.py --minutes 10 --out var/soak.json
    .venv/bin/python bench/soak.py --minutes 60 --site config/site.yaml --max-rss-mb-per-hour 20

Why: a leak of a few MB an hour, an fd per clip or a thread per reconnect does not show in any
functional test but kills an edge box after a week. This writes a site file like the demo's
(config/site.yaml + config/site_params.yaml with free ports and a temporary var/), runs it with the
real runner (``nano-vision site``), and every --interval seconds samples, per process of the
site tree (nodes, ffmpeg children, mosquitto, nginx, the clip receiver, the runner): RSS and PSS
(/proc/PID/smaps_rollup), open file descriptors and threads, plus the number of events an MQTT
subscriber has received and clips the receiver has stored. It prints a table and, per process, a
least-squares trend over the samples after --warmup-fraction of the run (RSS and PSS in MB/hour,
fds and threads per hour) for every process alive through that window, and exits 1 if any RSS trend
exceeds --max-rss-mb-per-hour, any fd/thread trend exceeds --max-fds-per-hour /
--max-threads-per-hour, or a long-lived process (a node container, a service) exited during the
run (exit 2: the site did not run).
Figures go to docs/performance/soak.md.
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
from pathlib import Path

import psutil
import yaml

REPO = Path(__file__).resolve().parent.parent
NANO_VISION = str(Path(sys.executable).parent / "nano-vision")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_site(tmp: Path, site_file: Path) -> tuple[Path, int, Path]:
    """The site file with free ports and a private var/; returns (site, mqtt port, received dir)."""
    site = yaml.safe_load(site_file.read_text())
    params_src = Path(site.get("params_file") or "site_params.yaml")
    if not params_src.is_absolute():
        params_src = site_file.parent / params_src
    params = {k: v["ros__parameters"] for k, v in yaml.safe_load(params_src.read_text()).items()}
    var = tmp / "var"
    mqtt_port, rtmp_port, recv_port = free_port(), free_port(), free_port()
    site["params_file"] = str(tmp / "site_params.yaml")
    for key in ("fastdds_profile", "fastdds_image_profile", "fastdds_small_profile"):
        if isinstance(site.get(key), str) and site[key] and not Path(site[key]).is_absolute():
            near = site_file.parent / site[key]
            site[key] = str(near if near.exists() else REPO / site[key])
    services = site.setdefault("services", {})
    services.setdefault("mosquitto", {})["port"] = mqtt_port
    services.setdefault("nginx_rtmp", {})["port"] = rtmp_port
    services.setdefault("clip_receiver", {}).update(
        port=recv_port, dir=str(var / "received"), token_file=str(var / "token")
    )
    if "/**/events_node" in params:
        params["/**/events_node"]["snapshot_dir"] = str(var / "snapshots")
    # ports and the token file live in the site file's services only; the nodes' client parameters
    # are derived from them (nano_vision_ros.site.graph), so they are not written here
    if "/**/recorder_node" in params:
        params["/**/recorder_node"]["output_dir"] = str(var / "clips")
    if "mqtt_bridge_node" in params:
        params["mqtt_bridge_node"]["outbox_path"] = str(var / "outbox.sqlite")
    if "uploader_node" in params:
        params["uploader_node"]["queue_db"] = str(var / "queue.sqlite")
    (tmp / "site_params.yaml").write_text(yaml.safe_dump({k: {"ros__parameters": v} for k, v in params.items()}))
    path = tmp / "site.yaml"
    path.write_text(yaml.safe_dump(site, sort_keys=False))
    return path, mqtt_port, var / "received"


def label(p: psutil.Process) -> str:
    """A stable name for a process of the site (its node, ffmpeg, a service, the runner)."""
    try:
        args = p.cmdline()
    except psutil.Error:
        return f"pid {p.pid}"
    text = " ".join(args)
    for a in args[:3]:
        if Path(a).name.endswith("_node"):
            ns = next((x.split(":=", 1)[1].strip("/") for x in args if x.startswith("__ns:=")), "")
            return f"{ns}/{Path(a).name}" if ns else Path(a).name
    if "nano_vision_ros.ros.container" in text or "container" in args[1:2]:
        return "container"
    if args and Path(args[0]).name == "ffmpeg":
        return "ffmpeg"
    if "nginx" in text:
        return "nginx"
    if "mosquitto" in text:
        return "mosquitto"
    if "receive" in args:
        return "clip_receiver"
    if "site" in args:
        return "runner"
    return Path(args[0]).name if args else f"pid {p.pid}"


def sample(root: psutil.Process) -> dict[str, dict[str, float]]:
    """{label#pid: {rss, pss (MB), fds, threads}} for the runner and all its descendants."""
    out: dict[str, dict[str, float]] = {}
    try:
        procs = [root] + root.children(recursive=True)
    except psutil.Error:
        return out
    for p in procs:
        try:
            with p.oneshot():
                full = p.memory_full_info()
                row = {
                    "rss": full.rss / 2**20,
                    "pss": getattr(full, "pss", 0) / 2**20,
                    "fds": float(p.num_fds()),
                    "threads": float(p.num_threads()),
                }
        except psutil.Error:
            continue
        out[f"{label(p)}#{p.pid}"] = row
    return out


def slope_per_hour(ts: list[float], ys: list[float]) -> float:
    """Least-squares slope of ys over ts (seconds), per hour."""
    n = len(ts)
    if n < 2:
        return 0.0
    mt, my = sum(ts) / n, sum(ys) / n
    den = sum((t - mt) ** 2 for t in ts)
    return 0.0 if den == 0 else 3600.0 * sum((t - mt) * (y - my) for t, y in zip(ts, ys)) / den


class Counter:
    """MQTT subscriber counting event messages of the site (any nano_vision/.../events topic)."""

    def __init__(self, port: int) -> None:
        import paho.mqtt.client as mqtt

        self.events = 0
        self.lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"soak-{os.getpid()}")
        self.client.on_message = self._on_message
        self.client.on_connect = lambda c, *_a: c.subscribe("nano_vision/#", qos=1)
        self.port = port
        self.started = False

    def _on_message(self, _c, _u, msg) -> None:
        if msg.topic.endswith("/events"):
            with self.lock:
                self.events += 1

    def try_start(self) -> bool:
        if self.started:
            return True
        try:
            self.client.connect("127.0.0.1", self.port)
        except OSError:
            return False
        self.client.loop_start()
        self.started = True
        return True

    def stop(self) -> None:
        if self.started:
            self.client.loop_stop()
            self.client.disconnect()


def trends(samples: list[dict], warmup_fraction: float) -> dict[str, dict[str, float]]:
    """Per process: slope per hour of rss, pss, fds, threads over samples after the warm-up."""
    if not samples:
        return {}
    t0, t_end = samples[0]["t"], samples[-1]["t"]
    cut = t0 + warmup_fraction * (t_end - t0)
    kept = [s for s in samples if s["t"] >= cut]
    # only processes that lived through the whole window: a clip's ffmpeg that runs for 20 s has no
    # trend worth the name (its start-up would read as gigabytes per hour)
    names = set(kept[0]["procs"]) & set(kept[-1]["procs"]) if kept else set()
    out: dict[str, dict[str, float]] = {}
    for n in sorted(names):
        rows = [(s["t"], s["procs"][n]) for s in kept if n in s["procs"]]
        if len(rows) < 3:
            continue
        ts = [t for t, _ in rows]
        out[n] = {k: slope_per_hour(ts, [r[k] for _, r in rows]) for k in ("rss", "pss", "fds", "threads")}
        out[n].update(
            first_rss=rows[0][1]["rss"],
            last_rss=rows[-1][1]["rss"],
            samples=len(rows),
            fds_min=min(r["fds"] for _, r in rows),
            fds_max=max(r["fds"] for _, r in rows),
            threads_min=min(r["threads"] for _, r in rows),
            threads_max=max(r["threads"] for _, r in rows),
        )
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=10.0, help="how long the site runs")
    ap.add_argument("--site", default=str(REPO / "config" / "site.yaml"), help="site file (ports/folders are replaced)")
    ap.add_argument("--out", default=None, help="write all samples and trends here (JSON)")
    ap.add_argument("--interval", type=float, default=5.0, help="seconds between samples")
    ap.add_argument("--warmup-fraction", type=float, default=0.5, help="part of the run left out of the trend")
    ap.add_argument(
        "--max-rss-mb-per-hour",
        type=float,
        default=60.0,
        help="bound on any RSS trend (PSS is reported, not bounded: it moves as short-lived "
        "children share and release pages)",
    )
    ap.add_argument("--max-fds-per-hour", type=float, default=20.0, help="bound on any fd-count trend")
    ap.add_argument("--max-threads-per-hour", type=float, default=20.0, help="bound on any thread-count trend")
    args = ap.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="soak-"))
    site, mqtt_port, received = write_site(tmp, Path(args.site).resolve())
    log = open(tmp / "site.log", "w+")  # noqa: SIM115 - the site's output, read at the end
    runner = subprocess.Popen(
        [NANO_VISION, "site", str(site), "--workdir", str(tmp / "work")],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        cwd=tmp,
    )
    root = psutil.Process(runner.pid)
    counter = Counter(mqtt_port)
    samples: list[dict] = []
    start = time.monotonic()
    deadline = start + 60.0 * args.minutes
    print(f"soak: {args.minutes} min of {args.site}, log {tmp / 'site.log'}", flush=True)
    try:
        while time.monotonic() < deadline and runner.poll() is None:
            counter.try_start()
            with counter.lock:
                events = counter.events
            clips = len(list(received.rglob("*.mp4"))) if received.exists() else 0
            samples.append({"t": time.monotonic() - start, "events": events, "clips": clips, "procs": sample(root)})
            time.sleep(args.interval)
    finally:
        counter.stop()
        alive = runner.poll() is None
        runner.send_signal(signal.SIGINT)
        try:
            code = runner.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(runner.pid, signal.SIGKILL)
            code = None
    if not alive or len(samples) < 3:
        log.seek(0)
        sys.stderr.write(log.read()[-4000:])
        print(f"soak: the site stopped early (exit {runner.returncode})", file=sys.stderr)
        return 2

    tr = trends(samples, args.warmup_fraction)
    last = samples[-1]
    print(
        f"\n{'process':<34}{'RSS MB':>9}{'PSS MB':>9}{'fds':>6}{'thr':>5}"
        f"{'RSS MB/h':>10}{'PSS MB/h':>10}{'fds/h':>8}{'thr/h':>8}"
    )
    over: list[str] = []
    for name, t in tr.items():
        cur = last["procs"].get(name, {"rss": 0, "pss": 0, "fds": 0, "threads": 0})
        print(
            f"{name:<34}{cur['rss']:>9.1f}{cur['pss']:>9.1f}{cur['fds']:>6.0f}{cur['threads']:>5.0f}"
            f"{t['rss']:>10.1f}{t['pss']:>10.1f}{t['fds']:>8.1f}{t['threads']:>8.1f}"
        )
        if t["rss"] > args.max_rss_mb_per_hour:
            over.append(f"{name}: RSS {t['rss']:.1f} MB/h > {args.max_rss_mb_per_hour}")
        if t["fds"] > args.max_fds_per_hour:
            over.append(f"{name}: fds {t['fds']:.1f}/h > {args.max_fds_per_hour}")
        if t["threads"] > args.max_threads_per_hour:
            over.append(f"{name}: threads {t['threads']:.1f}/h > {args.max_threads_per_hour}")
    # a long-lived process (node container, service, runner) seen during the run but gone at the
    # end died: that is a failure whatever its memory did (a clip's ffmpeg is expected to come and go)
    # a "pid N" label is a child caught between fork and exec (no command line yet): transient too
    seen = {n for smp in samples for n in smp["procs"] if not n.startswith(("ffmpeg#", "pid "))}
    exited = sorted(seen - set(last["procs"]))
    for name in exited:
        over.append(f"{name}: exited during the soak")
    total_rss = sum(p["rss"] for p in last["procs"].values())
    print(
        f"\nevents over MQTT: {last['events']}, clips received: {last['clips']}, "
        f"total RSS {total_rss:.0f} MB, {len(samples)} samples, runner exit {code}"
    )
    result = {
        "machine": {
            "host": platform.node(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "kernel": platform.release(),
        },
        "minutes": args.minutes,
        "site": args.site,
        "warmup_fraction": args.warmup_fraction,
        "bounds": {
            "rss_mb_per_hour": args.max_rss_mb_per_hour,
            "fds_per_hour": args.max_fds_per_hour,
            "threads_per_hour": args.max_threads_per_hour,
        },
        "trends": tr,
        "exited": exited,
        "events": last["events"],
        "clips": last["clips"],
        "runner_exit": code,
        "over": over,
        "samples": samples,
    }
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=1))
    for o in over:
        print(f"GROWTH: {o}", file=sys.stderr)
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())
