"""Adapters shared by the ROS 2 nodes: parameters, images, QoS, workers, diagnostics, start-up."""
