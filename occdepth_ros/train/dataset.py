"""Training samples from KITTI-odometry-layout sequences with SemanticKITTI voxels.

Everything that depends only on a sequence's calibration (lift lookups, per-voxel
pixels for the frustum loss) is computed once per sequence and flip state.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from ..classes import ClassSet
from ..data.images import read_rgb
from ..data.kitti_odometry import KittiSequence, read_depth_png
from ..data.semantic_kitti import (
    SEMANTIC_KITTI_GRID,
    SEMANTIC_KITTI_VOXEL,
    downsample_target,
    read_frame_target,
)
from ..geometry.calib import StereoRig, kitti_calibration, read_kitti_calib, rig_from_projections
from ..geometry.image_fit import ImageFit
from ..geometry.lookups import LiftLookup, LiftTensors, feature_size, project_pixels_official
from ..inference.preprocess import to_network_input
from ..model.config import ModelConfig
from ..model.lift_lookup import build_lift_lookup
from .targets import depth_labels, local_frustums, relation_matrix


@dataclass(frozen=True)
class Augment:
    """Official training augmentation: a horizontal flip shared by both views and an
    independent colour jitter per view (brightness, contrast, saturation)."""

    flip_prob: float = 0.5
    jitter: float = 0.4


@dataclass(frozen=True)
class FrameRef:
    sequence: KittiSequence
    frame: str


def color_jitter(image: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Brightness, contrast and saturation factors drawn from [1 - s, 1 + s]."""
    x = image.astype(np.float32)
    b, c, s = rng.uniform(1 - strength, 1 + strength, size=3)
    x = x * b
    gray = x @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    x = (x - gray.mean()) * c + gray.mean()
    gray = (x @ np.array([0.299, 0.587, 0.114], dtype=np.float32))[..., None]
    x = gray + (x - gray) * s
    return np.clip(x, 0, 255).astype(np.uint8)


def fit_depth(depth: np.ndarray, fit: ImageFit) -> np.ndarray:
    """Depth map to the network input by nearest sampling (no blending across edges)."""
    h, w = fit.dst_size
    if fit.mode == "crop":
        return depth[:h, :w]
    A = fit.matrix
    cols = np.clip(np.round((np.arange(w) - A[0, 2]) / A[0, 0]).astype(int), 0, depth.shape[1] - 1)
    rows = np.clip(np.round((np.arange(h) - A[1, 2]) / A[1, 1]).astype(int), 0, depth.shape[0] - 1)
    return depth[rows][:, cols]


@dataclass(frozen=True)
class SequenceGeometry:
    fit: ImageFit
    rig: StereoRig
    lookups: tuple[LiftLookup, LiftLookup]  # (not flipped, flipped)
    lift: tuple[LiftTensors, LiftTensors]  # the same as unbatched torch tensors
    voxel_pixels: tuple[np.ndarray, np.ndarray, np.ndarray]  # output-grid pixels, fov, depth (unflipped)


class SSCDataset(torch.utils.data.Dataset):
    """Labelled frames of the given sequences as model-ready training samples."""

    def __init__(
        self,
        root: str | Path,
        sequences: list[str],
        cfg: ModelConfig,
        class_set: ClassSet,
        augment: Augment | None = None,
        frustum_size: int = 8,
        depth_root: str | Path | None = None,
        seed: int = 0,
    ) -> None:
        self.cfg, self.class_set, self.augment = cfg, class_set, augment
        self.frustum_size = frustum_size
        self.rng = np.random.default_rng(seed)
        self.frames: list[FrameRef] = []
        for seq in sequences:
            s = KittiSequence(Path(root), seq, None if depth_root is None else Path(depth_root))
            self.frames += [FrameRef(s, f) for f in s.labelled_frames()]
        if not self.frames:
            raise FileNotFoundError(f"no labelled frames in {root} sequences {sequences}")
        g = cfg.grid
        ratio = g.voxel_size / SEMANTIC_KITTI_VOXEL
        self.out_factor = int(round(ratio))
        if abs(ratio - self.out_factor) > 1e-6 or tuple(d * self.out_factor for d in g.dims) != SEMANTIC_KITTI_GRID:
            raise ValueError(f"grid {g.dims} @ {g.voxel_size} m does not tile the SemanticKITTI grid")
        self.coarse_factor = SEMANTIC_KITTI_GRID[0] // (g.feature_dims[0] // 4)

    def __len__(self) -> int:
        return len(self.frames)

    @lru_cache(maxsize=None)
    def geometry(self, sequence: KittiSequence, image_hw: tuple[int, int]) -> SequenceGeometry:
        cfg, g = self.cfg, self.cfg.grid
        calib = kitti_calibration(read_kitti_calib(sequence.path / "calib.txt"), image_hw)
        fit = ImageFit(image_hw, (cfg.image.height, cfg.image.width), cfg.image.fit)
        rig = rig_from_projections([fit.apply_projection(P) for P in calib.projections],
                                   calib.T_grid_to_ref, fit.dst_size)
        lookups = (build_lift_lookup(rig, cfg), build_lift_lookup(rig, cfg, flip=True))
        voxel_pixels = project_pixels_official(rig, g.origin, g.dims, g.voxel_size)
        lift = tuple(LiftTensors(*(t[0] for t in lk.to_torch())) for lk in lookups)
        return SequenceGeometry(fit, rig, lookups, lift, voxel_pixels)

    def __getitem__(self, index: int) -> dict:
        ref = self.frames[index]
        cfg, aug = self.cfg, self.augment
        images = [read_rgb(p) for p in ref.sequence.image_paths(ref.frame)]
        geo = self.geometry(ref.sequence, images[0].shape[:2])
        flip = bool(aug is not None and self.rng.random() < aug.flip_prob)
        if aug is not None and aug.jitter > 0:
            images = [color_jitter(im, aug.jitter, self.rng) for im in images]
        tensors = [to_network_input(im, geo.fit, cfg.image) for im in images]
        if flip:
            tensors = [t.flip(-1) for t in tensors]
        full = read_frame_target(ref.sequence.voxel_dir, ref.frame, self.class_set)
        # Official _downsample_label rule: a block is labelled if anything in it is, so
        # one-voxel-thick ground and walls survive the move to a coarser output grid.
        target = downsample_target(full, self.out_factor)
        sample = {
            "images": torch.stack(tensors),
            "lift": geo.lift[int(flip)],
            "target": torch.from_numpy(target.astype(np.int64)),
        }
        if cfg.context_prior:
            coarse = downsample_target(full, self.coarse_factor)
            sample["relation"] = torch.from_numpy(relation_matrix(coarse, cfg.n_relations))  # uint8
        # Official: frustums come from the pixels before the flip is applied.
        pix, fov, depth = geo.voxel_pixels
        masks, dists = local_frustums(pix, fov, depth, target, (cfg.image.height, cfg.image.width),
                                      self.class_set.n_classes, self.frustum_size, self.class_set.ignore_index)
        sample["frustum_masks"] = torch.from_numpy(masks)
        sample["frustum_dists"] = torch.from_numpy(dists)
        depth_path = ref.sequence.depth_dir / f"{ref.frame}.png"
        if cfg.depth.enabled and depth_path.is_file():
            d = fit_depth(read_depth_png(depth_path), geo.fit)
            if flip:
                d = d[:, ::-1]
            d_cfg = cfg.depth
            out_hw = feature_size((cfg.image.height, cfg.image.width), d_cfg.feature_scale)
            labels, fg = depth_labels(np.ascontiguousarray(d), d_cfg.d_min, d_cfg.d_max, d_cfg.d_step,
                                      d_cfg.feature_scale, out_hw)
            sample["depth_labels"] = torch.from_numpy(labels)
            sample["depth_fg"] = torch.from_numpy(fg)
        return sample


def collate(samples: list[dict]) -> dict:
    """Stack samples; every sample of a batch must carry the same keys."""
    keys = set(samples[0])
    if any(set(s) != keys for s in samples):
        raise ValueError("samples in a batch carry different targets (mixed depth teachers?)")
    batch = {k: torch.stack([s[k] for s in samples]) for k in keys if k != "lift"}
    batch["lift"] = LiftTensors(*(torch.stack([s["lift"][i] for s in samples]) for i in range(3)))
    return batch
