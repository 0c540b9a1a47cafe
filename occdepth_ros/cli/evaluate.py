"""occdepth-eval: SemanticKITTI SC/SSC metrics of a model (or the SGBM baseline) over
the labelled frames of KITTI-layout sequences; prints the per-class table."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..checkpoint import CheckpointError, choose_weights, load_model
from ..classes import load_class_set
from ..eval.evaluate import evaluate, model_predictor, sgbm_predictor
from ..eval.metrics import format_table
from ..inference import StereoInference
from ..model.config import ConfigError
from ..resources import default_model_path


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="occdepth-eval", description=__doc__)
    p.add_argument("--data", required=True, help="dataset root holding sequences/<seq>/")
    p.add_argument("--sequences", nargs="+", required=True)
    p.add_argument("--checkpoint", help="weights; default: the shipped default model")
    p.add_argument("--preset", help="architecture for official .ckpt files")
    p.add_argument("--baseline", choices=["sgbm"], help="score the classical stereo baseline instead")
    p.add_argument("--frame-stride", type=int, default=1)
    p.add_argument("--max-frames", type=int)
    p.add_argument("--threads", type=int)
    p.add_argument("--json", help="also write the metrics here")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    class_set = load_class_set()
    try:
        if args.baseline == "sgbm":
            name, predict = "SGBM stereo baseline (SC only)", sgbm_predictor()
        else:
            checkpoint, preset, untrained = choose_weights(args.checkpoint, args.preset)
            if untrained:
                print(f"warning: {default_model_path()} not found; scoring UNTRAINED {preset} weights",
                      file=sys.stderr)
            model = load_model(checkpoint, preset=preset)
            name = f"{model.cfg.name} ({checkpoint})"
            predict = model_predictor(StereoInference(model, threads=args.threads))
        result, n_frames = evaluate(predict, args.data, args.sequences, class_set, args.frame_stride, args.max_frames)
    except (CheckpointError, ConfigError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"\n{name} on {args.data} sequences {' '.join(args.sequences)}: {n_frames} frames\n")
    print(format_table(result, class_set.names))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({
            "model": name, "sequences": args.sequences, "frames": n_frames,
            "sc_iou": result.sc_iou, "sc_precision": result.sc_precision, "sc_recall": result.sc_recall,
            "miou": result.miou, "class_iou": dict(zip(class_set.names, map(float, result.class_iou))),
        }, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
