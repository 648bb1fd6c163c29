"""Shared test fixtures: a private DDS domain on loopback, node processes, free ports, samples.

Tests run real rclpy nodes over Fast DDS. Each pytest session picks its own ROS_DOMAIN_ID and
keeps discovery on localhost, so parallel sessions and other ROS users on the machine do not
cross-talk. Node processes are started with the same environment and stopped by PID.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
SAMPLES = SHARED / "samples"
SHARED_MODELS = SHARED / "models"

# --- environment for every ROS participant in this session (in-process and child processes) ---
os.environ.setdefault("ROS_DOMAIN_ID", str(1 + os.getpid() % 100))
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
os.environ.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", str(REPO / "config" / "fastdds_shm.xml"))
os.environ.setdefault("PYTHONUNBUFFERED", "1")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def demo_site_files(
    tmp_path: Path,
    mqtt_port: int,
    rtmp_port: int,
    recv_port: int,
    metrics_port: int | None = None,
    fastdds_profile: Path | None = None,
) -> Path:
    """config/site.yaml + site_params.yaml as shipped, rewritten onto the given ports with every
    folder under tmp_path; returns the site file (the one way the tests run the demo site).

    Ports and the token file change in the site file only: the nodes' client parameters follow from
    its `services:` (nano_vision_ros.site.graph.derived_parameters)."""
    import yaml

    site = yaml.safe_load((REPO / "config" / "site.yaml").read_text())
    params = yaml.safe_load((REPO / "config" / "site_params.yaml").read_text())
    var = tmp_path / "var"
    site["params_file"] = str(tmp_path / "site_params.yaml")
    site["fastdds_profile"] = str(fastdds_profile or REPO / "config" / "fastdds_shm.xml")
    site["services"]["mosquitto"]["port"] = mqtt_port
    site["services"]["nginx_rtmp"]["port"] = rtmp_port
    site["services"]["clip_receiver"].update(port=recv_port, dir=str(var / "received"), token_file=str(var / "token"))
    p = {k: v["ros__parameters"] for k, v in params.items()}
    p["/**/events_node"]["snapshot_dir"] = str(var / "snapshots")
    p["/**/recorder_node"].update(output_dir=str(var / "clips"), pre_seconds=2.0, post_seconds=3.0)
    p["mqtt_bridge_node"].update(outbox_path=str(var / "outbox.sqlite"))
    p["uploader_node"].update(queue_db=str(var / "queue.sqlite"))
    p.setdefault("metrics_node", {})["port"] = metrics_port or free_port()
    (tmp_path / "site_params.yaml").write_text(yaml.safe_dump({k: {"ros__parameters": v} for k, v in p.items()}))
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(site))
    return path


def wait_for(predicate: Callable[[], object], timeout: float = 10.0, interval: float = 0.05, what: str = "condition"):
    """Poll until `predicate()` is truthy; returns its value or fails the test naming `what`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")


def call_service(node, srv_type, name: str, timeout: float = 60.0, /, **fields):
    """Call service `name` from an rclpy `node` (spun elsewhere, e.g. by ros_node) with the request
    fields given; returns the response or fails the test naming the service."""
    client = node.create_client(srv_type, name)
    try:
        if not client.wait_for_service(timeout_sec=timeout):
            pytest.fail(f"service {name} not offered within {timeout:.0f}s")
        req = srv_type.Request()
        for k, v in fields.items():
            setattr(req, k, v)
        fut = client.call_async(req)
        wait_for(fut.done, timeout, interval=0.02, what=f"response of {name}")
        return fut.result()
    finally:
        node.destroy_client(client)


def event_msg(camera: str = "cam0", event_type: str = "intrusion", event_id: str | None = None, sequence: int = 0):
    """A valid nano_vision_msgs/Event (a `new` publication) for tests that feed events to a node,
    made from the core's event model so it is what an events node would publish."""
    import uuid

    from nano_vision_ros.core.events.model import Event
    from nano_vision_ros.core.events.schema import iso
    from nano_vision_ros.ros.events import event_to_msg

    now = iso(time.time())
    return event_to_msg(
        Event(
            event_id=event_id or str(uuid.uuid4()),
            sequence=sequence,
            site_id="site",
            device_id="device",
            camera=camera,
            type=event_type,
            rule=event_type,
            state="new",
            stamp=now,
            start=now,
            end=None,
            track_ids=[],
            labels=[],
            scores=[],
            boxes=[],
            published=now,
        )
    )


class NodeProcess:
    """A node (console script or python -m module) in its own process, logs to a file."""

    def __init__(self, cmd: list[str], log_path: Path, env: dict[str, str] | None = None) -> None:
        self.cmd = cmd
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 - open while the node runs, closed by stop()
        self.proc = subprocess.Popen(
            cmd, stdout=self._log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}, start_new_session=True
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 10.0) -> int | None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGINT)
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
            except ProcessLookupError:
                pass
        self._log.close()
        return self.proc.returncode


@pytest.fixture
def start_node(tmp_path: Path) -> Iterator[Callable[..., NodeProcess]]:
    """start_node('camera_node', '-p', 'source:=...', name='cam') runs a node in its own process.

    Arguments after the executable are ROS arguments (``--ros-args`` is added). Every process is
    stopped (SIGINT, then SIGKILL) at teardown; the log is printed if the test failed.
    """
    procs: list[NodeProcess] = []

    def _start(
        executable: str, *ros_args: str, env: dict[str, str] | None = None, name: str | None = None
    ) -> NodeProcess:
        exe = shutil.which(executable, path=str(Path(sys.executable).parent)) or executable
        cmd = [exe, "--ros-args", *ros_args] if ros_args else [exe]
        log_path = tmp_path / f"{name or executable}-{len(procs)}.log"
        p = NodeProcess(cmd, log_path, env)
        procs.append(p)
        return p

    yield _start
    for p in procs:
        p.stop()
        sys.stderr.write(f"\n----- log of {' '.join(p.cmd)[:200]} -----\n{p.log()[-4000:]}\n")


@pytest.fixture
def ros_node() -> Iterator[Callable[[str], object]]:
    """An rclpy context and node factory in this process, spun on a background thread."""
    import threading

    import rclpy
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor

    context = Context()
    rclpy.init(context=context)
    executor = SingleThreadedExecutor(context=context)
    nodes = []

    def _make(name: str, namespace: str | None = None):
        node = rclpy.create_node(name, context=context, namespace=namespace)
        nodes.append(node)
        executor.add_node(node)
        return node

    t = threading.Thread(target=executor.spin, daemon=True)
    t.start()
    yield _make
    executor.shutdown()
    t.join(5)  # the spin thread must be gone before its nodes are destroyed
    for n in nodes:
        n.destroy_node()
    rclpy.try_shutdown(context=context)


@pytest.fixture
def broker(tmp_path: Path):
    """A real mosquitto on a free 127.0.0.1 port, stopped by PID; its log is printed at the end."""
    from nano_vision_ros.site.mosquitto import Mosquitto

    m = Mosquitto(port=free_port(), workdir=tmp_path / "mosquitto")
    m.start()
    yield m
    m.stop()
    log = m.workdir / "mosquitto.log"
    if log.is_file():
        print(f"----- mosquitto log -----\n{log.read_text(errors='replace')[-3000:]}")


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[Callable[..., object]]:
    """receiver(*args, port=None) starts a real `nano-vision receive` (upload_tools.ReceiverProcess)
    into tmp_path/received on a free port with upload_tools.TOKEN; each is stopped (SIGTERM) at teardown."""
    from upload_tools import ReceiverProcess  # imported here: upload_tools itself imports conftest

    procs: list[ReceiverProcess] = []

    def _start(*extra: str, port: int | None = None) -> ReceiverProcess:
        root = tmp_path / "received"
        root.mkdir(exist_ok=True)
        r = ReceiverProcess(root, port or free_port(), *extra)
        procs.append(r)
        return r

    yield _start
    for r in procs:
        r.kill(signal.SIGTERM)


@pytest.fixture(scope="session")
def samples() -> Path:
    if not SAMPLES.is_dir():
        pytest.fail(f"sample folder missing: {SAMPLES} (CI keeps ../shared beside the clone)")
    return SAMPLES


def sample_frame() -> object:
    """The first frame of samples/vtest.mp4 (768x576 BGR): a real picture for drawing tests."""
    import cv2

    cap = cv2.VideoCapture(str(REPO / "samples/vtest.mp4"))
    ok, img = cap.read()
    cap.release()
    assert ok, "samples/vtest.mp4 unreadable"
    return img


class FrameFeeder:
    """Publishes a frame on <ns>/image_raw and detections with the same stamp on <ns>/detections
    at ~10 Hz from a thread, the way camera and detector do (frame first, detections ~30 ms later)."""

    def __init__(self, node: object, ns: str, frame: object, dets: object) -> None:
        import threading

        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import Image
        from vision_msgs.msg import Detection2DArray

        from nano_vision_ros.ros import qos

        self.node, self.frame, self.dets = node, frame, dets
        self.img_pub = node.create_publisher(Image, f"{ns}/image_raw", qos.SENSOR)
        self.det_pub = node.create_publisher(
            Detection2DArray, f"{ns}/detections", QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
        )
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def subscribed(self) -> bool:
        return self.img_pub.get_subscription_count() > 0 and self.det_pub.get_subscription_count() > 0

    def _run(self) -> None:
        from std_msgs.msg import Header

        from nano_vision_ros.ros.detections import to_msg
        from nano_vision_ros.ros.image import numpy_to_imgmsg

        while not self._stop.is_set():
            h = Header(frame_id="cam0")
            h.stamp = self.node.get_clock().now().to_msg()
            self.img_pub.publish(numpy_to_imgmsg(self.frame, "bgr8", h))
            time.sleep(0.03)
            self.det_pub.publish(to_msg(self.dets, h))
            time.sleep(0.07)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(2)


@pytest.fixture
def site_runner(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen]]:
    """site_runner(site_file, *args) runs `nano-vision site SITE_FILE --no-services *args`; at teardown
    SIGINT (the runner stops its node processes, each in its own session), SIGKILL after 30 s, and
    the runner's log is printed."""
    runs: list[tuple[subprocess.Popen, object]] = []

    def _start(site_file: Path, *args: str) -> subprocess.Popen:
        log = open(tmp_path / f"runner-{len(runs)}.log", "w+")  # noqa: SIM115 - read back at teardown
        p = subprocess.Popen(
            [str(Path(sys.executable).parent / "nano-vision"), "site", str(site_file), "--no-services", *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        runs.append((p, log))
        return p

    yield _start
    for p, log in runs:
        if p.poll() is None:
            p.send_signal(signal.SIGINT)
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(5)
        log.seek(0)  # type: ignore[attr-defined]
        sys.stderr.write(f"\n----- nano-vision site log -----\n{log.read()[-4000:]}\n")  # type: ignore[attr-defined]
        log.close()  # type: ignore[attr-defined]
