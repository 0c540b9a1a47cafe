"""Run a model over whole KITTI odometry sequences and write SemanticKITTI predictions.

The model is loaded once by the caller (any runtime backend behind ``StereoInference``).
Each frame's labels go through ``learning_map_inv`` into
``<out>/sequences/NN/predictions/XXXXXX.label``, the layout the benchmark's validator
accepts, and nothing else is written into that tree: the validator refuses a zip with
any file it does not expect. Arrays and pictures are written only when asked, into a
separate folder. Frames are those listed in each sequence's ``voxels/`` folder (the
frames the benchmark scores: every 5th), or every image with ``all_frames``.
"""

from __future__ import annotations

import os
import re
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..classes import ClassSet
from ..data.kitti_odometry import KittiSequence
from ..data.semantic_kitti import (VOXEL_EXTENSIONS, semantic_kitti_factor, target_to_raw, upsample_labels,
                                   write_label)
from ..inference import StereoInference
from .evaluate import FrameError, prediction_path, sequence_name
from .frames import StereoFrameReader

_PREDICTION = re.compile(r"^sequences/[^/]+/predictions/\d{6}\.label$")


@dataclass(frozen=True)
class Extras:
    """What to write besides the submission, and where (never inside the submission tree)."""

    folder: Path
    npy: bool = False  # labels on the model grid, uint8 classes
    png: bool = False  # the picture occdepth-infer draws

    @property
    def wanted(self) -> bool:
        return self.npy or self.png


@dataclass
class PredictReport:
    written: list[Path] = field(default_factory=list)  # .label files, in order
    frames: dict[str, int] = field(default_factory=dict)  # per sequence
    seconds: float = 0.0


def submission_frames(seq: KittiSequence, all_frames: bool = False) -> list[str]:
    """The frames to predict: those with files in ``voxels/`` (the benchmark's list), or
    every left image with ``all_frames``."""
    if all_frames:
        return seq.frame_ids()
    stems = sorted({p.stem for p in seq.voxel_dir.glob("*") if p.suffix.lstrip(".") in VOXEL_EXTENSIONS}) \
        if seq.voxel_dir.is_dir() else []
    if not stems:
        raise FileNotFoundError(
            f"{seq.voxel_dir}: no voxel files; the benchmark expects a prediction for each frame listed "
            "there (every 5th frame), so predicting needs them; pass all_frames (--all-frames) to predict every image"
        )
    return stems


def submission_tree_problems(out: Path) -> list[str]:
    """Files under ``<out>/sequences`` that are not ``NN/predictions/XXXXXX.label``."""
    tree = out / "sequences"
    if not tree.is_dir():
        return []
    return sorted(str(p) for p in tree.rglob("*")
                  if not p.is_dir() and not _PREDICTION.match(p.relative_to(out).as_posix()))


def plan_frames(root: str | Path, sequences: list[str], out: str | Path, all_frames: bool = False,
                extras: Extras | None = None) -> list[tuple[KittiSequence, str]]:
    """Every (sequence, frame) to predict, checked before a model is loaded: the folders
    exist, the frames have both images, and ``<out>/sequences`` holds nothing that would
    end up in a submission by mistake (foreign files; stale predictions of these
    sequences that this run would not write; the extras folder)."""
    out = Path(out)
    if extras is not None and extras.wanted:
        folder, tree = extras.folder.resolve(), (out / "sequences").resolve()
        if folder == out.resolve() or tree in (folder, *folder.parents):
            raise ValueError(f"extras folder {extras.folder} lies inside the submission tree {out / 'sequences'}")
    jobs: list[tuple[KittiSequence, str]] = []
    for name in sequences:
        seq = KittiSequence(Path(root), sequence_name(name))
        frames = submission_frames(seq, all_frames)
        for frame in frames:
            seq.image_paths(frame)  # both images exist
        planned = {prediction_path(out, seq.sequence, f).name for f in frames}
        folder = prediction_path(out, seq.sequence, frames[0]).parent
        stale = sorted(p for p in folder.glob("*") if p.name not in planned) if folder.is_dir() else []
        if stale:
            raise ValueError(f"{folder} holds {len(stale)} file(s) this run would not write, e.g. {stale[0]}; "
                             "a submission must hold only the frames listed in voxels/: remove them or choose "
                             "another output folder")
        jobs += [(seq, f) for f in frames]
    foreign = submission_tree_problems(out)
    if foreign:
        raise ValueError(f"{out / 'sequences'} holds files that are not predictions, e.g. {foreign[0]}; "
                         "the submission tree holds only sequences/NN/predictions/XXXXXX.label")
    return jobs


def predict_sequences(
    engine: StereoInference,
    jobs: list[tuple[KittiSequence, str]],
    out: str | Path,
    class_set: ClassSet,
    extras: Extras | None = None,
    progress: bool = True,
) -> PredictReport:
    """Predict the frames ``plan_frames`` chose with the loaded ``engine``; see the module docstring."""
    out = Path(out)
    if class_set.name != "semantic_kitti":
        raise ValueError(f"the model predicts class set {class_set.name!r}; SemanticKITTI submissions need "
                         "'semantic_kitti'")
    grid = engine.cfg.grid
    k = semantic_kitti_factor(grid.origin, grid.extent, grid.voxel_size)  # raises, naming the grid
    reader = StereoFrameReader()
    report = PredictReport()
    start = time.perf_counter()
    bar = tqdm(jobs, desc="occdepth-predict", unit="frame", disable=not progress)
    for seq, frame in bar:
        bar.set_postfix_str(f"{seq.sequence}/{frame}", refresh=False)
        try:
            left, right, calib = reader.read(seq, frame)
            engine.set_calibration(calib)
            labels = engine.predict([left, right], with_confidence=False).labels
        except ValueError as exc:
            raise FrameError(f"sequence {seq.sequence} frame {frame}: {exc}") from exc
        path = prediction_path(out, seq.sequence, frame)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_label(path, target_to_raw(upsample_labels(labels, k), class_set), class_set)
        report.written.append(path)
        report.frames[seq.sequence] = report.frames.get(seq.sequence, 0) + 1
        if extras is not None and extras.wanted:
            _write_extras(extras, seq.sequence, frame, labels, left, class_set, engine.cfg.name)
    report.seconds = time.perf_counter() - start
    return report


def _write_extras(extras: Extras, sequence: str, frame: str, labels: np.ndarray, left: np.ndarray,
                  class_set: ClassSet, model_name: str) -> None:
    folder = extras.folder / sequence
    folder.mkdir(parents=True, exist_ok=True)
    if extras.npy:
        np.save(folder / f"{frame}.npy", labels)
    if extras.png:
        from ..viz.render import render_panel

        render_panel(labels, class_set, image=left, title=f"{model_name}: {sequence}/{frame}").save(
            folder / f"{frame}.png")


def check_zip_path(zip_path: str | Path) -> Path:
    """The benchmark takes a bundle whose name ends in .zip (checked before any inference)."""
    zip_path = Path(zip_path)
    if zip_path.suffix != ".zip":
        raise ValueError(f"{zip_path}: a submission bundle must end with .zip")
    return zip_path


def write_submission_zip(out: str | Path, zip_path: str | Path, progress: bool = True) -> list[str]:
    """Zip ``<out>/sequences`` as the benchmark wants it: a directory entry for
    ``sequences/``, each ``sequences/NN/`` and ``sequences/NN/predictions/`` (the validator
    looks for them), then the ``.label`` files. Refuses a tree holding anything else.
    Written to a temporary name first, so a failed run leaves no partial zip. Returns the
    member names."""
    out, zip_path = Path(out), check_zip_path(zip_path)
    foreign = submission_tree_problems(out)
    if foreign:
        raise ValueError(f"{out / 'sequences'} holds files that are not predictions, e.g. {foreign[0]}")
    labels = sorted((out / "sequences").glob("*/predictions/*.label"))
    if not labels:
        raise FileNotFoundError(f"no predictions under {out / 'sequences'}")
    names = []
    for path in labels:
        seq = path.parent.parent.name
        for directory in ("sequences/", f"sequences/{seq}/", f"sequences/{seq}/predictions/"):
            if directory not in names:
                names.append(directory)
        names.append(path.relative_to(out).as_posix())
    zip_path.parent.mkdir(parents=True, exist_ok=True)
    partial = zip_path.with_name(zip_path.name + ".partial")
    try:
        with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for name in tqdm(names, desc="zip", unit="file", disable=not progress):
                if name.endswith("/"):
                    entry = zipfile.ZipInfo(name)
                    entry.external_attr = (0o40755 << 16) | 0x10  # a directory, for unzip and the validator
                    zf.writestr(entry, b"")
                else:
                    zf.write(out / name, name)
        os.replace(partial, zip_path)
    finally:
        partial.unlink(missing_ok=True)
    return names
