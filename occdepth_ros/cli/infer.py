"""occdepth-infer: a stereo pair + calibration -> semantic voxels (.npy), a picture (.png)
and, for models on the SemanticKITTI volume, the benchmark's .label.

The .label goes to <out>/predictions/<name>.label, apart from the .npy and .png, so a
predictions/ folder never holds anything the benchmark's validator refuses. For whole
sequences and a submission, use occdepth-predict (the model is loaded once).

Without --checkpoint/--preset it runs the shipped default model (models/default.safetensors);
without that file it falls back to the compact preset with untrained weights and says so.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from ..checkpoint import CheckpointError, choose_weights, load_model
from ..classes import load_class_set
from ..data.images import ImageReadError, read_rgb
from ..data.semantic_kitti import semantic_kitti_factor, target_to_raw, to_semantic_kitti_grid, write_label
from ..geometry.calib import CalibrationError, load_calibration_file
from ..inference import InputError, StereoInference
from ..model.config import ConfigError, GridConfig
from ..resources import default_model_path
from ..viz.render import render_panel


def to_benchmark_grid(labels: np.ndarray, grid: GridConfig) -> np.ndarray | None:
    return to_semantic_kitti_grid(labels, grid.origin, grid.extent, grid.voxel_size)


def label_problem(grid: GridConfig, class_set_name: str) -> str:
    """Why this model's output cannot be written as a SemanticKITTI .label ("" if it can)."""
    if class_set_name != "semantic_kitti":
        return f"the model predicts class set {class_set_name!r}, not SemanticKITTI's"
    try:
        semantic_kitti_factor(grid.origin, grid.extent, grid.voxel_size)
    except ValueError as exc:
        return str(exc)
    return ""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="occdepth-infer", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--left", required=True, help="left (reference) image")
    p.add_argument("--right", required=True, help="right image")
    p.add_argument("--calib", required=True, help="KITTI calib.txt (P2, P3, Tr) or stereo YAML")
    p.add_argument("--checkpoint", help="weights (.safetensors, official .ckpt, state dict)")
    p.add_argument("--preset", help="model preset (needed for official .ckpt files of other configs)")
    p.add_argument("--out", default="out/infer", help="output folder")
    p.add_argument("--name", default="prediction", help="output file stem")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        checkpoint, preset, untrained = choose_weights(args.checkpoint, args.preset)
        if untrained:
            print(f"warning: {default_model_path()} not found; using the {preset} preset with UNTRAINED weights",
                  file=sys.stderr)
        t0 = time.perf_counter()
        model = load_model(checkpoint, preset=preset)
        engine = StereoInference(model, threads=args.threads)
        left, right = read_rgb(args.left), read_rgb(args.right)
        engine.set_calibration(load_calibration_file(args.calib, left.shape[:2]))
        t1 = time.perf_counter()
        pred = engine.predict([left, right])
        t2 = time.perf_counter()
    except (CheckpointError, ConfigError, CalibrationError, InputError, ImageReadError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    cfg = model.cfg
    class_set = load_class_set(cfg.class_set)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / f"{args.name}.npy", pred.labels)
    written = [f"{args.name}.npy"]
    no_label = label_problem(cfg.grid, class_set.name)
    if no_label:
        print(f"warning: no .label written: {no_label}", file=sys.stderr)
    else:
        (out / "predictions").mkdir(exist_ok=True)
        write_label(out / "predictions" / f"{args.name}.label",
                    target_to_raw(to_benchmark_grid(pred.labels, cfg.grid), class_set), class_set)
        written.append(f"predictions/{args.name}.label")
    title = f"{cfg.name}{' (UNTRAINED weights)' if checkpoint is None else ''}: {Path(args.left).name}  ({(t2 - t1) * 1e3:.0f} ms)"
    render_panel(pred.labels, class_set, image=left, title=title).save(out / f"{args.name}.png")
    written.append(f"{args.name}.png")
    counts = np.bincount(pred.labels.reshape(-1), minlength=class_set.n_classes)
    print(f"model {cfg.name}: load {t1 - t0:.2f} s, inference {t2 - t1:.2f} s, grid {pred.labels.shape}")
    print("occupied voxels per class: " + ", ".join(
        f"{class_set.names[c]} {n}" for c, n in enumerate(counts) if n and c != class_set.empty_index))
    print(f"wrote {', '.join(str(out / w) for w in written)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
