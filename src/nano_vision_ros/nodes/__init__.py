"""Thin ROS 2 nodes: message -> numpy -> core -> message. One module per executable."""
