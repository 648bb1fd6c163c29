"""Upload test helpers shared by the protocol, HTTP, queue, node and attack tests: a real
`nano-vision receive` process and random clips with their checksums (the `receiver` fixture that
starts them is in conftest.py).

A helper module, not a test module (pytest does not collect it): test modules share code through
conftest.py and modules like this one, never by importing each other (test_lint checks)."""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

from conftest import wait_for

TOKEN = "s3cret-token"


class ReceiverProcess:
    def __init__(self, root: Path, port: int, *extra: str) -> None:
        self.root, self.port = root, port
        exe = Path(sys.executable).parent / "nano-vision"
        self.log = open(root.parent / f"receiver-{port}.log", "ab")  # noqa: SIM115 - open while it runs, closed by kill()
        self.proc = subprocess.Popen(
            [str(exe), "receive", "--dir", str(root), "--port", str(port), *extra],
            env={**os.environ, "NANO_VISION_UPLOAD_TOKEN": TOKEN},
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_for(self._listening, 30, what=f"receiver on port {port}")

    def _listening(self) -> bool:
        assert self.proc.poll() is None, (self.root.parent / f"receiver-{self.port}.log").read_text()
        try:
            socket.create_connection(("127.0.0.1", self.port), 0.2).close()
            return True
        except OSError:
            return False

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
            self.proc.wait(10)
        self.log.close()


def make_clip(path: Path, size: int) -> str:
    data = os.urandom(size)
    path.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
