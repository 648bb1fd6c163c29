"""`nano-vision check`: a broken site shows every problem at once with its file and line; the demo
site passes; `nano-vision site` refuses to start a site that does not pass."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

from conftest import REPO, demo_site_files, free_port

NANO_VISION = str(Path(sys.executable).parent / "nano-vision")

SITE = """\
site_id: broken
params_file: params.yaml
flavour: vanilla
services:
  mosquitto: {{enabled: true, port: {busy}}}
  nginx_rtmp: {{enabled: false}}
  clip_receiver: {{enabled: true, port: {busy}, status_port: {busy}, dir: {tmp}/rx, token_file: {tmp}/tok}}
cameras:
  - name: cam0
    nodes:
      - camera
      - {{kind: detector, params: {{task: {task}, model: models/face_mask_mobilenetv2.onnx}}}}
      - events
      - recorder
site_nodes:
  - mqtt_bridge
"""

PARAMS = """\
/**/camera_node:
  ros__parameters:
    source: "test://pattern"
    width: 320
    height: 240
    fpss: 5.0
/**/events_node:
  ros__parameters:
    snapshot_quality: 300
    rules: |
      rules:
        - name: walkway
          type: intrusion
          zone: {{name: w, polygon: [[0, 100], [400, 100], [320, 240]]}}
          min_duraton: 0.5
/**/recorder_node:
  ros_parameters:
    output_dir: /tmp
mqtt_bridge_node:
  ros__parameters:
    port: 1
    password_file: {tmp}/no-such-password
/cam9/camera_node:
  ros__parameters: {{}}
"""

TASK = """\
model: models/nanodet_m_416_coco.onnx
decoder: nanodet
labels: models/coco80.labels
score_treshold: 0.3
"""


def _lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln and not ln.startswith("note:")]


def test_broken_site_shows_every_problem_with_file_and_line(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        task = tmp_path / "mytask.yaml"
        task.write_text(TASK)
        site = tmp_path / "site.yaml"
        site.write_text(SITE.format(busy=port, task=task, tmp=tmp_path))
        params = tmp_path / "params.yaml"
        params.write_text(PARAMS.format(tmp=tmp_path))
        res = subprocess.run(
            [NANO_VISION, "check", str(site)], capture_output=True, text=True, timeout=120, check=False
        )
        started = subprocess.run(
            [NANO_VISION, "site", str(site), "--workdir", str(tmp_path / "w")],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert res.returncode == 1, res.stdout + res.stderr
    out = _lines(res.stderr)
    expected = [
        f"{site}:3: key 'flavour' unknown",
        f"{site}:5: services.mosquitto: port 127.0.0.1:{port} is already in use",
        f"{site}:7: services.clip_receiver: port {port} is also services.mosquitto",
        f"{site}:7: services.clip_receiver.status_port {port} is also services.clip_receiver",
        f"{params}:6: /cam0/camera_node: unknown parameter 'fpss'; did you mean 'fps'?",
        f"{params}:9: /cam0/events_node: parameter 'snapshot_quality': Input should be less than or equal to 100",
        f"{params}:14: /cam0/events_node: rules: point [400, 100] of 'rules.0.zone.polygon' is outside the camera's 320x240 image",
        f"{params}:15: /cam0/events_node: rules: key 'min_duraton' in 'rules.0' unknown (did you mean 'min_duration'?)",
        f"{params}:16: section '/**/recorder_node' has no `ros__parameters:`",
        f"{params}:21: /mqtt_bridge_node: parameter 'port' is 1 here but the site file's services give {port}",
        f"{params}:22: /mqtt_bridge_node: password_file: file not found: {tmp_path}/no-such-password",
        f"{params}:23: section '/cam9/camera_node' matches no node of this site",
        f"{task}:4: key 'score_treshold' unknown (did you mean 'score_threshold'",
    ]
    for want in expected:
        assert any(line.startswith(want) for line in out), f"missing {want!r} in:\n" + "\n".join(out)
    assert out[-1] == f"nano-vision check: {len(out) - 1} problem(s) in site {site}"
    # with the profile fixed, the model that does not fit the decoder is named (file and line of `model`)
    task.write_text(TASK.replace("score_treshold", "score_threshold"))
    res = subprocess.run(
        [NANO_VISION, "check", str(site), "--no-ports"], capture_output=True, text=True, timeout=120, check=False
    )
    model_line = [ln for ln in _lines(res.stderr) if ln.startswith(f"{site}:12: /cam0/detector_node: model ")]
    assert model_line and "face_mask_mobilenetv2.onnx" in model_line[0] and "nanodet decoder" in model_line[0], (
        res.stderr
    )
    # `nano-vision site` runs the check first: the same problems, nothing started
    assert started.returncode == 2  # the site file itself is invalid: the configuration exit code
    assert "does not pass `nano-vision check`" in started.stderr and "key 'flavour' unknown" in started.stderr
    assert "started" not in started.stdout


def test_demo_site_passes(tmp_path):
    site = demo_site_files(tmp_path, free_port(), free_port(), free_port(), free_port())
    res = subprocess.run(
        [NANO_VISION, "check", str(site)], capture_output=True, text=True, timeout=120, check=False, cwd=tmp_path
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip().splitlines() == [
        f"OK: site {site}: 8 node(s); parameters, task profiles, models, rules, files, folders, ports checked"
    ]


def test_shipped_site_file_passes_without_ports():
    """config/site.yaml as shipped (its fixed ports may be taken on a shared machine: not checked)."""
    res = subprocess.run(
        [NANO_VISION, "check", str(REPO / "config" / "site.yaml"), "--no-ports"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=REPO,
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("OK: site ")


def test_params_file_sections_match_like_rcl():
    from nano_vision_ros.site.check import _match

    assert _match("/**", "/cam0/camera_node") and _match("/**", "/mqtt_bridge_node")
    assert _match("/**/camera_node", "/cam0/camera_node") and _match("/**/camera_node", "/site/cam0/camera_node")
    assert _match("/*/camera_node", "/cam0/camera_node") and not _match("/*/camera_node", "/site/cam0/camera_node")
    assert _match("mqtt_bridge_node", "/mqtt_bridge_node") and not _match("camera_node", "/cam0/camera_node")
    assert not _match("/cam1/camera_node", "/cam0/camera_node")


def test_every_node_kind_has_its_parameter_model():
    """The check validates a node's parameters with the model the node itself loads."""
    import re

    from nano_vision_ros.site.check import CONFIG_MODELS
    from nano_vision_ros.site.config import NODE_KINDS

    assert set(CONFIG_MODELS) == set(NODE_KINDS)
    for kind, spec in CONFIG_MODELS.items():
        module, _, cls = spec.partition(":")
        source = (REPO / "src" / Path(*module.split("."))).with_suffix(".py").read_text()
        assert re.search(rf"load_config\(self, {cls}\b", source), f"{NODE_KINDS[kind]} does not load {cls}"


def test_a_literal_url_agrees_with_the_sites_camera_template(tmp_path):
    """The site derives the streamer's url as a `{camera}` template; a params file that writes the url
    out for its camera says the same thing (no 'set it in one place' problem), another camera's does not."""
    site = tmp_path / "site.yaml"
    site.write_text(
        "site_id: t\nparams_file: params.yaml\n"
        "services:\n  mosquitto: {enabled: false}\n  nginx_rtmp: {enabled: true, port: 19350}\n"
        "  clip_receiver: {enabled: false}\n"
        "cameras:\n  - name: cam0\n    nodes: [camera, rtmp_streamer]\n"
        "  - name: cam1\n    nodes: [camera, rtmp_streamer]\n"
    )
    params = tmp_path / "params.yaml"

    def check(url_cam0: str, url_cam1: str) -> list[str]:
        params.write_text(
            "/**/camera_node:\n  ros__parameters: {source: 'test://pattern'}\n"
            f"/cam0/rtmp_streamer_node:\n  ros__parameters: {{url: '{url_cam0}'}}\n"
            f"/cam1/rtmp_streamer_node:\n  ros__parameters: {{url: '{url_cam1}'}}\n"
        )
        res = subprocess.run(
            [NANO_VISION, "check", str(site), "--no-ports"], capture_output=True, text=True, timeout=120, check=False
        )
        return [ln for ln in _lines(res.stderr) if "parameter 'url'" in ln]

    base = "rtmp://127.0.0.1:19350/live"
    assert check(f"{base}/cam0", f"{base}/{{camera}}") == []
    wrong = check(f"{base}/cam0", f"{base}/cam0")  # cam1's streamer would publish on cam0's stream
    assert len(wrong) == 1 and wrong[0].startswith(f"{params}:6: /cam1/rtmp_streamer_node: parameter 'url'"), wrong
    assert f"(= '{base}/cam1' for this node)" in wrong[0]
