"""occdepth-export-onnx: a checkpoint (default: the shipped model) or preset -> ONNX,
checked against eager torch in ONNX Runtime on one stereo pair."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

from occdepth_ros.checkpoint.errors import CheckpointError
from occdepth_ros.checkpoint.io import choose_weights, load_model
from occdepth_ros.model.config import ConfigError

from .onnx_export import ExportError, export_onnx


def random_images(rng: np.random.Generator, n_views: int) -> list[np.ndarray]:
    """Random uint8 RGB images of KITTI odometry 00-02's size (the checks' inputs)."""
    from occdepth_ros.geometry.calib import KITTI_IMAGE_SIZE

    return [rng.integers(0, 256, (*KITTI_IMAGE_SIZE, 3), dtype=np.uint8) for _ in range(n_views)]


def compare_with_torch(model, onnx_path: Path, seed: int = 0, threads: int | None = None) -> dict[str, float]:
    """Eager torch vs ONNX Runtime on one random pair with the KITTI calibration:
    max |logit diff| / max |logit|, share of equal labels, and both run times."""
    from occdepth_ros.geometry.calib import shipped_kitti_calibration
    from occdepth_ros.inference import StereoInference
    from occdepth_ros.runtime.ort_backend import OrtBackend

    calib = shipped_kitti_calibration()
    images = random_images(np.random.default_rng(seed), model.cfg.n_views)
    out = {}
    logits = {}
    for name, engine in (("torch", StereoInference(model)), ("onnxruntime", StereoInference(OrtBackend(onnx_path, threads=threads)))):
        engine.set_calibration(calib)
        start = time.perf_counter()
        logits[name] = engine.logits(images)
        out[f"{name}_s"] = time.perf_counter() - start
    ref, got = logits["torch"], logits["onnxruntime"]
    out["max_rel_err"] = float((ref - got).abs().max() / ref.abs().max().clamp(min=1e-12))
    out["label_agreement"] = float((ref.argmax(1) == got.argmax(1)).double().mean())
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="occdepth-export-onnx", description=__doc__)
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--checkpoint", help="weights (.safetensors or official .ckpt); default: the shipped model")
    src.add_argument("--preset", help="export a preset with random weights (for engines and benchmarks)")
    ap.add_argument("--out", type=Path, required=True, help="the .onnx file to write")
    ap.add_argument("--no-check", action="store_true", help="skip the ONNX Runtime vs torch comparison")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        ckpt, preset, untrained = choose_weights(args.checkpoint, args.preset)
        model = load_model(ckpt, preset=preset)
    except (CheckpointError, ConfigError, FileNotFoundError) as exc:
        print(f"occdepth-export-onnx: {exc}", file=sys.stderr)
        return 2
    source = str(ckpt) if ckpt else f"preset {preset}" + (" (untrained)" if untrained or args.preset else "")
    print(f"exporting {model.cfg.name} from {source} ...", flush=True)
    start = time.perf_counter()
    try:
        result = export_onnx(model, args.out, source=source)
    except ExportError as exc:
        print(f"occdepth-export-onnx: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {result.path} ({result.size_bytes / 1e6:.1f} MB, {result.n_nodes} nodes, one StereoVoxelSample) "
          f"in {time.perf_counter() - start:.1f} s; onnx.checker full_check passed")
    if not args.no_check:
        cmp = compare_with_torch(model, result.path, threads=args.threads)
        print(f"ONNX Runtime vs torch on one pair: max rel logit error {cmp['max_rel_err']:.2e}, "
              f"labels equal on {100 * cmp['label_agreement']:.4f}% of voxels "
              f"(torch {cmp['torch_s']:.2f} s, onnxruntime {cmp['onnxruntime_s']:.2f} s, first run)")
        if cmp["label_agreement"] < 0.9999 or cmp["max_rel_err"] >= 1e-4:
            print("occdepth-export-onnx: ONNX Runtime disagrees with torch beyond tolerance", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
