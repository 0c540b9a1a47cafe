"""Temporal-map benchmark: one frame integrated into the rolling map (and rendered back)
on the default model's output grid, as the node and ``occdepth-eval --fuse`` call it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..classes import load_class_set
from ..fusion import FusionConfig, RollingSemanticMap
from ..fusion.class_prior import AUTO, resolve_class_prior
from ..geometry.calib import shipped_kitti_calibration
from ..inference.pipeline import output_seen_mask
from ..model.config import load_preset
from ..resources import default_model_path
from .frames import lookup_for
from .measure import Stat, measure

FUSION_PRESET = "compact"  # the default model's architecture: 128 x 128 x 16 output voxels, 20 classes
FUSION_STEP_M = 1.0  # the synthetic worlds' speed: about a metre per frame
FUSION_FRAMES = 8  # distinct frames cycled through while timing


@dataclass
class FusionResult:
    preset: str
    grid: list[int]
    classes: int
    seen_fraction: float
    integrate: Stat
    render: Stat
    occupied: Stat
    memory_mb: float

    def to_dict(self) -> dict[str, Any]:
        return {"preset": self.preset, "grid": self.grid, "classes": self.classes,
                "seen_fraction": self.seen_fraction, "integrate": self.integrate.to_dict(),
                "render": self.render.to_dict(), "occupied": self.occupied.to_dict(), "memory_mb": self.memory_mb}


# The default model on the synthetic worlds: ~9 % of the voxels in view most likely occupied,
# ~2 % most likely empty but with P(occupied) >= 0.25, the rest confidently empty.
OCCUPIED_FRACTION, UNCERTAIN_FRACTION = 0.09, 0.02


def synthetic_probs(dims: tuple[int, ...], classes: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(probs (K, X, Y, Z) float32, argmax labels) mixed as the default model's outputs are."""
    logits = rng.normal(0.0, 1.0, size=(classes, *dims)).astype(np.float32)
    u = rng.random(dims)
    bias = np.where(u < OCCUPIED_FRACTION, -2.0, np.where(u < OCCUPIED_FRACTION + UNCERTAIN_FRACTION, 2.5, 7.0))
    logits[0] += bias.astype(np.float32)
    logits -= logits.max(0, keepdims=True)
    probs = np.exp(logits)
    probs /= probs.sum(0, keepdims=True)
    return probs, probs.argmax(0).astype(np.uint8)


def bench_fusion(warmup: int, iters: int, budget_s: float | None, preset: str = FUSION_PRESET) -> FusionResult:
    """Time ``integrate`` (labels given, as the node and evaluation pass them), ``render``
    and ``occupied`` on the preset's grid with the shipped KITTI calibration's view,
    the robot driving forward ``FUSION_STEP_M`` per frame with a slow turn."""
    cfg = load_preset(preset)
    grid = cfg.grid
    lookup = lookup_for(cfg, shipped_kitti_calibration())
    seen = output_seen_mask(lookup, grid)
    rng = np.random.default_rng(0)
    frames = [synthetic_probs(grid.dims, cfg.n_classes, rng) for _ in range(FUSION_FRAMES)]
    classes = load_class_set(cfg.class_set)
    prior, _ = resolve_class_prior(AUTO, default_model_path(), classes)  # the shipped model's, as the node runs it
    fmap = RollingSemanticMap(FusionConfig.for_grid(grid), cfg.n_classes, None if prior is None else prior.probabilities,
                              classes.movable_mask())
    state = {"i": 0, "pose": np.eye(4)}
    c, sn = np.cos(0.002), np.sin(0.002)
    step = np.array([[c, -sn, 0, FUSION_STEP_M], [sn, c, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])

    def integrate() -> None:
        state["pose"] = state["pose"] @ step
        probs, labels = frames[state["i"] % FUSION_FRAMES]
        state["i"] += 1
        fmap.integrate(probs, seen, state["pose"], grid, labels=labels)

    for _ in range(FUSION_FRAMES):  # a map with history
        integrate()
    integrate_stat = measure("integrate", integrate, warmup, iters, budget_s)
    render_stat = measure("render", lambda: fmap.render(state["pose"], grid), warmup, iters, budget_s)
    occupied_stat = measure("occupied", fmap.occupied, warmup, iters, budget_s)
    return FusionResult(preset, list(grid.dims), cfg.n_classes, round(float(seen.mean()), 4), integrate_stat,
                        render_stat, occupied_stat, fmap.memory_bytes() / 2**20)
