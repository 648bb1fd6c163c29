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
import string
from pathlib import Path

from nano_vision_ros.core.paths import resolve
from nano_vision_ros.site.local_server import LocalServer, LocalServerError

log = logging.getLogger(__name__)

#: Where Debian/Ubuntu/JetPack (libnginx-mod-rtmp) put the dynamic module.
MODULE_CANDIDATES = (
    "/usr/lib/nginx/modules/ngx_rtmp_module.so",
    "/usr/lib64/nginx/modules/ngx_rtmp_module.so",
    "/usr/local/nginx/modules/ngx_rtmp_module.so",
)


class NginxRtmpError(LocalServerError):
    """nginx or its RTMP module is missing, or nginx did not start listening."""


def find_rtmp_module() -> str | None:
    """The rtmp module .so to load, or None when nginx has it built in or it is missing."""
    for path in MODULE_CANDIDATES:
        if os.path.isfile(path):
            return path
    return None


class NginxRtmp(LocalServer):
    """nginx-rtmp on ``rtmp://host:port/<app>``, started and stopped by PID.

    ``allow_publish`` adds addresses (besides 127.0.0.1) allowed to publish.
    """

    name = "nginx"
    error = NginxRtmpError

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
        super().__init__(port, host)
        self.workdir = Path(workdir).resolve()
        self.app = app
        self.allow_publish = allow_publish
        self.template = template
        self.nginx = nginx or shutil.which("nginx") or "/usr/sbin/nginx"
        self.log_level = log_level

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
        self._check_port_free()
        for sub in ("logs", "temp"):
            (self.workdir / sub).mkdir(parents=True, exist_ok=True)
        self.conf_path.write_text(self.render_config())
        cmd = [
            self.nginx,
            "-p",
            str(self.workdir),
            "-c",
            str(self.conf_path),
            "-e",
            str(self.workdir / "logs" / "error.log"),
            "-g",
            "daemon off;",
        ]
        self._spawn(cmd, self.workdir / "logs" / "stdout.log")
        self._wait_listening(timeout)

    def log_tail(self) -> str:
        texts = []
        for name in ("stdout.log", "error.log"):
            p = self.workdir / "logs" / name
            if p.is_file():
                texts.append(p.read_text(errors="replace")[-800:])
        return " | ".join(t.strip() for t in texts if t.strip()) or "(no log)"
