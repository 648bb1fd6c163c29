"""ament_python package definition; also a plain pip-installable package (src layout)."""

import os
from glob import glob

from setuptools import find_packages, setup

PACKAGE = "nano_vision_ros"

# One console script per node, so `ros2 run nano_vision_ros <node>` works after `colcon build`.
NODES = [
    "camera_node",
    "detector_node",
    "events_node",
    "mqtt_bridge_node",
    "rtmp_streamer_node",
    "recorder_node",
    "uploader_node",
    "face_node",
    "plate_node",
    "metrics_node",
    "webrtc_node",
    "foxglove_node",
]


def tree(src: str, dest_root: str) -> list[tuple[str, list[str]]]:
    """data_files entries that install every file under `src` into share/<pkg>/<src>."""
    entries = []
    for folder, _dirs, files in os.walk(src):
        paths = [os.path.join(folder, f) for f in files if not f.endswith((".engine", ".trt"))]
        if paths:
            entries.append((os.path.join(dest_root, folder), paths))
    return entries


share = os.path.join("share", PACKAGE)
setup(
    name=PACKAGE,
    version="0.1.0",
    package_dir={"": "src"},
    packages=find_packages("src"),
    include_package_data=True,
    package_data={PACKAGE: ["schemas/*.json", "data/*"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (share, ["package.xml"]),
        (os.path.join(share, "launch"), glob("launch/*.py")),
        *tree("config", share),
        *tree("models", share),
        *tree("samples", share),
    ],
    python_requires=">=3.10",
    install_requires=[
        "setuptools",
        # minimums = requirements/oldest.pins, tested by scripts/test_oldest.sh (numpy 1.21-1.23:
        # Python 3.10 only, not run here)
        "numpy>=1.21",
        "pyyaml>=5.4",
        "pydantic>=2,<3",
        "jsonschema>=4.18",
        "paho-mqtt>=2,<3",
        "prometheus-client>=0.17",  # metrics_node
        "scipy>=1.10",  # the tracker (core.tracking: Hungarian assignment), used by every detector
    ],
    extras_require={
        # pip's OpenCV; on Jetson prefer the system (JetPack) OpenCV and skip this extra.
        "opencv": ["opencv-python-headless>=4.9"],
        "onnx": ["onnxruntime>=1.15", "onnx>=1.15"],
        # webrtc_node (browser live view): software VP8/H.264 encode, only while someone watches
        "webrtc": ["aiortc>=1.9", "av>=12", "aiohttp>=3.9"],
        "attributes": ["tqdm>=4.60"],  # nano-vision attributes: progress bar (optional)
        "foxglove": ["foxglove-sdk>=0.30,<0.31"],  # foxglove_node: Foxglove WebSocket live view (docs/FOXGLOVE.md)
        "test": [
            "pytest",
            "pytest-timeout",
            "hypothesis>=6.100",
            "psutil",
            "websocket-client>=1.6",
            "websockets>=12",
            "ruff==0.17.6",
            "mypy==2.4.1",
            "types-PyYAML",
        ],  # test_lint
    },
    zip_safe=False,
    maintainer="nano_vision_ros maintainers",
    maintainer_email="nano-vision@example.invalid",
    description="Edge video analytics ROS 2 nodes for construction and industrial sites.",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [f"{n} = {PACKAGE}.nodes.{n}:main" for n in NODES] + [f"nano-vision = {PACKAGE}.cli:main"],
    },
)
