"""What the shipped launch files must declare: one list for the test that reads their source
and the test that evaluates them with the real launch packages."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LAUNCH_DIR = ROOT / "launch"
STEREO_ARGS = {"config", "checkpoint", "preset", "backend", "ort_provider", "device", "calib_file", "frame_id",
               "fuse", "use_rviz", "fixed_frame", "bag", "bag_rate", "bag_loop",
               "left_image", "right_image", "left_info", "right_info"}
KITTI_REPLAY_ARGS = {"bag", "calib_file", "checkpoint", "bag_rate", "use_rviz", "fuse"}
