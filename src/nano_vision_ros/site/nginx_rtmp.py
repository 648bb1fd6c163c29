"""A private nginx with the RTMP module: the live stream's local server.

The config is rendered from ``config/nginx/nginx-rtmp.conf.template`` into a work dir that also
holds the pid file, logs and temp paths, and nginx runs in the foreground (``daemon off``) as our
child process, so it never touches the system nginx (``/etc/nginx``, ``/run/nginx.pid``) and is
stopped by its PID. Used by the site runner, ``python -m nano_vision_ros.site.services`` and tests.
"""
from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import string
import subprocess
import time
from pathlib import Path

from nano_vision_ros.core.paths import resolve

log = logging.getLogger(__name__)

#: Where Debian/Ubuntu/JetPack (libnginx-mod-rtmp) put the dynamic module.
MODULE_CANDIDATES = (
    "/usr/lib/nginx/modules/ngx_rtmp_module.so",
    "/usr/lib64/nginx/modules/ngx_rtmp_module.so",
    "/usr/local/nginx/modules/ngx_rtmp_module.so",
)


class NginxRtmpError(RuntimeError):
    """nginx or its RTMP module is missing, or nginx did not start listening."""


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.3):
            return True
    except OSError:
        return False


def find_rtmp_module() -> str | None:
    """The rtmp module .so to load, or None when nginx has it built in or it is missing."""
    for path in MODULE_CANDIDATES:
        if os.path.isfile(path):
            return path
    return None


class NginxRtmp:
    """nginx-rtmp on ``rtmp://host:port/<app>``, started and stopped by PID.

    ``allow_publish`` adds addresses (besides 127.0.0.1) allowed to publish.
    """

    def __init__(
        self,
        port: int = 1935,
        host: str = "127.0.0.1",
        workdir: str | os.PathLike[str] = "/tmp/nano-vision-nginx",
        app: str = "live",
        allow_publish: tuple[str, ...] = (),
        template: str = "config/nginx/nginx-rtmp.conf.template",
        nginx: str | None = None,
        log_level: str = "warn",
    ) -> None:
        self.port = int(port)
        self.host = host
        self.workdir = Path(workdir).resolve()
        self.app = app
        self.allow_publish = allow_publish
        self.template = template
        self.nginx = nginx or shutil.which("nginx") or "/usr/sbin/nginx"
        self.log_level = log_level
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def url(self) -> str:
        return f"rtmp://{self.host}:{self.port}/{self.app}"

    @property
    def conf_path(self) -> Path:
        return self.workdir / "nginx.conf"

    def render_config(self) -> str:
        tpl_path = resolve(self.template)
        if not tpl_path.is_file():
            raise NginxRtmpError(f"nginx-rtmp config template not found: {self.template}")
        module = find_rtmp_module()
        user_line = "user root;" if os.geteuid() == 0 else ""  # workers keep our rights on the work dir
        allow = "\n            ".join(f"allow publish {a};" for a in self.allow_publish)
        return string.Template(tpl_path.read_text()).substitute(
            load_module=f"load_module {module};" if module else "",
            work_dir=str(self.workdir),
            log_level=self.log_level,
            user_line=user_line,
            host=self.host,
            port=self.port,
            app=self.app,
            allow_publish=allow,
        )

    def start(self, timeout: float = 10.0) -> None:
        """Render the config, start nginx in the foreground, wait until the port accepts."""
        if self.proc is not None and self.proc.poll() is None:
            return
        if not os.path.isfile(self.nginx):
            raise NginxRtmpError(f"nginx not found ({self.nginx}); install nginx and libnginx-mod-rtmp")
        if _port_open(self.host, self.port):
            raise NginxRtmpError(f"{self.host}:{self.port} is already in use")
        for sub in ("logs", "temp"):
            (self.workdir / sub).mkdir(parents=True, exist_ok=True)
        self.conf_path.write_text(self.render_config())
        cmd = [self.nginx, "-p", str(self.workdir), "-c", str(self.conf_path), "-e", str(self.workdir / "logs" / "error.log"),
               "-g", "daemon off;"]
        out = open(self.workdir / "logs" / "stdout.log", "ab")
        self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        out.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise NginxRtmpError(f"nginx exited with code {self.proc.returncode}: {self._log_tail()}")
            if _port_open(self.host, self.port):
                log.debug("nginx-rtmp on %s (pid %s)", self.url, self.proc.pid)
                return
            time.sleep(0.05)
        self.stop()
        raise NginxRtmpError(f"nginx did not listen on {self.host}:{self.port} within {timeout:.0f}s: {self._log_tail()}")

    def _log_tail(self) -> str:
        texts = []
        for name in ("stdout.log", "error.log"):
            p = self.workdir / "logs" / name
            if p.is_file():
                texts.append(p.read_text(errors="replace")[-800:])
        return " | ".join(t.strip() for t in texts if t.strip()) or "(no log)"

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 5.0) -> None:
        """Fast shutdown (SIGTERM to the master, which stops its workers); SIGKILL to the group if stuck."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGTERM)
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(timeout)
        self.proc = None

    def __enter__(self) -> "NginxRtmp":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
