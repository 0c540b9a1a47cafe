"""occdepth-bench: where a frame's time goes, and whether the performance targets hold.

* ``pipeline``: per-stage latency of one stereo frame, message in to message out, for
  every runtime backend that can be created here.
* ``micro``: the fused native lift against the torch reference on each preset's
  shapes, and the cost of building the node's messages at fixed voxel counts.
* ``report``: the targets, markdown tables, a JSON of every figure and a PNG chart.
"""
