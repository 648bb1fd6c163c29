"""Two "boards" on one machine: two Linux network namespaces joined by a veth pair (root only).

Addresses (10.213.77.1/30, .2) exist only inside the namespaces the test creates; both are deleted
in teardown, which also removes the veth pair. Board B also gets its own /dev/shm (tmpfs) so Fast
DDS cannot take its shared-memory shortcut between the boards: everything between them crosses
the veth, as it would cross the site LAN.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import uuid
from pathlib import Path

ADDR_A, ADDR_B = "10.213.77.1", "10.213.77.2"


def netns_unavailable() -> str:
    """Why this machine cannot run the test ("" when it can)."""
    if os.geteuid() != 0:
        return "needs root for `ip netns` (CI runs as root)"
    if not shutil.which("ip"):
        return "iproute2 (`ip`) is not installed"
    probe = f"nvprobe{uuid.uuid4().hex[:6]}"
    r = subprocess.run(["ip", "netns", "add", probe], check=False, capture_output=True, text=True)
    if r.returncode != 0:
        return f"`ip netns add` is not permitted here: {r.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], check=False, capture_output=True)
    return ""


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


class TwoBoards:
    """Namespaces nvA<id>/nvB<id>, veth vA<id> (in A) <-> vB<id> (in B); processes started by PID."""

    def __init__(self) -> None:
        tag = uuid.uuid4().hex[:6]
        self.ns = {"a": f"nvA{tag}", "b": f"nvB{tag}"}
        self.dev = {"a": f"vA{tag}", "b": f"vB{tag}"}
        self.procs: list[subprocess.Popen] = []
        _ip("netns", "add", self.ns["a"])
        try:
            _ip("netns", "add", self.ns["b"])
            _ip("link", "add", self.dev["a"], "type", "veth", "peer", "name", self.dev["b"])
            for board, addr in (("a", ADDR_A), ("b", ADDR_B)):
                _ip("link", "set", self.dev[board], "netns", self.ns[board])
                _ip("-n", self.ns[board], "addr", "add", f"{addr}/30", "dev", self.dev[board])
                _ip("-n", self.ns[board], "link", "set", "lo", "up")
                _ip("-n", self.ns[board], "link", "set", self.dev[board], "multicast", "on", "up")
                # no default route in a fresh namespace: multicast discovery needs a route of its own
                _ip("-n", self.ns[board], "route", "add", "224.0.0.0/4", "dev", self.dev[board])
        except BaseException:
            self.close()
            raise

    def start(self, board: str, cmd: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
        """Run `cmd` on a board (board B with a private /dev/shm), output to `log`."""
        inner = (
            ["sh", "-c", 'mount -t tmpfs -o size=256m nvshm /dev/shm && exec "$@"', "sh", *cmd] if board == "b" else cmd
        )
        out = open(log, "w")  # noqa: SIM115 - closed by the child's exit; kept for the process's life
        p = subprocess.Popen(
            ["ip", "netns", "exec", self.ns[board], *inner],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
        self.procs.append(p)
        return p

    def link(self, up: bool) -> None:
        """Cut (or restore) the link between the boards: board A's end of the veth down/up."""
        _ip("-n", self.ns["a"], "link", "set", self.dev["a"], "up" if up else "down")

    def link_bytes(self) -> int:
        """Bytes both ways on the veth so far (board A's counters)."""
        base = ["ip", "netns", "exec", self.ns["a"], "cat"]
        stats = f"/sys/class/net/{self.dev['a']}/statistics"
        tx = subprocess.run([*base, f"{stats}/tx_bytes"], capture_output=True, text=True, check=True).stdout
        rx = subprocess.run([*base, f"{stats}/rx_bytes"], capture_output=True, text=True, check=True).stdout
        return int(tx) + int(rx)

    @staticmethod
    def stop(p: subprocess.Popen, timeout: float = 20.0) -> int | None:
        """SIGINT to the process group, then SIGKILL; returns the exit code."""
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGINT)
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(5)
            except ProcessLookupError:
                pass
        return p.returncode

    def close(self) -> None:
        for p in reversed(self.procs):
            self.stop(p)
        for ns in self.ns.values():
            subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True)
