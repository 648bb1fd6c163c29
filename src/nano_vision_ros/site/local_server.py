"""What the project's local servers (mosquitto, nginx-rtmp, the clip receiver) share: run as our
child in its own process group with its output in a log file, wait until its port accepts, and
stop it by PID (SIGTERM, then SIGKILL to the group)."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

log = logging.getLogger(__name__)


class LocalServerError(RuntimeError):
    """The server is missing, its port is taken, or it did not start listening."""


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.3):
            return True
    except OSError:
        return False


class LocalServer:
    """Base: subclasses build the command in ``start`` and call ``_spawn`` then ``_wait_listening``."""

    name = "server"
    error: type[LocalServerError] = LocalServerError

    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        self.port = int(port)
        self.host = host
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self) -> str:
        """The end of the server's own logs, for error messages."""
        return "(no log)"

    def _check_port_free(self) -> None:
        if port_open(self.host, self.port):
            raise self.error(f"{self.host}:{self.port} is already in use")

    def _spawn(self, cmd: list[str], stdout_log: Path) -> None:
        with open(stdout_log, "ab") as out:
            self.proc = subprocess.Popen(
                cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
            )

    def _wait_listening(self, timeout: float) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise self.error(f"{self.name} exited with code {self.proc.returncode}: {self.log_tail()}")
            if port_open(self.host, self.port):
                log.debug("%s on %s:%d (pid %s)", self.name, self.host, self.port, self.proc.pid)
                return
            time.sleep(0.05)
        self.stop()
        raise self.error(
            f"{self.name} did not listen on {self.host}:{self.port} within {timeout:.0f}s: {self.log_tail()}"
        )

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM (servers save state and stop their workers), SIGKILL to the group if it does not exit."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGTERM)
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self.proc = None

    def kill(self) -> None:
        """SIGKILL by PID to the whole group: a crash, nothing saved."""
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(5)
        self.proc = None

    def start(self, timeout: float = 10.0) -> None:
        """Every server starts itself: build the command, ``_spawn``, ``_wait_listening``."""
        raise NotImplementedError

    def __enter__(self) -> LocalServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
