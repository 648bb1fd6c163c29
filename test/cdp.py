"""Headless Chromium (Debian `chromium`) driven over the DevTools protocol: open a page, evaluate JS.

A helper for tests and bench/webrtc_latency.py (not a test module). The browser runs in its own
process group with a private profile and is stopped by PID. WebRTC is kept on the loopback
interface (``--allow-loopback-in-peer-connection``, no mDNS host-name candidates) and a video
plays without a user gesture.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any


def chromium_path() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class CdpError(RuntimeError):
    """The browser did not start, or a JS evaluation threw."""


class Chromium:
    """One headless browser; ``open(url)`` returns a ``Page``."""

    def __init__(self, workdir: Path | None = None) -> None:
        exe = chromium_path()
        if exe is None:
            raise CdpError("chromium not installed (apt-get install chromium; requirements/test.debs)")
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="chromium-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = _free_port()
        self.log_path = self.workdir / "chromium.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - open while the browser runs
        args = [
            exe,
            "--headless=new",
            f"--remote-debugging-port={self.port}",
            "--remote-debugging-address=127.0.0.1",
            f"--user-data-dir={self.workdir / 'profile'}",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-gpu",
            "--disable-extensions",
            "--disable-background-networking",
            "--mute-audio",
            "--autoplay-policy=no-user-gesture-required",
            "--allow-loopback-in-peer-connection",
            "--disable-features=WebRtcHideLocalIpsWithMdns,Translate,MediaRouter",
            "--force-webrtc-ip-handling-policy=default",
            "about:blank",
        ]
        if os.geteuid() == 0:
            args.insert(1, "--no-sandbox")  # Chromium refuses to run as root with its sandbox
        self.proc = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise CdpError(f"chromium exited ({self.proc.returncode}): {self.log()[-1500:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/json/version", timeout=1) as r:
                    json.load(r)
                return
            except OSError:
                time.sleep(0.2)
        self.close()
        raise CdpError("chromium's DevTools endpoint did not come up in 30 s")

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def open(self, url: str) -> Page:
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}/json/new?{url}", method="PUT")
        with urllib.request.urlopen(req, timeout=10) as r:
            target = json.load(r)
        page = Page(target["webSocketDebuggerUrl"])
        deadline = time.monotonic() + 30
        while page.evaluate("document.readyState + ' ' + location.href") != f"complete {url}":
            if time.monotonic() > deadline:
                raise CdpError(f"{url} did not load in 30 s")
            time.sleep(0.1)
        return page

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
            except ProcessLookupError:
                pass
        self._log.close()


class Page:
    """A tab: ``evaluate(js)`` returns the value of an expression (promises awaited)."""

    def __init__(self, ws_url: str) -> None:
        import websocket  # websocket-client (requirements/test.txt)

        self._ws = websocket.create_connection(ws_url, timeout=30, suppress_origin=True)
        self._id = 0

    def call(self, method: str, wait: float = 30.0, **params: Any) -> dict[str, Any]:
        self._id += 1
        my_id = self._id
        self._ws.send(json.dumps({"id": my_id, "method": method, "params": params}))
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            self._ws.settimeout(max(0.1, deadline - time.monotonic()))
            msg = json.loads(self._ws.recv())
            if msg.get("id") == my_id:
                if "error" in msg:
                    raise CdpError(f"{method}: {msg['error']}")
                return msg.get("result", {})
        raise CdpError(f"{method}: no answer in {wait:.0f} s")

    def evaluate(self, expression: str, timeout: float = 30.0) -> Any:
        res = self.call(
            "Runtime.evaluate",
            wait=timeout + 5,
            expression=expression,
            awaitPromise=True,
            returnByValue=True,
            timeout=int(timeout * 1000),
        )
        if "exceptionDetails" in res:
            d = res["exceptionDetails"]
            raise CdpError(f"JS threw: {d.get('exception', {}).get('description') or d.get('text')}")
        return res.get("result", {}).get("value")

    def close(self) -> None:
        try:
            self._ws.close()
        except OSError:
            pass
