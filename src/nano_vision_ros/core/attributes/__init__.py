"""Attributes of tracked people (hard hat, vest, clothing…): crops, a frozen backbone + small head
trained on the board, per-track voting. ROS-free."""
