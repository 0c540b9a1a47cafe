"""Plain-Python layer of the ROS 2 node: pairing, decoding, outputs, stats, parameters.

Only ``messages`` imports ROS message types; everything else is numpy/stdlib so it is
unit-tested without a ROS installation.
"""
