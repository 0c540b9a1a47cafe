"""occdepth-predict: a model over whole KITTI odometry sequences -> a SemanticKITTI submission.

The model is loaded once. Each frame listed in a sequence's voxels/ folder is predicted
from its stereo pair with that sequence's own calib.txt and image size, and written as
<out>/sequences/NN/predictions/XXXXXX.label (raw ids through learning_map_inv), nothing
else in that tree. --zip bundles it for the benchmark. Examples:

    occdepth-predict --data kitti --split test --checkpoint occdepth.ckpt --preset kitti_b3_f32 \\
        --out out/submission --zip
    occdepth-predict --data kitti --sequences 08 --out out/val08 --backend onnxruntime
    occdepth-eval --data kitti --sequences 08 --predictions out/val08
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ..checkpoint import CheckpointError, choose_weights
from ..classes import load_class_set
from ..data.images import ImageReadError
from ..data.semantic_kitti import SEMANTIC_KITTI_SPLITS
from ..eval.predict import Extras, check_zip_path, plan_frames, predict_sequences, write_submission_zip
from ..inference import InputError, StereoInference
from ..model.config import ConfigError
from ..resources import default_model_path
from ..runtime.base import BackendError
from ..runtime.factory import BACKEND_CHOICES, PRECISIONS
from ..runtime.ort_providers import ORT_PROVIDER_CHOICES


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="occdepth-predict", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="KITTI odometry root holding sequences/NN/ (image_2, image_3, "
                                                 "calib.txt, voxels/)")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--sequences", nargs="+", help="sequence ids, e.g. 08 or 11 12 ... 21")
    which.add_argument("--split", choices=sorted(SEMANTIC_KITTI_SPLITS),
                       help="the benchmark's sequences: val = 08, test = 11-21 (the submission)")
    p.add_argument("--out", required=True, help="output root: sequences/NN/predictions/XXXXXX.label go below it")
    p.add_argument("--checkpoint", help="weights (.safetensors, official Lightning .ckpt, state dict), an .onnx "
                                        "(onnxruntime, tensorrt) or an .engine (tensorrt); default: the shipped model")
    p.add_argument("--preset", help="architecture for official .ckpt files (the released one: kitti_b3_f32)")
    p.add_argument("--backend", choices=BACKEND_CHOICES, default="torch",
                   help="runtime; auto = the fastest present (an ONNX export or engine is built once and cached)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--precision", choices=PRECISIONS, default="fp32", help="TensorRT engine precision")
    p.add_argument("--ort-provider", choices=ORT_PROVIDER_CHOICES, default="",
                   help="ONNX Runtime execution provider; empty = the best installed for --device")
    p.add_argument("--threads", type=int, help="CPU threads")
    p.add_argument("--all-frames", action="store_true",
                   help="predict every image, not only the frames listed in voxels/ (not a valid submission)")
    p.add_argument("--zip", nargs="?", const="", metavar="PATH",
                   help="also write the submission zip (default PATH: <out>/submission.zip)")
    p.add_argument("--npy", action="store_true", help="also save each frame's labels (model grid) as .npy")
    p.add_argument("--png", action="store_true", help="also save each frame's picture")
    p.add_argument("--extras", help="folder for --npy/--png, outside the submission tree (default: <out>/extras)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    out = Path(args.out)
    sequences = list(SEMANTIC_KITTI_SPLITS[args.split]) if args.split else args.sequences
    extras = Extras(Path(args.extras) if args.extras else out / "extras", npy=args.npy, png=args.png)
    try:
        from occdepth_export.backends import create_backend

        zip_path = None if args.zip is None else check_zip_path(args.zip or out / "submission.zip")
        jobs = plan_frames(args.data, sequences, out, args.all_frames, extras)
        checkpoint, preset, untrained = choose_weights(args.checkpoint, args.preset)
        if untrained:
            print(f"warning: {default_model_path()} not found; predicting with UNTRAINED {preset} weights",
                  file=sys.stderr)
        t0 = time.perf_counter()
        backend = create_backend(args.backend, checkpoint, preset, device=args.device, threads=args.threads,
                                 precision=args.precision, ort_provider=args.ort_provider)
        engine = StereoInference(backend, threads=args.threads)
        load_s = time.perf_counter() - t0
        class_set = load_class_set(engine.cfg.class_set)
        report = predict_sequences(engine, jobs, out, class_set, extras)
        zipped = [] if zip_path is None else \
            sorted({name.split("/")[1] for name in write_submission_zip(out, zip_path) if name.count("/") > 1})
    except (CheckpointError, ConfigError, BackendError, InputError, ImageReadError, FileNotFoundError,
            ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    n = len(report.written)
    per_seq = ", ".join(f"{s}: {c}" for s, c in report.frames.items())
    print(f"model {engine.cfg.name} ({getattr(backend, 'selection', None) or args.backend}) loaded once in "
          f"{load_s:.1f} s; {n} frames in {report.seconds:.1f} s ({report.seconds / max(n, 1):.2f} s/frame)")
    print(f"wrote {out / 'sequences'}/NN/predictions/*.label ({per_seq})")
    if extras.wanted:
        print(f"wrote {'.npy' if args.npy else ''}{' and ' if args.npy and args.png else ''}"
              f"{'.png' if args.png else ''} files to {extras.folder}")
    if zip_path is not None:
        note = "" if zipped == list(SEMANTIC_KITTI_SPLITS["test"]) else \
            f" with sequences {' '.join(zipped)}; the benchmark expects exactly the test sequences 11-21"
        print(f"wrote {zip_path}{note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
