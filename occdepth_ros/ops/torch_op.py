"""``torch.ops.occdepth.stereo_voxel_sample``: the lift as one torch op, the single entry
point of eager runs, training, tracing and export (docs/stereo_voxel_sample.md).

Kernels of the op:

- CPU: the native kernel (``_svs_native``, a C++ extension that setup.py builds at
  install from export/plugin/src/svs_cpu.cpp) for float32 inputs within the header's
  limits; the torch reference for anything else, or where the extension was not built
  (one warning says so).
- every other device: the torch reference (``stereo_voxel_sample.py``).
- fake (tracing, export): the output's shape only.
- autograd: the reference's backward, recomputed from the saved inputs, so training
  through the op gets the same gradients as through the reference.
"""

from __future__ import annotations

import logging
from typing import Optional, Sequence

import torch

from .stereo_voxel_sample import stereo_voxel_sample

log = logging.getLogger(__name__)

OP_NAME = "occdepth::stereo_voxel_sample"

try:
    from . import _svs_native
except ImportError as exc:  # not built: no torch headers or compiler at install
    _svs_native = None
    NATIVE_MISSING = (f"the native CPU kernel (occdepth_ros.ops._svs_native) is not built ({exc}); "
                      "reinstall with a C++ compiler: pip install --no-deps --no-build-isolation -e .")
else:
    NATIVE_MISSING = None
_warned = False


@torch.library.custom_op(OP_NAME, mutates_args=())
def stereo_voxel_sample_op(
    features: list[torch.Tensor],
    pixel_index: torch.Tensor,
    depth_prob: Optional[torch.Tensor],
    depth_coords: Optional[torch.Tensor],
    grid: list[int],
    gate_scale: float,
) -> torch.Tensor:
    """The reference: every device without a kernel of its own."""
    return stereo_voxel_sample(features, pixel_index.long(), tuple(grid), depth_prob, depth_coords, gate_scale)


@stereo_voxel_sample_op.register_fake
def _(features, pixel_index, depth_prob, depth_coords, grid, gate_scale):
    f0 = features[0]
    return f0.new_empty((f0.shape[0], f0.shape[2], *grid))


def native_reason(features: Sequence[torch.Tensor], pixel_index: torch.Tensor,
                  depth_prob: torch.Tensor | None = None, depth_coords: torch.Tensor | None = None) -> str | None:
    """Why the native CPU kernel does not run these inputs; None when it does."""
    if _svs_native is None:
        return NATIVE_MISSING
    if any(f.dtype != torch.float32 for f in features) or any(
            t.dtype != torch.float32 for t in (depth_prob, depth_coords) if t is not None):
        return "features/depth are not float32"
    if pixel_index.dim() == 4 and pixel_index.shape[1] > _svs_native.MAX_VIEWS:
        return f"{pixel_index.shape[1]} views: the native kernel takes at most {_svs_native.MAX_VIEWS}"
    if len(features) > _svs_native.MAX_SCALES:
        return f"{len(features)} scales: the native kernel takes at most {_svs_native.MAX_SCALES}"
    return None


@stereo_voxel_sample_op.register_kernel("cpu")
def _cpu(features, pixel_index, depth_prob, depth_coords, grid, gate_scale):
    global _warned
    reason = native_reason(features, pixel_index, depth_prob, depth_coords)
    if reason is None:
        return _svs_native.forward(features, pixel_index, depth_prob, depth_coords, grid, gate_scale,
                                   torch.get_num_threads())  # the cores the rest of the network uses
    if _svs_native is None and not _warned:
        _warned = True
        log.warning("%s; the lift runs the torch reference", reason)
    return stereo_voxel_sample(features, pixel_index.long(), tuple(grid), depth_prob, depth_coords, gate_scale)


def _setup_context(ctx, inputs, output) -> None:
    features, pixel_index, depth_prob, depth_coords, grid, gate_scale = inputs
    ctx.save_for_backward(pixel_index, depth_prob, depth_coords, *features)
    ctx.grid, ctx.gate_scale = grid, gate_scale
    ctx.wants = [t is not None and t.requires_grad for t in (depth_prob, depth_coords, *features)]


def _backward(ctx, grad: torch.Tensor):
    pixel_index, depth_prob, depth_coords, *features = ctx.saved_tensors
    leaves = [None if t is None else t.detach().requires_grad_(want)
              for t, want in zip((depth_prob, depth_coords, *features), ctx.wants)]
    with torch.enable_grad():
        out = stereo_voxel_sample(leaves[2:], pixel_index.long(), tuple(ctx.grid), leaves[0], leaves[1],
                                  ctx.gate_scale)
        wanted = [t for t, want in zip(leaves, ctx.wants) if want]
        grads = iter(torch.autograd.grad(out, wanted, grad, allow_unused=True))
    prob_grad, coords_grad, *feature_grads = [next(grads) if want else None for want in ctx.wants]
    return feature_grads, None, prob_grad, coords_grad, None, None


stereo_voxel_sample_op.register_autograd(_backward, setup_context=_setup_context)
