"""launch_testing file (run by `launch_test`, see test/test_launch_testing.py): camera_node from the
colcon install space, started by launch_ros. Issue 11: a misspelled parameter name is refused at
start (exit code 2, the closest names in the error) instead of running on the defaults; a correct
one plays the bundled sample found through the ament index."""

import unittest

import launch_testing
import launch_testing.actions
import launch_testing.asserts
from launch_ros.actions import Node

import launch


def generate_test_description():
    typo = Node(
        package="nano_vision_ros",
        executable="camera_node",
        namespace="lt",
        name="camera_node",
        parameters=[{"sourse": "/nonexistent.mp4", "fpss": 99.0}],
        output="screen",
    )
    good = Node(
        package="nano_vision_ros",
        executable="camera_node",
        namespace="lt_good",
        name="camera_node",
        parameters=[{"loop": True}],
        output="screen",
    )
    return (launch.LaunchDescription([typo, good, launch_testing.actions.ReadyToTest()]), {"typo": typo, "good": good})


class TestCameraParameters(unittest.TestCase):
    def test_misspelled_names_refused(self, proc_info, proc_output, typo):
        proc_info.assertWaitForShutdown(process=typo, timeout=120)
        proc_output.assertWaitFor("node /lt/camera_node: ", process=typo, timeout=10)
        proc_output.assertWaitFor("unknown parameter 'fpss' (did you mean 'fps'?)", process=typo, timeout=10)
        proc_output.assertWaitFor("unknown parameter 'sourse' (did you mean 'source'?)", process=typo, timeout=10)

    def test_correct_names_stream_the_sample(self, proc_output, good):
        proc_output.assertWaitFor("streaming 768x576", process=good, timeout=120)


@launch_testing.post_shutdown_test()
class TestExitCodes(unittest.TestCase):
    def test_typo_exit_code_is_2(self, proc_info, typo):
        launch_testing.asserts.assertExitCodes(proc_info, [2], process=typo)
