"""Does the lift's evidence separate occupied from empty voxels?

Two signals reach the 3D network per voxel: Stereo-SFA's two-view cosine (per feature
scale) and the OAD occupancy prior. Each is scored here as a detector of ground-truth
occupancy on the feature grid: its mean on occupied and on empty voxels, and the ROC
AUC (0.5 = no signal, below 0.5 = inverted). Used to explain the fusion ablation in
docs/MODEL_CARD.md. Run: ``python -m occdepth_ros.train.lift_probe --data D --sequences S``.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..checkpoint import CheckpointError, choose_weights, load_model
from ..classes import load_class_set
from ..data.semantic_kitti import downsample_target
from ..geometry.lookups import OUTSIDE
from ..model.config import ConfigError
from ..model.occdepth import OccDepth
from ..ops.stereo_voxel_sample import COS_EPS, gather_views, occupancy_prior
from .dataset import SSCDataset, collate


def roc_auc(score: np.ndarray, positive: np.ndarray) -> float:
    """Probability that a random positive scores above a random negative (ties count
    half): the Mann-Whitney statistic with tie-averaged ranks."""
    score = np.asarray(score, dtype=np.float64).ravel()
    positive = np.asarray(positive, dtype=bool).ravel()
    n_pos = int(positive.sum())
    n_neg = positive.size - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError("roc_auc needs both positive and negative samples")
    _, inverse, counts = np.unique(score, return_inverse=True, return_counts=True)
    first_rank = np.concatenate([[0], np.cumsum(counts)[:-1]]) + 1
    ranks = (first_rank + (counts - 1) / 2.0)[inverse]
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


@dataclass(frozen=True)
class SignalScore:
    name: str
    occupied_mean: float
    empty_mean: float
    auc: float
    voxels: int


def _score(name: str, values: list[np.ndarray], occupied: list[np.ndarray]) -> SignalScore:
    v, o = np.concatenate(values), np.concatenate(occupied)
    return SignalScore(name, float(v[o].mean()), float(v[~o].mean()), roc_auc(v, o), int(v.size))


@torch.inference_mode()
def probe_lift(model: OccDepth, root: str, sequences: list[str], max_frames: int | None = None) -> list[SignalScore]:
    """Per-scale cosine (voxels both views see) and the OAD prior (voxels a view sees
    within the depth window), against occupancy on the feature grid (the official block
    downsampling of the target); ignored voxels are left out."""
    cfg = model.cfg
    model.eval()
    class_set = load_class_set(cfg.class_set)
    ignore = class_set.ignore_index
    dataset = SSCDataset(root, sequences, cfg, class_set, None)
    n = len(dataset) if max_frames is None else min(max_frames, len(dataset))
    cos_vals: dict[int, tuple[list, list]] = {s: ([], []) for s in cfg.sfa_scales}
    prior_vals: tuple[list, list] = ([], [])
    for i in range(n):
        batch = collate([dataset[i]])
        feats = model.image_features(batch["images"])
        target = batch["target"][0].numpy()
        coarse = downsample_target(target, target.shape[0] // cfg.grid.feature_dims[0], ignore).reshape(-1)
        valid = coarse != ignore
        occupied = valid & (coarse > 0)
        if cfg.n_views == 2:
            for k, s in enumerate(cfg.sfa_scales):
                sampled, seen = gather_views(feats[s], batch["lift"].pixel_index[:, :, k])
                cos = F.cosine_similarity(sampled[0, 0], sampled[0, 1], dim=0, eps=COS_EPS).numpy()
                keep = (seen[0, 0] & seen[0, 1]).numpy() & valid
                cos_vals[s][0].append(cos[keep])
                cos_vals[s][1].append(occupied[keep])
        if cfg.depth.enabled:
            f = feats[cfg.depth.feature_scale]
            logits = model.flosp_depth(f.flatten(0, 1), batch["lift"].pixel_size.reshape(-1, 1))
            prob = logits.unflatten(0, f.shape[:2]).softmax(dim=2)
            prior = occupancy_prior(prob, batch["lift"].depth_coords)[0].numpy()
            # In a view's image and depth window (voxels outside both have prior 0 by construction).
            in_view = (batch["lift"].pixel_index[0, :, 0] >= 0) & (batch["lift"].depth_coords[0, ..., 2] != OUTSIDE)
            covered = in_view.any(0).numpy() & valid
            prior_vals[0].append(prior[covered])
            prior_vals[1].append(occupied[covered])
    scores = [_score(f"SFA cosine, scale 1/{s}", *cos_vals[s]) for s in cfg.sfa_scales if cos_vals[s][0]]
    if prior_vals[0]:
        scores.append(_score("OAD prior", *prior_vals))
    return scores


def format_scores(scores: list[SignalScore]) -> str:
    lines = ["| signal | mean, occupied | mean, empty | AUC | voxels |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {s.name} | {s.occupied_mean:.4f} | {s.empty_mean:.4f} | {s.auc:.3f} | {s.voxels} |" for s in scores]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m occdepth_ros.train.lift_probe", description=__doc__)
    p.add_argument("--data", required=True, help="dataset root holding sequences/<seq>/")
    p.add_argument("--sequences", nargs="+", required=True)
    p.add_argument("--checkpoint", help="weights; default: the shipped default model")
    p.add_argument("--max-frames", type=int)
    p.add_argument("--threads", type=int)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        checkpoint, preset, _ = choose_weights(args.checkpoint, None)
        model = load_model(checkpoint, preset=preset)
        scores = probe_lift(model, args.data, args.sequences, args.max_frames)
    except (CheckpointError, ConfigError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{model.cfg.name} ({checkpoint}) on {args.data} sequences {' '.join(args.sequences)}\n")
    print(format_scores(scores))
    return 0


if __name__ == "__main__":
    sys.exit(main())
