"""The OAD prior read through the depth loss's own labels.

A depth map of one constant depth becomes depth-loss labels (one uniform bin), those
labels become a one-hot depth-probability volume, and the lift's sampler turns it into a
per-voxel prior. With ``sampler_bins: uniform`` the prior is high exactly on the voxels
whose depth falls in the labelled bin; with the official ``lid`` it is high on much
nearer voxels (the released code's quirk, kept for official weights).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from occdepth_ros.geometry.calib import kitti_stereo_rig, read_kitti_calib
from occdepth_ros.geometry.lookups import feature_size
from occdepth_ros.model.lift_lookup import build_lift_lookup
from occdepth_ros.model.config import ConfigError, load_preset
from occdepth_ros.ops.stereo_voxel_sample import occupancy_prior
from occdepth_ros.resources import config_path
from occdepth_ros.train.targets import depth_labels

NET_HW = (370, 1220)
SURFACE_M = 20.3  # uniform 0.5 m bin 36: [20.0, 20.5)


def _prior_and_depth(sampler_bins: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Prior (N,), each camera's depth of each voxel centre (2, N), and an interior mask (N,)."""
    cfg = load_preset("kitti_b3_f32")
    cfg = dataclasses.replace(cfg, depth=dataclasses.replace(cfg.depth, sampler_bins=sampler_bins))
    rig = kitti_stereo_rig(read_kitti_calib(config_path("calib", "kitti_odometry_00-02.txt")), NET_HW)
    lookup = build_lift_lookup(rig, cfg)
    d = cfg.depth
    h, w = feature_size(NET_HW, d.feature_scale)
    labels, fg = depth_labels(np.full(NET_HW, SURFACE_M, np.float32), d.d_min, d.d_max, d.d_step,
                              d.feature_scale, (h, w))
    assert fg.all() and (labels == 36).all()
    prob = np.zeros((1, 2, d.n_bins, h * w), np.float32)
    prob[0, :, labels, np.arange(h * w)] = 1.0
    coords = torch.from_numpy(lookup.depth_coords)[None]
    prior = occupancy_prior(torch.from_numpy(prob.reshape(1, 2, d.n_bins, h, w)), coords)[0].numpy()

    # Voxel centres by hand (0.4 m feature grid, x-major) in the left camera.
    g = cfg.grid
    idx = np.stack(np.meshgrid(*(np.arange(n) for n in g.feature_dims), indexing="ij"), -1).reshape(-1, 3)
    centres = np.asarray(g.origin) + (idx + 0.5) * g.feature_voxel_size
    homo = np.c_[centres, np.ones(len(centres))]
    depth = np.stack([(homo @ cam.T_grid_to_cam.T)[:, 2] for cam in rig.cameras])  # KITTI: ~1 mm apart
    # Inside both views' maps by at least a pixel, so x/y interpolation reads only labelled pixels.
    xy = lookup.depth_coords[..., :2]
    interior = ((xy >= 0) & (xy <= np.array([w - 1, h - 1]))).all(axis=(0, 2))
    return prior, depth, interior


def test_uniform_sampler_reads_the_labelled_bin_at_the_voxels_own_depth() -> None:
    prior, depths, interior = _prior_and_depth("uniform")
    # Per view, the hat function of linear interpolation over channels (1 at the bin
    # centre, 20.25 m); the prior is the mean over the two views.
    expected = np.clip(1.0 - np.abs((depths - 2.0) / 0.5 - 0.5 - 36), 0.0, None).mean(0)
    np.testing.assert_allclose(prior[interior], expected[interior], atol=1e-5)
    depth = depths[0]
    in_bin = np.floor((depth - 2.0) / 0.5) == 36
    near_edge = np.abs(np.abs(depth - 20.25) - 0.25) < 1e-2
    sel = interior & ~near_edge
    assert in_bin[sel].sum() > 100
    assert np.array_equal(prior[sel] > 0.5, in_bin[sel])


def test_lid_sampler_reads_the_labelled_bin_on_nearer_voxels() -> None:
    prior, depths, interior = _prior_and_depth("lid")
    depth = depths[0]
    high = interior & (prior > 0.5)
    assert high.sum() > 100
    # LID index 36 (x 103/104 for the (D - 1) normalisation) sits at 2 + delta*i(i+1)/2:
    delta = 2 * (54.0 - 2.0) / (104 * 105)
    i = (36 + 0.5) * 103 / 104
    lid_depth = 2.0 + delta * i * (i + 1) / 2  # 8.39 m, where the surface is at 20.3 m
    assert depth[high].min() > lid_depth - 0.5 and depth[high].max() < lid_depth + 0.5
    assert not (high & (np.abs(depth - SURFACE_M) < 1.0)).any()
    assert math.isclose(lid_depth, 8.39, abs_tol=0.01)


def test_sampler_bins_is_validated() -> None:
    cfg = load_preset("compact")
    with pytest.raises(ConfigError, match="sampler_bins"):
        dataclasses.replace(cfg, depth=dataclasses.replace(cfg.depth, sampler_bins="log"))
