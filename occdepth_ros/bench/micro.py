"""Micro-benchmarks: the lift (fused native vs the torch reference) on each preset's
shapes, and the node's message building at fixed numbers of occupied voxels."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..classes import ClassSet, load_class_set
from ..geometry.lookups import feature_size
from ..model.config import GridConfig, load_preset
from ..node.voxel_outputs import bev_occupancy, marker_groups, occupied_lut, occupied_voxels, voxel_cloud
from ..ops import native_reason, stereo_voxel_sample, stereo_voxel_sample_op
from ..geometry.calib import shipped_kitti_calibration
from .frames import lookup_for
from .measure import Stat, measure

MESSAGE_KINDS = ("PointCloud2", "MarkerArray", "OccupancyGrid")
MESSAGE_COUNTS = (10_000, 100_000, 200_000)
# The released model's output grid: a KITTI scene fills 100-200k of its 2.1M voxels.
MESSAGE_GRID_PRESET = "kitti_b3_f32"


# -- lift --------------------------------------------------------------------------------------
@dataclass
class LiftResult:
    preset: str
    shapes: dict[str, Any]
    reference: Stat
    fused: Stat
    max_abs_diff: float
    threads: int

    @property
    def ratio(self) -> float:
        return self.reference.p50 / self.fused.p50

    def to_dict(self) -> dict[str, Any]:
        return {"preset": self.preset, "shapes": self.shapes, "reference": self.reference.to_dict(),
                "fused": self.fused.to_dict(), "ratio": round(self.ratio, 3),
                "max_abs_diff": self.max_abs_diff, "threads": self.threads}


def lift_inputs(preset: str, seed: int = 0) -> tuple[Any, list[torch.Tensor], Any, torch.Tensor]:
    """Random features and depth probabilities of the preset's shapes, and the real
    lookups of the KITTI odometry calibration fitted to its input size."""
    cfg = load_preset(preset)
    lookups = lookup_for(cfg, shipped_kitti_calibration()).to_torch()
    g = torch.Generator().manual_seed(seed)
    hw = (cfg.image.height, cfg.image.width)
    feats = [torch.randn(1, cfg.n_views, cfg.feature, *feature_size(hw, s), generator=g) for s in cfg.sfa_scales]
    hd, wd = feature_size(hw, cfg.depth.feature_scale)
    depth_prob = torch.randn(1, cfg.n_views, cfg.depth.n_bins, hd, wd, generator=g).softmax(2)
    return cfg, feats, lookups, depth_prob


def bench_lift(preset: str, warmup: int, iters: int, budget_s: float | None) -> LiftResult:
    cfg, feats, lk, depth_prob = lift_inputs(preset)

    reason = native_reason(feats, lk.pixel_index, depth_prob, lk.depth_coords)
    if reason is not None:
        raise RuntimeError(f"the lift benchmark needs the native CPU kernel: {reason}")
    grid = cfg.grid.feature_dims

    def run(path: str) -> torch.Tensor:
        with torch.inference_mode():
            if path == "reference":
                return stereo_voxel_sample(feats, lk.pixel_index, grid, depth_prob, lk.depth_coords,
                                           cfg.depth.gate_scale)
            return stereo_voxel_sample_op(feats, lk.pixel_index, depth_prob, lk.depth_coords, list(grid),
                                          cfg.depth.gate_scale)

    diff = float((run("native") - run("reference")).abs().max())
    shapes = {"B": 1, "V": cfg.n_views, "S": len(cfg.sfa_scales), "C": cfg.feature,
              "grid": list(cfg.grid.feature_dims), "N": int(np.prod(cfg.grid.feature_dims)),
              "feature_hw": [list(f.shape[3:]) for f in feats], "depth": list(depth_prob.shape[2:]),
              "seen_fraction": round(float((lk.pixel_index[0, :, 0] >= 0).float().mean()), 4)}
    reference = measure("reference (torch gather per scale)", lambda: run("reference"), warmup, iters, budget_s)
    fused = measure("fused (native)", lambda: run("native"), warmup, iters, budget_s)
    return LiftResult(preset, shapes, reference, fused, diff, torch.get_num_threads())


# -- messages ----------------------------------------------------------------------------------
@dataclass
class MessageResult:
    kind: str
    occupied: int
    grid: str
    stat: Stat

    def to_dict(self) -> dict[str, Any]:
        return {**self.stat.to_dict(), "kind": self.kind, "occupied": self.occupied, "grid": self.grid}


def synthetic_labels(grid: GridConfig, classes: ClassSet, occupied: int, seed: int = 0) -> np.ndarray:
    """A label grid with exactly ``occupied`` occupied voxels (random places and
    classes), the rest empty."""
    n = int(np.prod(grid.dims))
    if occupied > n:
        raise ValueError(f"{occupied} occupied voxels do not fit a {grid.dims} grid")
    rng = np.random.default_rng(seed)
    occupying = np.flatnonzero(occupied_lut(classes)[: classes.n_classes])
    labels = np.full(n, classes.empty_index, dtype=np.uint8)
    labels[rng.choice(n, occupied, replace=False)] = rng.choice(occupying, occupied).astype(np.uint8)
    return labels.reshape(grid.dims)


def bench_messages(grid_preset: str, counts: tuple[int, ...], warmup: int, iters: int,
                   budget_s: float | None) -> list[MessageResult]:
    """Each message from the label grid, as the node builds it (node defaults: no
    confidence, unseen voxels kept, markers capped at ``marker_max_voxels``)."""
    from ..node.messages import make_header, marker_array, occupancy_grid, point_cloud2
    from ..node.params import NodeParams

    cfg = load_preset(grid_preset)
    grid, classes, params = cfg.grid, load_class_set(cfg.class_set), NodeParams()
    header = make_header(1, params.frame_id)
    seen = np.ones(grid.dims, dtype=bool)
    results = []
    for count in counts:
        labels = synthetic_labels(grid, classes, count)
        builders = {
            "PointCloud2": lambda: point_cloud2(voxel_cloud(occupied_voxels(labels, grid, classes), classes), header),
            "MarkerArray": lambda: marker_array(
                marker_groups(occupied_voxels(labels, grid, classes), classes, params.marker_max_voxels),
                header, grid.voxel_size),
            "OccupancyGrid": lambda: occupancy_grid(
                bev_occupancy(labels, grid, classes, params.occupancy_min_z, params.occupancy_max_z, seen=seen,
                              free_classes=params.free_classes), header),
        }
        for kind in MESSAGE_KINDS:
            stat = measure(kind, builders[kind], warmup, iters, budget_s)
            if kind == "MarkerArray" and count > params.marker_max_voxels:
                stat.note = f"capped at marker_max_voxels={params.marker_max_voxels} (node default)"
            results.append(MessageResult(kind, count, grid_preset, stat))
    return results
