"""The one camera-name rule: a camera's nodes live in its namespace, the camera is its last part.

``/cam0`` -> ``cam0``, ``/site_a/cam0`` -> ``cam0``, ``/`` -> ``""``. The nodes use it for their own
camera name and the MQTT bridge for command targets (a target ``cam0`` is every service whose node
lives in a namespace ending in ``cam0``), so both sides agree by construction.
"""

from __future__ import annotations


def camera_name(namespace: str) -> str:
    """The camera a namespace belongs to ('' for the root namespace)."""
    parts = [p for p in namespace.split("/") if p]
    return parts[-1] if parts else ""


def expand_camera(text: str, namespace: str) -> str:
    """``{camera}`` in a parameter (the streamer's url) as the camera of `namespace` (``camera`` at the root).

    The streamer and ``nano-vision check`` both use it, so a literal url in a params file and the
    site's ``{camera}`` template compare as the node would see them.
    """
    return text.replace("{camera}", camera_name(namespace) or "camera")


def split_service(name: str) -> tuple[str, str, str]:
    """``/cam0/face_node/enroll_face`` -> (namespace ``/cam0``, node FQN ``/cam0/face_node``, ``enroll_face``)."""
    node, _, short = name.rstrip("/").rpartition("/")
    namespace = node.rpartition("/")[0] or "/"
    return namespace, node, short
