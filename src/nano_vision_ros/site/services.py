"""``python -m nano_vision_ros.site.services mosquitto|nginx_rtmp --port N``: one local service in
the foreground until Ctrl-C (the launch file's way to start what `nano-vision site` starts itself)."""
from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import threading
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="nano_vision_ros.site.services")
    p.add_argument("service", choices=["mosquitto", "nginx_rtmp"])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--workdir", default=None)
    a = p.parse_args(argv)
    workdir = Path(a.workdir or tempfile.mkdtemp(prefix=f"nano-vision-{a.service}-"))
    if a.service == "mosquitto":
        from nano_vision_ros.site.mosquitto import Mosquitto

        svc = Mosquitto(port=a.port, host=a.host, workdir=workdir)
    else:
        from nano_vision_ros.site.nginx_rtmp import NginxRtmp

        svc = NginxRtmp(port=a.port, host=a.host, workdir=workdir)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    svc.start()
    print(f"{a.service} running on {a.host}:{a.port} (pid {svc.pid})", flush=True)
    stop.wait()
    svc.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
