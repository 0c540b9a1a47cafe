"""The lift probe: its AUC against a pairwise float64 count, and a run on generated data."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from occdepth_ros.train.lift_probe import format_scores, probe_lift, roc_auc
from occdepth_ros.model import OccDepth, load_preset


def pairwise_auc(score: np.ndarray, positive: np.ndarray) -> float:
    pos, neg = score[positive].astype(np.float64), score[~positive].astype(np.float64)
    wins = sum(float((p > neg).sum()) + 0.5 * float((p == neg).sum()) for p in pos)
    return wins / (len(pos) * len(neg))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_roc_auc_matches_pairwise_count_with_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    score = rng.integers(0, 7, 400).astype(np.float32)  # many ties
    positive = rng.random(400) < 0.3 + 0.05 * score
    assert roc_auc(score, positive) == pytest.approx(pairwise_auc(score, positive), abs=1e-12)


def test_roc_auc_extremes_and_errors() -> None:
    s = np.arange(10.0)
    assert roc_auc(s, s >= 5) == 1.0
    assert roc_auc(-s, s >= 5) == 0.0
    assert roc_auc(np.zeros(10), s >= 5) == 0.5
    with pytest.raises(ValueError, match="positive and negative"):
        roc_auc(s, np.ones(10, bool))


def test_probe_runs_on_generated_frames(two_frame_synth) -> None:
    cfg = load_preset("compact")
    cfg = dataclasses.replace(cfg, image=dataclasses.replace(cfg.image, height=64, width=192))
    torch.manual_seed(0)
    scores = probe_lift(OccDepth(cfg), str(two_frame_synth), ["00"])
    assert [s.name for s in scores] == [f"SFA cosine, scale 1/{s}" for s in cfg.sfa_scales] + ["OAD prior"]
    for s in scores[:-1]:
        assert -1.0 <= s.empty_mean <= 1.0 and -1.0 <= s.occupied_mean <= 1.0
        assert s.voxels == scores[0].voxels > 0  # the same both-seen voxels at every scale
    assert scores[-1].occupied_mean >= 0 and scores[-1].empty_mean >= 0
    assert scores[-1].voxels > 0
    assert all(0.0 <= s.auc <= 1.0 for s in scores)
    table = format_scores(scores)
    assert table.count("\n") == len(scores) + 1 and "OAD prior" in table
