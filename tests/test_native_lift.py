"""The fused native CPU lift (ops.native_lift) against the torch reference op, the
dispatch the model calls (ops.lift), and the model's logits on either path."""

from __future__ import annotations

import dataclasses
import logging
import shutil

import numpy as np
import pytest
import torch

import occdepth_ros.ops as ops
from occdepth_ros.geometry.calib import kitti_calibration, read_kitti_calib
from occdepth_ros.geometry.lookups import LiftTensors, feature_size
from occdepth_ros.inference import StereoInference
from occdepth_ros.model import OccDepth, load_preset
from occdepth_ros.ops import LIFT_ENV, NativeLiftError, lift, lift_path, stereo_voxel_sample
from occdepth_ros.ops.native_lift import (
    build_key,
    find_compiler,
    header_constants,
    native_stereo_voxel_sample,
    native_unavailable_reason,
    plugin_sources,
)
from occdepth_ros.resources import config_path

GATE_SCALE = 100.0
TILE = 512  # kTile in svs_cpu.cpp: cases below span several tiles and a partial one
KITTI_RAW_HW = (376, 1241)


@pytest.fixture(autouse=True)
def _auto_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test starts from the default dispatch, whatever the environment says."""
    monkeypatch.delenv(LIFT_ENV, raising=False)


@pytest.fixture(scope="module")
def native() -> None:
    reason = native_unavailable_reason()
    if reason is not None:
        pytest.skip(f"native lift unavailable: {reason}")


def random_inputs(seed: int, B: int, V: int, S: int, C: int, grid: tuple[int, int, int],
                  with_depth: bool, image=(23, 37), D=7, p_unseen=0.3):
    """Random features and lookups with every seen pattern: voxels seen by no view, by
    one view only, a first tile that the last view does not see at all, and depth
    coordinates inside, on the border of and outside the depth volume."""
    g = torch.Generator().manual_seed(seed)
    N = int(np.prod(grid))
    sizes = [feature_size(image, 2**s) for s in range(S)]
    features = [torch.randn(B, V, C, h, w, generator=g) for h, w in sizes]
    u = torch.randint(0, image[1], (B, V, N), generator=g)
    v = torch.randint(0, image[0], (B, V, N), generator=g)
    seen = torch.rand(B, V, N, generator=g) > p_unseen
    seen[:, :, 0] = False
    seen[:, :, 1] = False
    seen[:, 0, 1] = True
    if V > 1 and N > TILE:
        seen[:, -1, :TILE] = False  # the last view misses a whole tile
    pixel_index = torch.stack(
        [torch.where(seen, (v // 2**s) * w + u // 2**s, torch.full_like(u, -1)) for s, (_, w) in enumerate(sizes)], 2)
    if not with_depth:
        return features, pixel_index, None, None
    hd, wd = feature_size(image, 8)
    depth_prob = torch.rand(B, V, D, hd, wd, generator=g).softmax(2)
    coords = torch.rand(B, V, N, 3, generator=g) * (torch.tensor([wd, hd, D]) + 3.0) - 2.0
    coords[:, :, 2] = -2.0  # behind the camera in every view
    coords[:, 0, 3] = torch.tensor([0.0, 0.0, D - 1.0])  # exact corner
    return features, pixel_index, depth_prob, coords


CASES = [  # B, V, S, C, grid, with_depth
    (1, 1, 1, 4, (4, 5, 6), True),
    (1, 2, 4, 16, (8, 10, 9), True),
    (2, 2, 4, 32, (6, 12, 8), False),
    (2, 3, 2, 8, (9, 10, 12), True),
    (1, 4, 3, 5, (5, 7, 11), True),
    (1, 2, 1, 3, (16, 16, 8), True),
]


@pytest.mark.parametrize("B,V,S,C,grid,with_depth", CASES)
def test_native_matches_reference(native, B, V, S, C, grid, with_depth) -> None:
    features, index, prob, coords = random_inputs(sum((B, V, S, C)), B, V, S, C, grid, with_depth)
    want = stereo_voxel_sample(features, index, grid, prob, coords, GATE_SCALE)
    got = native_stereo_voxel_sample(features, index, grid, prob, coords, GATE_SCALE)
    assert got.shape == want.shape == (B, C, *grid) and got.dtype == torch.float32
    scale = want.abs().max().item()
    assert scale > 0
    # float32 both sides, different summation order: as tests/test_svs_native.py
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6 * scale)
    flat = got.reshape(B, C, -1)
    assert (flat[:, :, 0] == 0).all()  # seen by no view
    if with_depth and V > 1:
        assert (flat[:, :, 2] == 0).all()  # outside every depth volume: occ = 0


def test_thread_count_does_not_change_the_result(native) -> None:
    features, index, prob, coords = random_inputs(7, 2, 2, 4, 16, (8, 16, 16), True)
    one = native_stereo_voxel_sample(features, index, (8, 16, 16), prob, coords, num_threads=1)
    two = native_stereo_voxel_sample(features, index, (8, 16, 16), prob, coords, num_threads=2)
    assert torch.equal(one, two)  # each voxel is summed by one thread in a fixed order


def test_expanded_and_strided_inputs(native) -> None:
    """Lookups as LiftLookup.to_torch makes them (expanded over the batch, int64) and
    non-contiguous features are accepted."""
    features, index, prob, coords = random_inputs(3, 1, 2, 2, 8, (4, 8, 8), True)
    index2, coords2 = index.expand(2, -1, -1, -1), coords.expand(2, -1, -1, -1)
    feats2 = [torch.cat([f, 2 * f]).transpose(3, 4).contiguous().transpose(3, 4) for f in features]
    prob2 = prob.expand(2, -1, -1, -1, -1)
    assert not feats2[0].is_contiguous() and index2.stride(0) == 0
    got = native_stereo_voxel_sample(feats2, index2, (4, 8, 8), prob2, coords2)
    want = stereo_voxel_sample(feats2, index2, (4, 8, 8), prob2, coords2)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6 * want.abs().max().item())


def test_bad_shapes_are_rejected_before_the_library_reads_them(native) -> None:
    features, index, prob, coords = random_inputs(4, 1, 2, 2, 4, (4, 4, 4), True)
    with pytest.raises(ValueError, match="pixel_index must be"):
        native_stereo_voxel_sample(features, index[..., :-1], (4, 4, 4), prob, coords)
    with pytest.raises(ValueError, match="features\\[1\\] must be"):
        native_stereo_voxel_sample([features[0], features[1][:, :, :3]], index, (4, 4, 4), prob, coords)
    with pytest.raises(ValueError, match="depth_coords must be"):
        native_stereo_voxel_sample(features, index, (4, 4, 4), prob, coords[:, :, :-1])
    with pytest.raises(NativeLiftError, match="cosine only"):
        native_stereo_voxel_sample(features, index, (4, 4, 4), prob, coords, fusion="mean")


# -- dispatch -------------------------------------------------------------------------------
def test_dispatch_picks_native_only_where_it_is_valid(native, monkeypatch: pytest.MonkeyPatch) -> None:
    features, index, prob, coords = random_inputs(5, 1, 2, 2, 4, (4, 4, 4), True)
    with torch.inference_mode():
        assert lift_path(features, index, prob, coords).path == "native"
        assert lift_path(features, index, prob, coords, fusion="mean").path == "reference"
        assert lift_path([f.double() for f in features], index, prob.double(), coords.double()).path == "reference"
        assert lift_path(features, index, prob, coords, path="reference").path == "reference"
    with torch.no_grad():
        assert lift_path(features, index, prob, coords).path == "native"
        too_many = header_constants().max_views + 1  # beyond the library's fixed arrays
        wide = random_inputs(5, 1, too_many, 2, 4, (4, 4, 4), True)
        choice = lift_path(*wide)
        assert choice.path == "reference" and "at most" in choice.reason
        torch.testing.assert_close(lift(wide[0], wide[1], (4, 4, 4), *wide[2:]),
                                   stereo_voxel_sample(wide[0], wide[1], (4, 4, 4), *wide[2:]))
    grad_feats = [f.clone().requires_grad_() for f in features]
    assert lift_path(grad_feats, index, prob, coords).path == "reference"
    with pytest.raises(NativeLiftError, match="requires grad"):
        lift_path(grad_feats, index, prob, coords, path="native")
    monkeypatch.setenv(LIFT_ENV, "reference")
    with torch.inference_mode():
        assert lift_path(features, index, prob, coords).path == "reference"
    monkeypatch.setenv(LIFT_ENV, "fastest")
    with pytest.raises(ValueError, match="not one of"):
        lift_path(features, index, prob, coords)


def test_missing_library_falls_back_to_the_reference(monkeypatch: pytest.MonkeyPatch, caplog) -> None:
    monkeypatch.setattr(ops, "native_unavailable_reason", lambda: "no C++ compiler (test)")
    monkeypatch.setattr(ops, "_warned", [])
    features, index, prob, coords = random_inputs(6, 1, 2, 2, 4, (4, 4, 4), True)
    with torch.inference_mode(), caplog.at_level(logging.WARNING, logger="occdepth_ros.ops"):
        choice = lift_path(features, index, prob, coords)
        out = lift(features, index, (4, 4, 4), prob, coords)
    assert choice.path == "reference" and choice.native_unavailable
    assert "no C++ compiler (test)" in caplog.text
    torch.testing.assert_close(out, stereo_voxel_sample(features, index, (4, 4, 4), prob, coords))
    with pytest.raises(NativeLiftError, match="no C\\+\\+ compiler"):
        lift_path(features, index, prob, coords, path="native")


def test_no_compiler_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(NativeLiftError, match="no C\\+\\+ compiler"):
        find_compiler()


def test_build_key_follows_the_sources(tmp_path) -> None:
    src = plugin_sources()
    copy = tmp_path / "plugin"
    shutil.copytree(src.root / "include", copy / "include")
    shutil.copytree(src.root / "src", copy / "src")
    copied = type(src)(copy)
    try:
        cxx = find_compiler()
    except NativeLiftError as exc:
        pytest.skip(str(exc))
    flags = ("-O3",)
    assert build_key(copied, cxx, flags) == build_key(src, cxx, flags)  # content, not location
    assert build_key(copied, cxx, ("-O2",)) != build_key(copied, cxx, flags)
    header = copied.header
    header.write_text(header.read_text() + "\n// edited\n")
    assert build_key(copied, cxx, flags) != build_key(src, cxx, flags)


def test_header_constants_bound_the_dispatch() -> None:
    consts = header_constants()
    assert consts.max_views >= 2 and consts.max_scales >= 4  # the released model fits
    assert consts.status["kSvsOk"] == 0


# -- the model on either path ----------------------------------------------------------------
@pytest.fixture(scope="module")
def compact_engine() -> StereoInference:
    torch.manual_seed(0)
    engine = StereoInference(OccDepth(load_preset("compact")))
    calib = read_kitti_calib(config_path("calib", "kitti_odometry_00-02.txt"))
    engine.set_calibration(kitti_calibration(calib, KITTI_RAW_HW))
    return engine


def test_model_logits_native_equal_reference(native, compact_engine: StereoInference,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    model = compact_engine.backend.model
    assert model.lift_op is lift
    assert not any("lift" in k for k in model.state_dict())  # not a module: the state dict is official
    rng = np.random.default_rng(0)
    left = rng.integers(0, 256, (*KITTI_RAW_HW, 3), dtype=np.uint8)
    images = compact_engine.prepare([left, np.roll(left, -12, axis=1)])
    lookups = compact_engine.rig_lookup.to_torch()
    logits = {}
    for path in ("native", "reference"):
        monkeypatch.setenv(LIFT_ENV, path)  # "native" raises if that path cannot run
        with torch.inference_mode():
            logits[path] = model(images, lookups)["ssc_logit"]
    scale = logits["reference"].abs().max().item()
    torch.testing.assert_close(logits["native"], logits["reference"], rtol=1e-4, atol=1e-4 * scale)


def test_training_forward_uses_the_reference_and_gradients_flow() -> None:
    """With grad enabled the dispatch runs the torch op, so training is unchanged."""
    cfg = load_preset("compact")
    cfg = dataclasses.replace(cfg, image=dataclasses.replace(cfg.image, height=64, width=192),
                              grid=dataclasses.replace(cfg.grid, dims=(32, 32, 16), voxel_size=1.6))
    torch.manual_seed(0)
    model = OccDepth(cfg).train()
    paths = []

    def spy(features, pixel_index, grid_dims, **kwargs):
        paths.append(lift_path(features, pixel_index, kwargs["depth_prob"], kwargs["depth_coords"],
                               kwargs["fusion"]).path)
        return lift(features, pixel_index, grid_dims, **kwargs)

    model.lift_op = spy
    n = int(np.prod(cfg.grid.feature_dims))
    h, w = cfg.image.height, cfg.image.width
    g = torch.Generator().manual_seed(1)
    index = torch.stack([torch.randint(-1, fh * fw, (1, 2, n), generator=g)
                         for fh, fw in (feature_size((h, w), s) for s in cfg.sfa_scales)], 2)
    hd, wd = feature_size((h, w), cfg.depth.feature_scale)
    coords = torch.rand(1, 2, n, 3, generator=g) * torch.tensor([wd, hd, cfg.depth.n_bins])
    images = torch.randn(1, 2, 3, h, w, requires_grad=True)
    model(images, LiftTensors(index, coords, torch.full((1, 2, 1), 2.0)))["ssc_logit"].square().mean().backward()
    assert paths == ["reference"]
    assert images.grad[:, 0].abs().sum() > 0
    # through the lift's depth gate into the depth net, too
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.flosp_depth.parameters())
