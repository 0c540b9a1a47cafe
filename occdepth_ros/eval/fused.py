"""Score the temporal map: run a model over every frame of each sequence in order, fuse the
frames into a ``RollingSemanticMap`` through the sequence's poses, and at every labelled
frame score both the frame's own prediction and the fused map rendered into that frame's
grid, with the benchmark metrics of ``score_frames``.

Where the map does not know a voxel (outside its window, or never seen) the fused score
falls back to the frame's own prediction. Poses are KITTI ``poses.txt`` (camera 0) brought
to the grid frame through calib.txt's ``Tr`` (``KittiSequence.grid_poses``), read and checked
for every sequence before the first model pass; optionally also fused with
injected odometry drift (``odometry_noise``) to show how the map degrades.

Every score is also split by region: the voxels inside the frame's view (the model's
``seen`` mask on the benchmark grid) and those outside it. Ground truth that scores the whole
volume (SemanticKITTI's) values the sides beside the car, which only a map that remembers
them, or a network that guesses them, gets right.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..classes import ClassSet
from ..data.kitti_odometry import KittiSequence
from ..data.semantic_kitti import read_frame_target, semantic_kitti_factor, upsample_labels
from ..fusion import FusionConfig, RollingSemanticMap, drifted_poses
from ..inference import StereoInference
from .evaluate import predict_with_probs, sequence_name
from .frames import StereoFrameReader
from .metrics import SSCMetrics, SSCResult

SINGLE, FUSED, FUSED_DRIFT = "single", "fused", "fused_drift"
IN_VIEW, OUT_OF_VIEW = "in_view", "out_of_view"


@dataclass
class FusedScores:
    """Scores of one run: per variant over all sequences, and per sequence."""

    total: dict[str, SSCResult]
    per_sequence: dict[str, dict[str, SSCResult]]
    frames_scored: int
    frames_fused: int
    fusion_ms: list[float] = field(default_factory=list)  # integrate + render, per fused frame
    regions: dict[str, dict[str, SSCResult]] = field(default_factory=dict)  # region -> variant -> all sequences

    @property
    def fusion_ms_median(self) -> float:
        return float(np.median(self.fusion_ms)) if self.fusion_ms else 0.0


@dataclass(frozen=True)
class Picture:
    """Where to draw the single frame, the fused map and the ground truth side by side."""

    sequence: str
    frame: str
    path: Path


def draw_picture(picture: Picture, single: np.ndarray, fused: np.ndarray, target: np.ndarray,
                 class_set: ClassSet) -> None:
    """Bird's-eye views on the benchmark grid, each limited to the voxels the frame is
    scored on (the target's valid voxels), so the pictures show what the scores count."""
    from ..viz.render import render_bev_row

    valid = target != class_set.ignore_index
    panels = [("single frame", np.where(valid, single, class_set.empty_index)),
              ("fused (temporal map)", np.where(valid, fused, class_set.empty_index)),
              ("ground truth", np.where(valid, target, class_set.empty_index))]
    picture.path.parent.mkdir(parents=True, exist_ok=True)
    render_bev_row(panels, class_set, title=f"sequence {picture.sequence} frame {picture.frame}: scored voxels, "
                                            "top-down (forward up)").save(picture.path, optimize=True)


def split_by_view(target: np.ndarray, view: np.ndarray, ignore_index: int) -> dict[str, np.ndarray]:
    """The target scored only inside ``view`` and only outside it (the rest ignored)."""
    return {IN_VIEW: np.where(view, target, ignore_index), OUT_OF_VIEW: np.where(view, ignore_index, target)}


def evaluate_fused(engine: StereoInference, root: str | Path, sequences: list[str], class_set: ClassSet,
                   fusion_cfg: FusionConfig | None = None, odometry_noise: bool = False, noise_seed: int = 0,
                   progress: bool = True, picture: Picture | None = None,
                   class_prior: np.ndarray | None = None) -> FusedScores:
    """See the module docstring. ``fusion_cfg`` defaults to ``FusionConfig.for_grid`` of the
    model's grid. ``picture``: a labelled frame to draw (single, fused, ground truth).
    ``class_prior``: the network's (``occdepth_ros.fusion.class_prior``), or None."""
    grid = engine.cfg.grid
    k = semantic_kitti_factor(grid.origin, grid.extent, grid.voxel_size)  # raises, naming the grid
    cfg = fusion_cfg or FusionConfig.for_grid(grid)
    variants = [SINGLE, FUSED] + ([FUSED_DRIFT] if odometry_noise else [])
    seqs = [KittiSequence(Path(root), sequence_name(s)) for s in sequences]
    plans = []
    for seq in seqs:  # check every sequence before the first model pass
        frames = seq.frame_ids()
        labelled = set(seq.labelled_frames())
        if not labelled:
            raise FileNotFoundError(f"no labelled frames in {seq.path}")
        if not seq.has_poses():
            raise FileNotFoundError(f"{seq.path / 'poses.txt'}: fusion needs the sequence's poses")
        poses = {FUSED: seq.grid_poses(frames)}
        if odometry_noise:
            poses[FUSED_DRIFT] = drifted_poses(poses[FUSED], seed=noise_seed)
        plans.append((seq, frames, labelled, poses))
    if picture is not None and not any(seq.sequence == picture.sequence and picture.frame in labelled
                                       for seq, _, labelled, _ in plans):
        raise ValueError(f"--picture: frame {picture.frame} of sequence {picture.sequence} is not a labelled frame "
                         "of the sequences scored")
    total = {v: SSCMetrics(class_set.n_classes, class_set.ignore_index) for v in variants}
    regions = {r: {v: SSCMetrics(class_set.n_classes, class_set.ignore_index) for v in variants}
               for r in (IN_VIEW, OUT_OF_VIEW)}
    per_seq: dict[str, dict[str, SSCResult]] = {}
    reader = StereoFrameReader()
    timings: list[float] = []
    scored = fused_frames = 0
    bar = tqdm(total=sum(len(f) for _, f, _, _ in plans), desc="occdepth-eval --fuse", unit="frame",
               disable=not progress)
    for seq, frames, labelled, poses in plans:
        metrics = {v: SSCMetrics(class_set.n_classes, class_set.ignore_index) for v in variants}
        maps = {v: RollingSemanticMap(cfg, class_set.n_classes, class_prior, class_set.movable_mask())
                for v in variants if v != SINGLE}
        for i, frame in enumerate(frames):
            bar.set_postfix_str(f"{seq.sequence}/{frame}", refresh=False)
            pred = predict_with_probs(engine, reader, seq, frame)
            is_labelled = frame in labelled
            target = read_frame_target(seq.voxel_dir, frame, class_set) if is_labelled else None
            if is_labelled:
                parts = split_by_view(target, upsample_labels(pred.seen, k), class_set.ignore_index)
                single = upsample_labels(pred.labels, k)
                metrics[SINGLE].add(single, target)
                total[SINGLE].add(single, target)
                for region, part in parts.items():
                    regions[region][SINGLE].add(single, part)
            for variant, fmap in maps.items():
                start = time.perf_counter()
                fmap.integrate(pred.probs, pred.seen, poses[variant][i], grid, labels=pred.labels)
                if is_labelled:
                    labels, known = fmap.render(poses[variant][i], grid)
                    fused = np.where(known, labels, pred.labels)
                if variant == FUSED:
                    timings.append(1e3 * (time.perf_counter() - start))
                if is_labelled:
                    up = upsample_labels(fused, k)
                    metrics[variant].add(up, target)
                    total[variant].add(up, target)
                    for region, part in parts.items():
                        regions[region][variant].add(up, part)
                    if variant == FUSED and picture is not None and (seq.sequence, frame) == (picture.sequence,
                                                                                             picture.frame):
                        draw_picture(picture, single, up, target, class_set)
            scored += is_labelled
            fused_frames += 1
            bar.update()
        per_seq[seq.sequence] = {v: m.compute() for v, m in metrics.items()}
    bar.close()
    return FusedScores({v: m.compute() for v, m in total.items()}, per_seq, scored, fused_frames, timings,
                       {r: {v: m.compute() for v, m in by_variant.items()} for r, by_variant in regions.items()})
