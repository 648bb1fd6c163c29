"""HTTP PUT transport against a real nginx (WebDAV PUT, Bearer token checked by nginx)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess

import pytest
from conftest import free_port, wait_for
from upload_tools import make_clip, sha

from nano_vision_ros.core.upload import UploadError, http_put

TOKEN = "put-token"

CONF = """
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
{user}
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    server {{
        listen 127.0.0.1:{port};
        client_max_body_size 1m;
        location /upload/ {{
            if ($http_authorization != "Bearer {token}") {{ return 401; }}
            root {d}/www;
            dav_methods PUT;
            create_full_put_path on;
        }}
    }}
}}
"""


@pytest.fixture
def dav(tmp_path):
    d = tmp_path / "nginx"
    (d / "www" / "upload").mkdir(parents=True)
    port = free_port()
    conf = d / "nginx.conf"
    conf.write_text(CONF.format(d=d, port=port, token=TOKEN, user="user root;" if os.geteuid() == 0 else ""))
    proc = subprocess.Popen(
        [
            shutil.which("nginx") or "/usr/sbin/nginx",
            "-p",
            str(d),
            "-c",
            str(conf),
            "-e",
            str(d / "error.log"),
            "-g",
            "daemon off;",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )

    def up():
        assert proc.poll() is None, (d / "error.log").read_text()
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return True
        except OSError:
            return False

    wait_for(up, 15, what="nginx WebDAV")
    yield f"http://127.0.0.1:{port}/upload", d / "www" / "upload"
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


def test_http_put_stores_the_clip(dav, tmp_path):
    base, root = dav
    clip = tmp_path / "e.mp4"
    digest = make_clip(clip, 300_000)
    res = http_put(base, TOKEN, clip, "cam1/e.mp4")
    assert res.remote == f"{base}/cam1/e.mp4" and res.sent == 300_000
    assert sha(root / "cam1" / "e.mp4") == digest


def test_http_put_refusals(dav, tmp_path):
    base, root = dav
    clip = tmp_path / "f.mp4"
    make_clip(clip, 100_000)
    with pytest.raises(UploadError) as err:
        http_put(base, "wrong", clip, "cam1/f.mp4")
    assert err.value.code == "auth" and not err.value.retryable
    big = tmp_path / "big.mp4"
    make_clip(big, 3 * 1024 * 1024)
    with pytest.raises(UploadError) as err:
        http_put(base, TOKEN, big, "cam1/big.mp4")
    assert err.value.code == "size" and not err.value.retryable
    with pytest.raises(UploadError) as err:
        http_put(base, TOKEN, clip, "../f.mp4")
    assert err.value.code == "name"
    assert not list(root.rglob("*.mp4"))
    with pytest.raises(UploadError) as err:  # nothing listening: retryable
        http_put(f"http://127.0.0.1:{free_port()}/upload", TOKEN, clip, "cam1/f.mp4", timeout=5)
    assert err.value.retryable


@pytest.mark.timeout(120)
def test_uploader_node_http_transport(dav, start_node, ros_node, tmp_path):
    from nano_vision_msgs.msg import Clip, ClipStatus
    from nano_vision_ros.ros import qos
    from nano_vision_ros.ros.events import status_from_msg

    base, root = dav
    clip = tmp_path / "cam2_20260101T000000_h.mp4"
    digest = make_clip(clip, 200_000)
    # clips_topics left at ['*']: the uploader discovers /t_http/clips and answers on /t_http/clip_status.
    start_node(
        "uploader_node",
        "-p",
        "transport:=http",
        "-p",
        f"url:={base}",
        "-p",
        f"queue_db:={tmp_path / 'q.sqlite'}",
        env={"NANO_VISION_UPLOAD_TOKEN": TOKEN},
    )
    me = ros_node("http_test")
    statuses: list[dict] = []
    me.create_subscription(
        ClipStatus, "/t_http/clip_status", lambda m: statuses.append(status_from_msg(m).model_dump()), qos.NOTICES
    )
    pub = me.create_publisher(Clip, "/t_http/clips", qos.NOTICES)
    wait_for(lambda: pub.get_subscription_count() > 0, 30, what="uploader subscription")
    pub.publish(Clip(event_ids=["h"], camera="cam2", path=str(clip), sha256=digest))
    done = wait_for(lambda: next((s for s in statuses if s["state"] == "done"), None), 30, what="clip_status done")
    assert done["remote"] == f"{base}/cam2/{clip.name}"
    assert sha(root / "cam2" / clip.name) == digest
