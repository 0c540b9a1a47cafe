"""occdepth-eval --fuse on a generated sequence: both scores written; the single-frame score
is plain occdepth-eval's; the fused score is that of the temporal map driven through the
package's public pieces frame by frame, on the frame's-view and on whole-volume ground truth,
where the map knows scored voxels the frame cannot see; bad combinations are refused by name."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from helpers.tiny_model import save_tiny_model

from occdepth_ros.checkpoint import load_model
from occdepth_ros.cli.class_prior import main as class_prior_main
from occdepth_ros.classes import load_class_set
from occdepth_ros.cli.evaluate import main as eval_main
from occdepth_ros.data.kitti_odometry import KittiSequence
from occdepth_ros.data.semantic_kitti import read_frame_target, upsample_labels
from occdepth_ros.data.synth.cli import main as synth_main
from occdepth_ros.eval.frames import StereoFrameReader
from occdepth_ros.eval.fused import evaluate_fused
from occdepth_ros.eval.metrics import SSCMetrics
from occdepth_ros.fusion import FusionConfig, RollingSemanticMap
from occdepth_ros.fusion.class_prior import load_class_prior
from occdepth_ros.inference import StereoInference

FRAMES = 5


SYNTH_ARGS = ["--sequences", "00", "--frames", str(FRAMES), "--seed", "7", "--voxel-every", "2",
              "--image-size", "96", "320"]


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """Five frames driving forward, ground truth at frames 0, 2 and 4."""
    root = tmp_path_factory.mktemp("fuse_synth")
    assert synth_main(["--out", str(root), *SYNTH_ARGS]) == 0
    return root


@pytest.fixture(scope="module")
def whole_root(tmp_path_factory) -> Path:
    """The same world with whole-volume ground truth (only buried voxels invalid)."""
    root = tmp_path_factory.mktemp("fuse_synth_whole")
    assert synth_main(["--out", str(root), *SYNTH_ARGS, "--whole-volume"]) == 0
    return root


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("tiny_fuse") / "tiny.safetensors", seed=4)


@pytest.fixture(scope="module")
def tiny_prior(root, tiny, tmp_path_factory) -> Path:
    """The tiny network's class prior, measured by occdepth-class-prior on the world's frames."""
    out = tmp_path_factory.mktemp("prior") / "tiny.class_prior.yaml"
    assert class_prior_main(["--data", str(root), "--sequences", "00", "--checkpoint", str(tiny),
                             "--out", str(out)]) == 0
    return out


def _eval(argv: list[str], capsys) -> tuple[int, str, str]:
    code = eval_main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _drive_map(root: Path, tiny: Path, settings: dict, pass_labels: bool, prior: np.ndarray | None = None):
    """The public pieces, frame by frame, in order: each frame predicted and integrated into
    a fresh map at its pose; yields (sequence, frame, pose, prediction, map, grid) after each."""
    cs = load_class_set()
    engine = StereoInference(load_model(tiny))
    grid = engine.cfg.grid
    fmap = RollingSemanticMap(FusionConfig.for_grid(grid, **settings), cs.n_classes, prior, cs.movable_mask())
    seq = KittiSequence(root, "00")
    reader = StereoFrameReader()
    calib = reader.read(seq, "000000")[2]
    # odometry = the first grid frame: T = inv(Tr) @ cam0 pose @ Tr, in float64
    Tr = np.asarray(calib.T_grid_to_ref, np.float64)
    poses = [np.linalg.inv(Tr) @ P @ Tr for P in seq.poses()]
    for i, frame in enumerate(seq.frame_ids()):
        left, right, calib = reader.read(seq, frame)
        engine.set_calibration(calib)
        pred = engine.predict([left, right], with_confidence=False, with_probs=True)
        # without labels, integrate takes the slow path over every class
        fmap.integrate(pred.probs, pred.seen, poses[i], grid, labels=pred.labels if pass_labels else None)
        yield seq, frame, poses[i], pred, fmap, grid


def test_fuse_writes_both_scores_and_the_single_frame_score_is_plain_eval(root, tiny, tmp_path, capsys) -> None:
    base = ["--data", str(root), "--sequences", "00", "--checkpoint", str(tiny)]
    code, out, err = _eval([*base, "--fuse", "--odometry-noise", "--json", str(tmp_path / "fused.json"),
                            "--picture", "0/2", str(tmp_path / "bev.png")], capsys)
    assert code == 0, err
    code, _, err = _eval([*base, "--json", str(tmp_path / "plain.json")], capsys)
    assert code == 0, err
    fused, plain = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("fused", "plain"))
    assert fused["frames"] == plain["frames"] == 3 and fused["frames_fused"] == FRAMES
    metric_keys = {"sc_iou", "sc_precision", "sc_recall", "miou", "class_iou"}
    assert fused["single"] == {k: plain[k] for k in metric_keys}
    for variant in ("fused", "fused_drift"):
        assert set(fused[variant]) == metric_keys
        assert 0.0 <= fused[variant]["sc_iou"] <= 1.0
    assert fused["per_sequence"]["00"]["single"] == fused["single"]
    for region in ("in_view", "out_of_view"):
        assert set(fused["regions"][region]) == {"single", "fused", "fused_drift"}
    assert "outside the frame's view" in out
    assert fused["fusion_ms_median"] > 0
    assert "fused (temporal map):" in out and "single frame:" in out and "odometry drift" in out
    with Image.open(tmp_path / "bev.png") as img:  # three 256 x 256 views (benchmark grid) and a legend
        assert img.width > 3 * 256 and img.height >= 256


@pytest.mark.parametrize("volume,settings,with_prior", [
    ("view", {}, False), ("view", {"decay": 1e-6, "occupied_threshold": 0.6}, False), ("whole", {}, False),
    ("view", {}, True)])
def test_fused_score_is_the_temporal_map_driven_frame_by_frame(volume, settings, with_prior, root, whole_root, tiny,
                                                               tiny_prior, tmp_path, capsys) -> None:
    """Independent of the evaluation loop: the public pieces, frame by frame, in order; the
    --fusion settings and --class-prior reach the map."""
    root = whole_root if volume == "whole" else root
    flags = [a for name, value in settings.items() for a in ("--fusion", f"{name}={value}")]
    prior = None
    if with_prior:
        flags += ["--class-prior", str(tiny_prior)]
        prior = load_class_prior(tiny_prior, load_class_set()).probabilities
    code, _, err = _eval(["--data", str(root), "--sequences", "00", "--checkpoint", str(tiny), "--fuse", *flags,
                          "--json", str(tmp_path / "fused.json")], capsys)
    assert code == 0, err
    report = json.loads((tmp_path / "fused.json").read_text())
    cs = load_class_set()
    metrics = SSCMetrics(cs.n_classes, cs.ignore_index)
    outside = SSCMetrics(cs.n_classes, cs.ignore_index)
    for seq, frame, pose, pred, fmap, grid in _drive_map(root, tiny, settings, pass_labels=False, prior=prior):
        if frame in seq.labelled_frames():
            labels, known = fmap.render(pose, grid)
            k = round(grid.voxel_size / 0.2)
            fused = upsample_labels(np.where(known, labels, pred.labels), k)
            target = read_frame_target(seq.voxel_dir, frame, cs)
            metrics.add(fused, target)
            outside.add(fused, np.where(upsample_labels(pred.seen, k), cs.ignore_index, target))
    ours, ours_outside = metrics.compute(), outside.compute()
    assert report["fused"]["sc_iou"] == pytest.approx(ours.sc_iou, abs=1e-12)
    assert report["fused"]["miou"] == pytest.approx(ours.miou, abs=1e-12)
    reported_outside = report["regions"]["out_of_view"]["fused"]
    assert reported_outside["voxels_scored"] == ours_outside.n_evaluated
    assert reported_outside["sc_iou"] == pytest.approx(ours_outside.sc_iou, abs=1e-12)
    assert reported_outside["miou"] == pytest.approx(ours_outside.miou, abs=1e-12)


def test_class_prior_is_the_mean_distribution_over_the_seen_voxels(root, tiny, tiny_prior) -> None:
    """occdepth-class-prior's file against a float64 sum over every frame's seen voxels."""
    cs = load_class_set()
    engine = StereoInference(load_model(tiny))
    seq, reader = KittiSequence(root, "00"), StereoFrameReader()
    total = np.zeros(cs.n_classes)
    for frame in seq.frame_ids():
        left, right, calib = reader.read(seq, frame)
        engine.set_calibration(calib)
        pred = engine.predict([left, right], with_confidence=False, with_probs=True)
        for ijk in zip(*np.nonzero(pred.seen)):
            total += pred.probs[(slice(None), *ijk)].astype(np.float64)
    prior = load_class_prior(tiny_prior, cs)
    assert prior.frames == FRAMES and prior.model == "tiny.safetensors"
    np.testing.assert_allclose(prior.probabilities, total / total.sum(), rtol=1e-5)


def test_the_map_knows_scored_voxels_the_frame_cannot_see(root, whole_root, tiny) -> None:
    """Whole-volume ground truth scores the sides beside the car; voxels there that earlier
    frames saw are known to the map at the last frame although its cameras miss them."""
    *_, (seq, last, pose, pred, fmap, grid) = _drive_map(whole_root, tiny, {}, pass_labels=True)
    _, known = fmap.render(pose, grid)
    remembered = upsample_labels((known & ~pred.seen).astype(np.uint8), round(grid.voxel_size / 0.2)).astype(bool)
    cs = load_class_set()
    whole = read_frame_target(seq.voxel_dir, last, cs)
    view = read_frame_target(KittiSequence(root, "00").voxel_dir, last, cs)
    scored_only_whole = remembered & (whole != 255) & (view == 255)
    assert scored_only_whole.sum() > 50000
    assert (whole[scored_only_whole] > 0).sum() > 2000  # ground beside the car among them


@pytest.mark.parametrize("volume", ["view", "whole"])
def test_the_regions_split_every_scored_voxel(volume, root, whole_root, tiny) -> None:
    """In view + out of view = the whole score, count by count; the frame's-view ground truth
    leaves (almost) nothing outside the view, whole-volume ground truth a large share."""
    cs = load_class_set()
    scores = evaluate_fused(StereoInference(load_model(tiny)), whole_root if volume == "whole" else root, ["00"], cs,
                            progress=False)
    for variant, total in scores.total.items():
        inside, outside = (scores.regions[r][variant] for r in ("in_view", "out_of_view"))
        for name in ("sc_tp", "sc_fp", "sc_fn", "n_evaluated"):
            assert getattr(inside, name) + getattr(outside, name) == getattr(total, name), (variant, name)
        for name in ("class_tp", "class_fp", "class_fn"):
            assert np.array_equal(getattr(inside, name) + getattr(outside, name), getattr(total, name))
    share = scores.regions["out_of_view"]["single"].n_evaluated / scores.total["single"].n_evaluated
    assert share < 0.05 if volume == "view" else share > 0.15


def test_probs_are_the_softmax_and_default_predictions_are_unchanged(root, tiny) -> None:
    engine = StereoInference(load_model(tiny))
    left, right, calib = StereoFrameReader().read(KittiSequence(root, "00"), "000001")
    engine.set_calibration(calib)
    plain = engine.predict([left, right])
    with_probs = engine.predict([left, right], with_probs=True)
    assert plain.probs is None and with_probs.probs.dtype == np.float32
    logits = engine.logits([left, right])[0].double().numpy()
    ref = np.exp(logits - logits.max(0))
    ref /= ref.sum(0)
    np.testing.assert_allclose(with_probs.probs, ref, atol=1e-6)
    np.testing.assert_array_equal(with_probs.labels, plain.labels)
    np.testing.assert_allclose(with_probs.probs.max(0), plain.confidence, atol=1e-6)


@pytest.mark.parametrize("extra, message", [
    (["--odometry-noise"], "needs --fuse"),
    (["--fuse", "--frame-stride", "2"], "every frame of each sequence in order"),
    (["--fuse", "--baseline", "sgbm"], "have none"),
    (["--picture", "00/000002", "x.png"], "needs --fuse"),
    (["--fuse", "--picture", "00/000001", "x.png"], "not a labelled frame"),
    (["--fusion", "decay=0.5"], "needs --fuse"),
    (["--fuse", "--fusion", "nope=1"], "expected NAME=VALUE with NAME one of voxel_size"),
    (["--fuse", "--fusion", "decay"], "expected NAME=VALUE"),
    (["--fuse", "--fusion", "decay=fast"], "decay: 'fast' is not a float"),
    (["--fuse", "--fusion", "decay=2"], "decay must be in (0, 1]"),
    (["--class-prior", "none"], "needs --fuse"),
    (["--fuse", "--class-prior", "missing.yaml"], "class prior not found: missing.yaml"),
])
def test_bad_combinations_are_refused(root, tiny, capsys, extra, message) -> None:
    argv = ["--data", str(root), "--sequences", "00", *extra]
    if "--baseline" not in extra:
        argv += ["--checkpoint", str(tiny)]
    code, _, err = _eval(argv, capsys)
    assert code == 2 and message in err


def test_a_sequence_without_poses_is_refused_by_name(root, tiny, tmp_path, capsys) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    (copy / "sequences" / "00" / "poses.txt").unlink()
    code, _, err = _eval(["--data", str(copy), "--sequences", "00", "--checkpoint", str(tiny), "--fuse"], capsys)
    assert code == 2 and "poses.txt" in err and "fusion needs" in err
