"""The input subscriptions' QoS: ``input_qos`` choices and the AUTO rule, without ROS types.

Why reliable by default: a best-effort image larger than one datagram is split into many
fragments and one lost fragment loses the whole image. With the Fast DDS that the ROS 2
wheels install, best-effort KITTI-size images (1241x376 rgb8, 1.4 MB) between two processes
on one machine mostly never arrive, while a reliable subscription gets them all (the writer
re-sends lost fragments). A reliable subscription matches only reliable publishers, so AUTO
subscribes reliably and falls back, per topic, to best effort when a publisher on that topic
offers only best effort (the node logs that switch and the risk it carries).

``SYSTEM_DEFAULT`` leaves reliability to the middleware: Fast DDS's default for a reader is
best effort, so it is not a way to get reliable delivery.
"""

from __future__ import annotations

from typing import Iterable

INPUT_QOS_CHOICES = ("AUTO", "DEFAULT", "SENSOR_DATA", "SYSTEM_DEFAULT")
DEFAULT_INPUT_QOS = "AUTO"
IMAGE_DEPTH = 30  # reliable history per image topic: 3 s at 10 Hz, for a starved executor (memory only while it lags)


def auto_best_effort(publishers_reliable: Iterable[bool]) -> bool:
    """AUTO: subscribe best effort iff some publisher on the topic offers only best effort
    (a reliable subscription would never match it); with no publisher known, reliable."""
    return any(not reliable for reliable in publishers_reliable)
