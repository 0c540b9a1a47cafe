"""Write synthetic sequences in the KITTI odometry + SemanticKITTI folder layout.

``<out>/sequences/<seq>/``: ``image_2/``, ``image_3/`` (8-bit RGB PNG),
``calib.txt`` (P0..P3, Tr), ``times.txt``, ``poses.txt`` (cam0 poses, 3x4 per
line, in the first frame's cam0), ``depth/`` (uint16 PNG, metres * 256,
0 = none; left camera) and ``voxels/<frame>.{label,invalid,bin,occluded}``
every ``voxel_every`` frames.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
from PIL import Image

from ...classes import load_class_set
from ...geometry.calib import write_kitti_calib
from ..kitti_odometry import write_depth_png
from ..semantic_kitti import frame_name, write_frame_voxels
from .config import SynthConfig
from .render import SceneRenderer, StereoFrame
from .rig import cam0_pose_rows, kitti_calib_matrices, stereo_rig
from .scene import Scene, build_scene
from .voxelize import FrameVoxels, GridProjection, frame_voxels

IMAGE_DIRS = ("image_2", "image_3")
PNG_COMPRESS_LEVEL = 1  # fast; PNG is lossless whatever the level


def write_sequence_metadata(seq_dir: Path, cfg: SynthConfig, scene: Scene) -> None:
    """calib.txt, times.txt and poses.txt of a whole sequence."""
    seq_dir.mkdir(parents=True, exist_ok=True)
    write_kitti_calib(seq_dir / "calib.txt", kitti_calib_matrices(cfg.rig))
    times = np.arange(scene.n_frames) * cfg.trajectory.frame_period_s
    (seq_dir / "times.txt").write_text("".join(f"{t:.6e}\n" for t in times))
    rows = cam0_pose_rows(cfg.rig, list(scene.egos))
    (seq_dir / "poses.txt").write_text("".join(" ".join(f"{v:.9e}" for v in row) + "\n" for row in rows))


def write_images(seq_dir: Path, frame: int, rendered: StereoFrame) -> None:
    for folder, image in zip(IMAGE_DIRS, rendered.images):
        path = seq_dir / folder / f"{frame_name(frame)}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(path, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    write_depth_png(seq_dir / "depth" / f"{frame_name(frame)}.png", rendered.depth[0])


def write_voxels(seq_dir: Path, frame: int, vox: FrameVoxels) -> None:
    raw = load_class_set().inverse_lut()[vox.labels]
    write_frame_voxels(seq_dir / "voxels", frame, raw, vox.invalid, vox.occupancy, vox.occluded)


@dataclass
class SequenceGenerator:
    """Renders and voxelizes the frames of one sequence (shared state built once)."""

    cfg: SynthConfig
    sequence: str

    def __post_init__(self) -> None:
        self.scene = build_scene(self.cfg, self.sequence)
        self.rig = stereo_rig(self.cfg.rig)
        self.renderer = SceneRenderer(self.scene, self.rig, self.cfg.render, self.cfg.seed)
        self.projection: GridProjection | None = None
        self.class_names = load_class_set().names

    def is_labelled(self, frame: int) -> bool:
        return self.cfg.voxel_every > 0 and frame % self.cfg.voxel_every == 0

    def voxels(self, frame: int, rendered: StereoFrame, scene: Scene) -> FrameVoxels:
        """The frame's ground truth, from ``scene``: the frame's world (``Scene.at``)."""
        if self.projection is None:
            self.projection = GridProjection(self.rig, self.cfg.grid)
        return frame_voxels(
            scene.primitives, scene.bounds, scene.egos[frame], self.projection, rendered.depth, self.class_names
        )

    def frame(self, frame: int) -> tuple[StereoFrame, FrameVoxels | None]:
        """Images and (on a labelled frame) voxels of one frame, both of the frame's world."""
        scene = self.scene.at(frame)
        renderer = self.renderer if scene is self.scene else SceneRenderer(scene, self.rig, self.cfg.render,
                                                                            self.cfg.seed)
        rendered = renderer.render(frame)
        return rendered, (self.voxels(frame, rendered, scene) if self.is_labelled(frame) else None)

    def sequence_dir(self, out_root: str | Path) -> Path:
        return Path(out_root) / "sequences" / self.sequence

    def write_metadata(self, out_root: str | Path) -> Path:
        seq_dir = self.sequence_dir(out_root)
        write_sequence_metadata(seq_dir, self.cfg, self.scene)
        return seq_dir

    def write_frame(self, out_root: str | Path, frame: int) -> None:
        seq_dir = self.sequence_dir(out_root)
        rendered, vox = self.frame(frame)
        write_images(seq_dir, frame, rendered)
        if vox is not None:
            write_voxels(seq_dir, frame, vox)

    def write(self, out_root: str | Path, on_frame: Callable[[], None] | None = None) -> Path:
        """Write every frame under ``out_root/sequences/<seq>``; returns that folder."""
        seq_dir = self.write_metadata(out_root)
        for frame in range(self.scene.n_frames):
            self.write_frame(out_root, frame)
            if on_frame is not None:
                on_frame()
        return seq_dir


# --- several processes: frames are independent, so any split gives the same files ---

_WORKER: dict = {}


def _init_worker(cfg: SynthConfig, out_root: str) -> None:
    _WORKER.update(cfg=cfg, out_root=out_root, generators={})


def _worker_frame(task: tuple[str, int]) -> None:
    sequence, frame = task
    gens = _WORKER["generators"]
    if sequence not in gens:
        gens.clear()  # tasks arrive in sequence order; keep one scene per process
        gens[sequence] = SequenceGenerator(_WORKER["cfg"], sequence)
    gens[sequence].write_frame(_WORKER["out_root"], frame)


def generate(
    cfg: SynthConfig,
    out_root: str | Path,
    on_frame: Callable[[], None] | None = None,
    workers: int = 1,
) -> list[Path]:
    """Write all sequences of ``cfg``; returns their folders."""
    gens = [SequenceGenerator(cfg, seq) for seq in cfg.sequences]
    dirs = [g.write_metadata(out_root) for g in gens]
    if workers <= 1:
        for g in gens:
            for frame in range(g.scene.n_frames):
                g.write_frame(out_root, frame)
                if on_frame is not None:
                    on_frame()
        return dirs
    import multiprocessing as mp

    tasks = [(g.sequence, f) for g in gens for f in range(g.scene.n_frames)]
    with mp.get_context("spawn").Pool(workers, _init_worker, (cfg, str(out_root))) as pool:
        for _ in pool.imap(_worker_frame, tasks, chunksize=1):
            if on_frame is not None:
                on_frame()
    return dirs


def iter_frames(cfg: SynthConfig, sequence: str) -> Iterator[tuple[StereoFrame, FrameVoxels | None]]:
    """Frames of a sequence in memory, without writing anything."""
    gen = SequenceGenerator(cfg, sequence)
    for frame in range(gen.scene.n_frames):
        yield gen.frame(frame)
