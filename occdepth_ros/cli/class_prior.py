"""occdepth-class-prior: measure a network's class prior, the mean class distribution it
predicts over the voxels its cameras see, on the frames it was trained on. The temporal
map divides its class evidence by it (docs/FUSION.md). Example (the shipped model's):

    occdepth-class-prior --data out/synth --sequences 00 01 02 03 04 05 --frame-stride 2 \\
        --out models/default.class_prior.yaml
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..checkpoint import CheckpointError, choose_weights, load_model
from ..classes import load_class_set
from ..eval.class_prior import estimate_class_prior
from ..eval.evaluate import FrameError
from ..fusion.class_prior import ClassPrior, save_class_prior
from ..inference import StereoInference
from ..model.config import ConfigError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="occdepth-class-prior", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="dataset root holding sequences/<seq>/ (image_2, image_3, calib.txt)")
    p.add_argument("--sequences", nargs="+", required=True, help="the network's training sequences")
    p.add_argument("--checkpoint", help="weights; default: the shipped default model")
    p.add_argument("--preset", help="architecture for official .ckpt files")
    p.add_argument("--frame-stride", type=int, default=1, help="every N-th frame (default: all)")
    p.add_argument("--threads", type=int)
    p.add_argument("--out", required=True, help="the YAML file to write")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    class_set = load_class_set()
    try:
        checkpoint, preset, _ = choose_weights(args.checkpoint, args.preset)
        if checkpoint is None:  # a prior belongs to trained weights, never to a random network
            raise ValueError("no weights: name --checkpoint (the shipped default model is used only when neither "
                             "--checkpoint nor --preset is given, and it must exist)")
        model = load_model(checkpoint, preset=preset)
        if model.cfg.class_set != class_set.name:
            raise ValueError(f"the model's class set is {model.cfg.class_set!r}; this tool knows {class_set.name!r}")
        probs, frames = estimate_class_prior(StereoInference(model, threads=args.threads), args.data, args.sequences,
                                             args.frame_stride)
    except (CheckpointError, ConfigError, FileNotFoundError, FrameError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    data = f"{args.data} sequences {' '.join(args.sequences)}, frame stride {args.frame_stride}"
    prior = ClassPrior(probs, class_set.name, Path(checkpoint).name, frames, data)
    out = save_class_prior(args.out, prior)
    for name, p in zip(class_set.names, probs):
        print(f"{name:15s} {p:.6f}")
    print(f"wrote {out} ({frames} frames)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
