"""Every implementation of StereoVoxelSample present here (docs/stereo_voxel_sample.md)
against a slow float64 implementation written from the spec, on random inputs with every
edge case of the contract and on cases computed by hand:

- ``reference``: the PyTorch reference (ops/stereo_voxel_sample.py), float32;
- ``op``: ``torch.ops.occdepth.stereo_voxel_sample``, what the model calls (on the CPU:
  the native kernel where it was built);
- ``native`` and ``native-per-voxel``: the C++ extension's tiled fast path and the
  header's per-voxel loop (the CUDA kernel's CPU twin), called directly;
- ``onnx-function``: the exporter's ONNX model-local function, run by ONNX Runtime.

Then what is specific to each: the native kernel's threads, layouts, errors and fallback,
the op's gradients and the model's logits through it, and the CUDA kernel's compile.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import shutil
import subprocess
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch

from helpers.lift_cases import CASES, GATE_SCALE, lift_slow, make_case
from helpers.lift_graph import single_op_model
from occdepth_ros.geometry.calib import kitti_calibration, read_kitti_calib
from occdepth_ros.geometry.lookups import LiftTensors, feature_size
from occdepth_ros.inference import StereoInference
from occdepth_ros.model import OccDepth, load_preset
from occdepth_ros.ops import lift, native_reason, stereo_voxel_sample, stereo_voxel_sample_op, torch_op
from occdepth_ros.resources import config_path

ort = pytest.importorskip("onnxruntime", reason="onnxruntime is in requirements.txt; missing means setup is broken")

PLUGIN = Path(__file__).resolve().parents[1] / "export" / "plugin"
NATIVE = torch_op._svs_native
NO_NATIVE = f"{torch_op.NATIVE_MISSING}"
TILE = 512  # kTile in svs_cpu.cpp: the random cases below span several tiles and a partial one
THREADS = 2
KITTI_RAW_HW = (376, 1241)
CUDA_ARCHS = ["87", "86", "89", "90"]  # Orin, Ampere desktop, Ada, Hopper
NVCC_TIMEOUT_S = 900


def _torch_args(features, index, prob, coords):
    t = torch.from_numpy
    return ([t(f) for f in features], t(index), None if prob is None else t(prob), None if coords is None else t(coords))


def run_reference(features, index, grid, prob, coords, gate) -> np.ndarray:
    f, i, p, c = _torch_args(features, index.astype(np.int64), prob, coords)
    return stereo_voxel_sample(f, i, grid, p, c, gate).numpy()


def run_op(features, index, grid, prob, coords, gate) -> np.ndarray:
    with torch.inference_mode():
        return stereo_voxel_sample_op(*_torch_args(features, index, prob, coords), list(grid), gate).numpy()


def run_native(features, index, grid, prob, coords, gate) -> np.ndarray:
    return NATIVE.forward(*_torch_args(features, index, prob, coords), list(grid), gate, THREADS).numpy()


def run_native_per_voxel(features, index, grid, prob, coords, gate) -> np.ndarray:
    return NATIVE.forward_per_voxel(*_torch_args(features, index, prob, coords), list(grid), gate).numpy()


def run_onnx_function(features, index, grid, prob, coords, gate) -> np.ndarray:
    gated = prob is not None
    model = single_op_model(index.shape[1], len(features), gated, grid, gate)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    feeds = {f"f{s}": f for s, f in enumerate(features)} | {"index": index.astype(np.int32)}
    if gated:
        feeds |= {"prob": prob, "coords": coords}
    return session.run(None, feeds)[0]


IMPLEMENTATIONS: dict[str, Callable[..., np.ndarray]] = {
    "reference": run_reference, "op": run_op, "native": run_native, "native-per-voxel": run_native_per_voxel,
    "onnx-function": run_onnx_function,
}


@pytest.fixture(params=list(IMPLEMENTATIONS))
def implementation(request) -> Callable[..., np.ndarray]:
    if request.param.startswith("native") and NATIVE is None:
        pytest.skip(NO_NATIVE)
    return IMPLEMENTATIONS[request.param]


def check(got: np.ndarray, want: np.ndarray) -> None:
    """Float32 against float64: rtol 1e-5, plus an atol at 1e-6 of the output's scale for
    entries that cancel to near zero."""
    assert got.shape == want.shape and got.dtype == np.float32
    scale = float(np.abs(want).max())
    assert scale > 0
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6 * scale)


# -- every implementation against the float64 loop --------------------------------------------
@pytest.mark.parametrize("B,V,S,C,with_depth,zero_view0", CASES)
def test_matches_float64(implementation, B, V, S, C, with_depth, zero_view0) -> None:
    rng = np.random.default_rng([B, V, S, C, int(with_depth), int(zero_view0)])
    features, index, prob, coords, grid = make_case(rng, B, V, S, C, zero_view0)
    if not with_depth:
        prob = coords = None
    got = implementation(features, index, grid, prob, coords, GATE_SCALE)
    check(got, lift_slow(features, index, grid, prob, coords))
    flat = got.reshape(B, C, -1)
    assert (flat[:, :, 0] == 0).all()  # seen by no view
    if with_depth and V > 1:
        assert (flat[:, :, 9] == 0).all()  # covered by no depth volume


def test_every_seen_pattern_by_hand(implementation) -> None:
    """Two views, one scale, 1x1 feature maps: every seen/unseen combination by hand."""
    f0 = np.array([3.0, 4.0], dtype=np.float32)  # |f0| = 5
    f1 = np.array([4.0, 3.0], dtype=np.float32)  # |f1| = 5, f0.f1 = 24 -> cos = 0.96
    feats = [np.stack([f0, f1])[None, :, :, None, None]]  # (1, 2, 2, 1, 1)
    # voxels: both seen, left only, right only, neither
    index = np.array([[[[0, 0, -1, -1]], [[0, -1, 0, -1]]]], dtype=np.int32)  # (1, 2, 1, 4)
    out = implementation(feats, index, (1, 1, 4), None, None, GATE_SCALE)[0, :, 0, 0, :]
    np.testing.assert_allclose(out[:, 0], 0.96 * (f0 + f1) / 2, rtol=1e-6)
    np.testing.assert_allclose(out[:, 1], f0 / 2, rtol=1e-6)
    np.testing.assert_allclose(out[:, 2], f1 / 2, rtol=1e-6)
    np.testing.assert_allclose(out[:, 3], 0.0)


def test_occupancy_prior_by_hand(implementation) -> None:
    """1 feature, D=2 bins on a 1x2 map; view 0 samples half-way, view 1 half outside."""
    feats = [np.ones((1, 2, 1, 1, 1), dtype=np.float32)]
    index = np.zeros((1, 2, 1, 1), dtype=np.int32)
    prob = np.zeros((1, 2, 2, 1, 2), dtype=np.float32)
    prob[0, 0, 0, 0] = [0.2, 0.6]  # bin 0, columns 0 and 1
    prob[0, 1, 1, 0] = [0.8, 0.4]  # bin 1
    coords = np.array([[[[0.5, 0.0, 0.0]], [[-0.5, 0.0, 1.0]]]], dtype=np.float32)  # (1, 2, 1, 3)
    # view 0: (0.2 + 0.6) / 2 = 0.4 with weight 1; view 1: only column 0 in range, weight 0.5, 0.5 * 0.8 = 0.4
    # occ = (0.4 + 0.4) / (1 + 0.5); SFA of identical unit features seen by both: cos 1 -> (1 + 1) / 2 = 1
    got = implementation(feats, index, (1, 1, 1), prob, coords, GATE_SCALE).item()
    assert got == pytest.approx(0.8 / 1.5 * 100.0, rel=1e-6)


def test_zero_feature_gives_zero_cosine_not_nan(implementation) -> None:
    feats = [np.zeros((1, 2, 3, 1, 1), dtype=np.float32)]
    feats[0][0, 1, :, 0, 0] = [1.0, 2.0, 2.0]
    index = np.zeros((1, 2, 1, 1), dtype=np.int32)
    out = implementation(feats, index, (1, 1, 1), None, None, GATE_SCALE)
    assert np.isfinite(out).all() and np.abs(out).max() == 0.0


def test_gate_scale_reaches_the_result(implementation) -> None:
    """gate_scale is the caller's (the ONNX node's attribute), not a baked-in constant."""
    features, index, prob, coords, grid = make_case(np.random.default_rng(5), 1, 2, 2, 4)
    one, three = (implementation(features, index, grid, prob, coords, scale) for scale in (1.0, 3.0))
    np.testing.assert_allclose(three, 3.0 * one, rtol=1e-5, atol=1e-7)


# -- the native kernel ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def native() -> None:
    if NATIVE is None:
        pytest.skip(NO_NATIVE)


def random_inputs(seed: int, B: int, V: int, S: int, C: int, grid: tuple[int, int, int],
                  with_depth: bool = True, image=(23, 37), D=7, p_unseen=0.3):
    """Random torch inputs over several voxel tiles: voxels seen by no view, by one view
    only, a first tile the last view does not see at all, coordinates outside the volume."""
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


@pytest.mark.parametrize("B,V,S,C,grid,with_depth", [
    (1, 2, 4, 16, (8, 10, 9), True),
    (2, 2, 4, 32, (6, 12, 8), False),
    (2, 3, 2, 8, (9, 10, 12), True),
    (1, 4, 3, 5, (5, 7, 11), True),
])
def test_native_over_several_tiles(native, B, V, S, C, grid, with_depth) -> None:
    features, index, prob, coords = random_inputs(sum((B, V, S, C)), B, V, S, C, grid, with_depth)
    want = stereo_voxel_sample(features, index, grid, prob, coords, GATE_SCALE)
    with torch.inference_mode():
        got = stereo_voxel_sample_op(features, index, prob, coords, list(grid), GATE_SCALE)
    assert got.shape == want.shape == (B, C, *grid) and got.dtype == torch.float32
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6 * want.abs().max().item())


def test_thread_count_does_not_change_the_result(native) -> None:
    features, index, prob, coords = random_inputs(7, 2, 2, 4, 16, (8, 16, 16))
    one = NATIVE.forward(features, index, prob, coords, [8, 16, 16], GATE_SCALE, 1)
    two = NATIVE.forward(features, index, prob, coords, [8, 16, 16], GATE_SCALE, 2)
    assert torch.equal(one, two)  # each voxel is summed by one thread in a fixed order


def test_expanded_and_strided_inputs(native) -> None:
    """Lookups as LiftLookup.to_torch makes them (expanded over the batch, int64) and
    non-contiguous features are accepted."""
    features, index, prob, coords = random_inputs(3, 1, 2, 2, 8, (4, 8, 8))
    index2, coords2 = index.expand(2, -1, -1, -1), coords.expand(2, -1, -1, -1)
    feats2 = [torch.cat([f, 2 * f]).transpose(3, 4).contiguous().transpose(3, 4) for f in features]
    prob2 = prob.expand(2, -1, -1, -1, -1)
    assert not feats2[0].is_contiguous() and index2.stride(0) == 0
    got = NATIVE.forward(feats2, index2, prob2, coords2, [4, 8, 8], GATE_SCALE, THREADS)
    want = stereo_voxel_sample(feats2, index2, (4, 8, 8), prob2, coords2)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6 * want.abs().max().item())


def test_bad_inputs_are_rejected_before_the_kernel_reads_them(native) -> None:
    features, index, prob, coords = random_inputs(4, 1, 2, 2, 4, (4, 4, 4))
    grid = [4, 4, 4]
    with pytest.raises(ValueError, match="pixel_index must be"):
        NATIVE.forward(features, index[..., :-1], prob, coords, grid, GATE_SCALE, 1)
    with pytest.raises(ValueError, match=r"features\[1\] must be"):
        NATIVE.forward([features[0], features[1][:, :, :3]], index, prob, coords, grid, GATE_SCALE, 1)
    with pytest.raises(ValueError, match="depth_coords must be"):
        NATIVE.forward(features, index, prob, coords[:, :, :-1], grid, GATE_SCALE, 1)
    with pytest.raises(ValueError, match="go together"):
        NATIVE.forward(features, index, prob, None, grid, GATE_SCALE, 1)
    with pytest.raises(ValueError, match="float32"):
        NATIVE.forward([f.double() for f in features], index, prob, coords, grid, GATE_SCALE, 1)
    wide = random_inputs(4, 1, NATIVE.MAX_VIEWS + 1, 1, 4, (4, 4, 4))  # the library's own check
    with pytest.raises(RuntimeError, match="kSvsTooManyViews"):
        NATIVE.forward(*wide, grid, GATE_SCALE, 1)
    with pytest.raises(RuntimeError, match="kSvsTooManyViews"):
        NATIVE.forward_per_voxel(*wide, grid, GATE_SCALE)


def test_op_takes_the_native_kernel_only_where_it_applies(native) -> None:
    features, index, prob, coords = random_inputs(5, 1, 2, 2, 4, (4, 4, 4))
    assert native_reason(features, index, prob, coords) is None
    assert "float32" in native_reason([f.double() for f in features], index, prob.double(), coords.double())
    wide = random_inputs(5, 1, NATIVE.MAX_VIEWS + 1, 2, 4, (4, 4, 4))
    assert "at most" in native_reason(*wide)
    with torch.inference_mode():  # beyond the native limits, and float64: the reference's numbers
        torch.testing.assert_close(lift(wide[0], wide[1], (4, 4, 4), *wide[2:]),
                                   stereo_voxel_sample(wide[0], wide[1], (4, 4, 4), *wide[2:]), rtol=0, atol=0)
        doubles = [f.double() for f in features], index, prob.double(), coords.double()
        torch.testing.assert_close(lift(doubles[0], index, (4, 4, 4), *doubles[2:]),
                                   stereo_voxel_sample(doubles[0], index, (4, 4, 4), *doubles[2:]), rtol=0, atol=0)


def test_without_the_extension_the_op_runs_the_reference_and_says_so(monkeypatch, caplog) -> None:
    monkeypatch.setattr(torch_op, "_svs_native", None)
    monkeypatch.setattr(torch_op, "NATIVE_MISSING", "the native CPU kernel is not built (test)")
    monkeypatch.setattr(torch_op, "_warned", False)
    features, index, prob, coords = random_inputs(6, 1, 2, 2, 4, (4, 4, 4))
    with torch.inference_mode(), caplog.at_level(logging.WARNING, logger="occdepth_ros.ops.torch_op"):
        first = lift(features, index, (4, 4, 4), prob, coords)
        lift(features, index, (4, 4, 4), prob, coords)
    assert native_reason(features, index, prob, coords) == "the native CPU kernel is not built (test)"
    warnings = [r for r in caplog.records if "not built (test)" in r.getMessage()]
    assert len(warnings) == 1 and "\n" not in warnings[0].getMessage()  # one line, once
    torch.testing.assert_close(first, stereo_voxel_sample(features, index, (4, 4, 4), prob, coords), rtol=0, atol=0)


# -- the op under autograd, and the model through it --------------------------------------
def test_op_gradients_are_the_references() -> None:
    features, index, prob, coords = random_inputs(8, 2, 2, 3, 6, (6, 8, 8))
    leaves = {"op": [f.clone().requires_grad_() for f in features] + [prob.clone().requires_grad_()],
              "reference": [f.clone().requires_grad_() for f in features] + [prob.clone().requires_grad_()]}
    weight = torch.randn(2, 6, 6, 8, 8, generator=torch.Generator().manual_seed(9))
    for name, fn in (("op", lift), ("reference", stereo_voxel_sample)):
        *feats, p = leaves[name]
        (fn(feats, index, (6, 8, 8), p, coords) * weight).sum().backward()
    for got, want in zip(leaves["op"], leaves["reference"]):
        assert want.grad.abs().max() > 0
        torch.testing.assert_close(got.grad, want.grad, rtol=0, atol=0)  # the same backward, same inputs


@pytest.fixture(scope="module")
def compact_engine() -> StereoInference:
    torch.manual_seed(0)
    engine = StereoInference(OccDepth(load_preset("compact")))
    calib = read_kitti_calib(config_path("calib", "kitti_odometry_00-02.txt"))
    engine.set_calibration(kitti_calibration(calib, KITTI_RAW_HW))
    return engine


def test_model_logits_through_the_op_equal_the_reference(native, compact_engine, monkeypatch) -> None:
    model = compact_engine.backend.model
    assert model.lift_op is lift
    assert not any("lift" in k for k in model.state_dict())  # not a module: the state dict is official
    rng = np.random.default_rng(0)
    left = rng.integers(0, 256, (*KITTI_RAW_HW, 3), dtype=np.uint8)
    images = compact_engine.prepare([left, np.roll(left, -12, axis=1)])
    lookups = compact_engine.rig_lookup.to_torch()
    logits = {}
    for name, fn in (("op", lift), ("reference", stereo_voxel_sample)):
        monkeypatch.setattr(model, "lift_op", fn)
        with torch.inference_mode():
            logits[name] = model(images, lookups)["ssc_logit"]
    scale = logits["reference"].abs().max().item()
    torch.testing.assert_close(logits["op"], logits["reference"], rtol=1e-4, atol=1e-4 * scale)


def test_training_gradients_flow_through_the_op() -> None:
    cfg = load_preset("compact")
    cfg = dataclasses.replace(cfg, image=dataclasses.replace(cfg.image, height=64, width=192),
                              grid=dataclasses.replace(cfg.grid, dims=(32, 32, 16), voxel_size=1.6))
    torch.manual_seed(0)
    model = OccDepth(cfg).train()
    n = int(np.prod(cfg.grid.feature_dims))
    h, w = cfg.image.height, cfg.image.width
    g = torch.Generator().manual_seed(1)
    index = torch.stack([torch.randint(-1, fh * fw, (1, 2, n), generator=g)
                         for fh, fw in (feature_size((h, w), s) for s in cfg.sfa_scales)], 2)
    hd, wd = feature_size((h, w), cfg.depth.feature_scale)
    coords = torch.rand(1, 2, n, 3, generator=g) * torch.tensor([wd, hd, cfg.depth.n_bins])
    images = torch.randn(1, 2, 3, h, w, requires_grad=True)
    model(images, LiftTensors(index, coords, torch.full((1, 2, 1), 2.0)))["ssc_logit"].square().mean().backward()
    assert images.grad[:, 0].abs().sum() > 0
    # through the lift's depth gate into the depth net, too
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.flosp_depth.parameters())


# -- the CUDA kernel: compile only (no GPU here) ---------------------------------------------
@pytest.fixture(scope="session", params=CUDA_ARCHS, ids=[f"sm_{a}" for a in CUDA_ARCHS])
def cuda_object(request, tmp_path_factory) -> tuple[str, Path, str]:
    """svs_kernel.cu compiled once per arch (the slow part, shared by the session)."""
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        pytest.skip("nvcc not on PATH: the CUDA kernel cannot be compiled here")
    arch = request.param
    out = tmp_path_factory.mktemp(f"svs_sm{arch}") / "svs_kernel.o"
    cmd = [nvcc, "-std=c++17", "-O3", "-Xcompiler", "-fPIC", f"-I{PLUGIN / 'include'}",
           f"-gencode=arch=compute_{arch},code=sm_{arch}", "-Xptxas", "-v",
           "-c", str(PLUGIN / "src" / "svs_kernel.cu"), "-o", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=NVCC_TIMEOUT_S)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}"
    return arch, out, proc.stdout + proc.stderr


def test_cuda_kernel_compiles(cuda_object) -> None:
    arch, obj, ptxas_log = cuda_object
    assert obj.stat().st_size > 0
    # Both storage types were built as device code for this arch.
    for dtype in ("f", "6__half"):
        assert re.search(rf"svs_forward_kernelI{dtype}E\S* for 'sm_{arch}'", ptxas_log), ptxas_log
