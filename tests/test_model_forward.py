"""Forward passes: shapes of every preset, the released preset on a full KITTI pair,
batch consistency and the official training-mode gradient split."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from occdepth_ros.geometry.calib import kitti_calibration, read_kitti_calib
from occdepth_ros.geometry.lookups import LiftTensors, feature_size
from occdepth_ros.inference import StereoInference
from occdepth_ros.model import OccDepth, load_preset, preset_names
from occdepth_ros.resources import config_path


def meta_lift(cfg, batch: int = 1) -> LiftTensors:
    n = int(np.prod(cfg.grid.feature_dims))
    s = len(cfg.sfa_scales)
    return LiftTensors(torch.zeros(batch, cfg.n_views, s, n, dtype=torch.int64),
                       torch.zeros(batch, cfg.n_views, n, 3), torch.ones(batch, cfg.n_views, 1))


@pytest.mark.parametrize("preset", preset_names())
def test_forward_shapes_of_every_preset(preset: str) -> None:
    cfg = load_preset(preset)
    with torch.device("meta"):
        model = OccDepth(cfg).eval()
        out = model(torch.zeros(1, cfg.n_views, 3, cfg.image.height, cfg.image.width), meta_lift(cfg))
    X, Y, Z = cfg.grid.dims
    assert out["ssc_logit"].shape == (1, cfg.n_classes, X, Y, Z)
    if cfg.cascade_head:
        assert out["occ_logit"].shape == (1, 2, X, Y, Z)
    if cfg.context_prior:
        fx, fy, fz = cfg.grid.feature_dims
        n_l3 = (fx // 4) * (fy // 4) * (fz // 4)
        assert out["P_logits"].shape == (1, cfg.n_relations, n_l3 // 8, n_l3)
    if cfg.depth.enabled:
        h, w = feature_size((cfg.image.height, cfg.image.width), cfg.depth.feature_scale)
        assert out["depth_logits"].shape == (1, cfg.n_views, cfg.depth.n_bins, h, w)


def small_config():
    cfg = load_preset("compact")
    return dataclasses.replace(
        cfg,
        image=dataclasses.replace(cfg.image, height=64, width=192),
        grid=dataclasses.replace(cfg.grid, dims=(32, 32, 16), voxel_size=1.6),
    )


def random_lift(cfg, batch: int, seed: int) -> LiftTensors:
    g = torch.Generator().manual_seed(seed)
    n = int(np.prod(cfg.grid.feature_dims))
    H, W = cfg.image.height, cfg.image.width
    sizes = [feature_size((H, W), s) for s in cfg.sfa_scales]
    idx = torch.stack([torch.randint(-1, h * w, (batch, cfg.n_views, n), generator=g) for h, w in sizes], 2)
    hd, wd = feature_size((H, W), cfg.depth.feature_scale)
    lim = torch.tensor([wd, hd, cfg.depth.n_bins], dtype=torch.float32)
    coords = torch.rand(batch, cfg.n_views, n, 3, generator=g) * lim
    return LiftTensors(idx, coords, torch.full((batch, cfg.n_views, 1), 2.0))


def test_batch_items_are_independent() -> None:
    cfg = small_config()
    torch.manual_seed(0)
    model = OccDepth(cfg).eval()
    images = torch.randn(2, 2, 3, cfg.image.height, cfg.image.width)
    lift = random_lift(cfg, 2, seed=1)
    with torch.inference_mode():
        both = model(images, lift)["ssc_logit"]
        one = model(images[1:], LiftTensors(*(t[1:] for t in lift)))["ssc_logit"]
    torch.testing.assert_close(both[1:], one, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(both[0], both[1])


def test_training_gradients_follow_the_left_view_only() -> None:
    """Official training: the right view's 2D features are computed under no_grad."""
    cfg = small_config()
    torch.manual_seed(0)
    model = OccDepth(cfg).train()
    images = torch.randn(1, 2, 3, cfg.image.height, cfg.image.width, requires_grad=True)
    out = model(images, random_lift(cfg, 1, seed=2))
    out["ssc_logit"].square().mean().backward()
    assert images.grad[:, 0].abs().sum() > 0
    assert images.grad[:, 1].abs().sum() == 0
    model_b = OccDepth(dataclasses.replace(cfg, share_2d_backbone_gradient=False)).train()
    images.grad = None
    model_b(images, random_lift(cfg, 1, seed=2))["ssc_logit"].square().mean().backward()
    assert images.grad[:, 1].abs().sum() > 0


def test_decoder_stops_at_the_finest_needed_scale() -> None:
    cfg = small_config()
    torch.manual_seed(0)
    net = OccDepth(cfg).eval().net_rgb
    x = torch.randn(1, 3, cfg.image.height, cfg.image.width)
    with torch.inference_mode():
        full = net(x, (1, 2, 4, 8))
        coarse = net(x, (8,))
    assert set(coarse) == {8}
    torch.testing.assert_close(coarse[8], full[8])


def test_released_preset_runs_a_full_kitti_pair() -> None:
    """kitti_b3_f32 on a 1241x376 KITTI-sized pair (cropped to 370x1220), on the CPU."""
    cfg = load_preset("kitti_b3_f32")
    torch.manual_seed(0)
    engine = StereoInference(OccDepth(cfg))
    calib = read_kitti_calib(config_path("calib", "kitti_odometry_00-02.txt"))
    engine.set_calibration(kitti_calibration(calib, (376, 1241)))
    rng = np.random.default_rng(0)
    left = rng.integers(0, 256, (376, 1241, 3), dtype=np.uint8)
    right = np.roll(left, -20, axis=1)
    pred = engine.predict([left, right])  # one pass: ~20 s on 2 cores
    assert pred.labels.shape == (256, 256, 32) and pred.labels.dtype == np.uint8
    assert np.isfinite(pred.confidence).all()
    assert (pred.confidence >= 1 / 20 - 1e-6).all() and (pred.confidence <= 1 + 1e-6).all()
