"""``python -m nano_vision_ros.site.services mosquitto|nginx_rtmp --port N``: one local service in
the foreground until Ctrl-C (the launch file's way to start what `nano-vision site` starts itself)."""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

from nano_vision_ros.site.local_server import LocalServer


class ClipReceiver(LocalServer):
    """`nano-vision receive` as a child process (the demo's clip server), started and stopped by PID.

    The shared token lives in `token_file`; it is created (random, mode 0600) when missing, so the
    uploader of the same site reads the same file.
    """

    name = "clip receiver"

    def __init__(
        self,
        port: int,
        host: str,
        directory: str | os.PathLike[str],
        token_file: str | os.PathLike[str],
        status_port: int = 0,
    ) -> None:
        super().__init__(port, host)
        self.directory = Path(directory)
        self.token_file = Path(token_file)
        self.status_port = status_port  # > 0: upload progress on http://host:status_port/status

    def start(self, timeout: float = 10.0) -> None:
        self._check_port_free()
        self.directory.mkdir(parents=True, exist_ok=True)
        if not self.token_file.exists():
            self.token_file.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.token_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_urlsafe(24) + "\n")
        exe = Path(sys.executable).parent / "nano-vision"
        cmd = [
            str(exe) if exe.exists() else "nano-vision",
            "receive",
            "--dir",
            str(self.directory),
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--token-file",
            str(self.token_file),
        ]
        if self.status_port:
            cmd += ["--status-port", str(self.status_port)]
        self._log = self.directory.parent / f"clip_receiver-{self.port}.log"
        self._spawn(cmd, self._log)
        self._wait_listening(timeout)

    def log_tail(self) -> str:
        log = getattr(self, "_log", None)
        return log.read_text(errors="replace")[-800:].strip() if log and log.is_file() else "(no log)"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="nano_vision_ros.site.services")
    p.add_argument("service", choices=["mosquitto", "nginx_rtmp", "clip_receiver"])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--workdir", default=None)
    p.add_argument("--dir", default="var/received_clips", help="clip_receiver: where clips are stored")
    p.add_argument("--token-file", default="var/upload_token", help="clip_receiver: shared token (created if missing)")
    p.add_argument("--status-port", type=int, default=0, help="clip_receiver: upload progress port (0 = off)")
    a = p.parse_args(argv)
    workdir = Path(a.workdir or tempfile.mkdtemp(prefix=f"nano-vision-{a.service}-"))
    svc: Any  # each has start() / stop() / pid
    if a.service == "mosquitto":
        from nano_vision_ros.site.mosquitto import Mosquitto

        svc = Mosquitto(port=a.port, host=a.host, workdir=workdir)
    elif a.service == "nginx_rtmp":
        from nano_vision_ros.site.nginx_rtmp import NginxRtmp

        svc = NginxRtmp(port=a.port, host=a.host, workdir=workdir)
    else:
        svc = ClipReceiver(a.port, a.host, a.dir, a.token_file, a.status_port)
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
