"""DDS isolation for tests: each module that talks DDS has its own domain, discovery stays on localhost.

Domains are ``base + slot``. The base comes from ``OCCDEPTH_TEST_DOMAIN_BASE`` (default 100) so two
test runs on one machine can be kept apart; Fast DDS accepts domain ids up to 232.
"""

from __future__ import annotations

import os

DEFAULT_BASE = 100
SLOTS_PER_RUN = 20
MAX_DOMAIN_ID = 232

# one slot per test module (or harness) that opens a DDS participant
SLOT = {
    "node_harness": 0,
    "node_harness_camera_info": 1,
    "node_onnxruntime": 2,
    "node_fuzz": 3,
    "node_fuzz_camera_info": 5,
    "node_process": 7,
    "end_to_end": 4,
    "bench": 6,
    "bag_player": 8,
    "node_input_watch": 9,
    "colcon_launch": 10,
    "node_input_watch_camera_info": 11,
    "kitti2mcap_bag": 12,
    "node_delivery": 13,
    "node_fusion_bag": 14,
    "node_fusion": 15,
}


def domain_id(name: str) -> int:
    """The domain id of one test module's DDS traffic."""
    base = int(os.environ.get("OCCDEPTH_TEST_DOMAIN_BASE", DEFAULT_BASE))
    domain = base + SLOT[name]
    if not 0 <= domain <= MAX_DOMAIN_ID or SLOT[name] >= SLOTS_PER_RUN:
        raise ValueError(f"test DDS domain {domain} for {name!r} is outside 0..{MAX_DOMAIN_ID}")
    return domain


def localhost_only() -> None:
    """Keep discovery on this machine (Iron and later read this variable; Humble reads the older one)."""
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
