"""ROS-free core: capture, inference, decoding, tracking, recognition, events, delivery.

Nothing under this package imports rclpy or ROS messages, so it is unit-tested without ROS.
"""
