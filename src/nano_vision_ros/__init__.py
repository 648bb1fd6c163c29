"""nano_vision_ros: edge video analytics for construction and industrial sites.

`core` is plain Python on numpy (no ROS imports); `ros` holds the adapters shared by the thin
ROS 2 nodes in `nodes`; `site` declares and runs the node graph of a site.
"""

__version__ = "0.1.0"
