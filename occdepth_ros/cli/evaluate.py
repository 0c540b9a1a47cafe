"""occdepth-eval: SemanticKITTI SC/SSC metrics over the labelled frames of KITTI-layout
sequences, of a model (or the SGBM baseline) run on the images, or of existing .label
predictions (--predictions DIR holding sequences/NN/predictions/XXXXXX.label, as
occdepth-predict or any other method writes them); prints the per-class table.
--fuse runs the model over every frame in order, fuses the frames into the temporal map
with the sequences' poses, and scores the fused map beside the single frames."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..checkpoint import CheckpointError, choose_weights, load_model
from ..classes import ClassSet, load_class_set
from ..eval.evaluate import (evaluate, labelled_frames, model_predictor, prediction_reader, score_frames,
                             sequence_name, sgbm_predictor)
from ..eval.metrics import SSCResult, format_table
from ..fusion import FusionConfig
from ..fusion.class_prior import AUTO, resolve_class_prior
from ..inference import StereoInference
from ..model.config import ConfigError
from ..resources import default_model_path
from ..runtime import BackendError
from ..runtime.factory import BACKEND_CHOICES, PRECISIONS


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="occdepth-eval", description=__doc__)
    p.add_argument("--data", required=True, help="dataset root holding sequences/<seq>/ (images, voxels/)")
    p.add_argument("--sequences", nargs="+", required=True)
    source = p.add_mutually_exclusive_group()
    source.add_argument("--checkpoint", help="weights; default: the shipped default model")
    source.add_argument("--baseline", choices=["sgbm"], help="score the classical stereo baseline instead")
    source.add_argument("--predictions", help="score existing .label files under DIR/sequences/NN/predictions/")
    p.add_argument("--preset", help="architecture for official .ckpt files")
    p.add_argument("--backend", default="torch", choices=BACKEND_CHOICES,
                   help="runtime that scores the model (default: eager torch, as the model card's tables)")
    p.add_argument("--precision", default="fp32", choices=PRECISIONS,
                   help="int8: the quantised ONNX graph on onnxruntime (docs/INT8.md)")
    p.add_argument("--frame-stride", type=int, default=1)
    p.add_argument("--max-frames", type=int)
    p.add_argument("--threads", type=int)
    p.add_argument("--json", help="also write the metrics here")
    p.add_argument("--fuse", action="store_true",
                   help="also score the temporal map: every frame fused with the sequence's poses.txt, scored at the "
                        "labelled frames beside the single-frame prediction, also split into the voxels inside and "
                        "outside the frame's view (docs/MODEL_CARD.md, Temporal fusion)")
    p.add_argument("--odometry-noise", action="store_true",
                   help="with --fuse: also fuse with injected odometry drift (1%% of distance, 0.5 deg per 10 m)")
    p.add_argument("--noise-seed", type=int, default=0, help="seed of the injected drift's signs")
    p.add_argument("--picture", nargs=2, metavar=("SEQ/FRAME", "PNG"),
                   help="with --fuse: draw that labelled frame's single-frame, fused and ground-truth bird's-eye "
                        "views side by side, e.g. --picture 08/000050 docs/fusion_bev.png")
    p.add_argument("--fusion", action="append", default=[], metavar="NAME=VALUE",
                   help="with --fuse: a FusionConfig setting other than its default (repeatable), e.g. "
                        "--fusion decay=1e-6 (a map without memory)")
    p.add_argument("--class-prior", metavar="YAML",
                   help="with --fuse: the network's class prior (occdepth-class-prior), or 'none'; default: the "
                        "shipped model's when the shipped model runs, else none")
    return p


def metrics_json(result: SSCResult, class_set: ClassSet) -> dict:
    """The metrics block of the JSON report."""
    return {"sc_iou": result.sc_iou, "sc_precision": result.sc_precision, "sc_recall": result.sc_recall,
            "miou": result.miou, "class_iou": dict(zip(class_set.names, map(float, result.class_iou)))}


def report(result: SSCResult, class_set: ClassSet, name: str, data: str, sequences: list[str], n_frames: int,
           json_path: str | None) -> None:
    """The table on stdout and, if asked, the JSON: the same for every source of predictions."""
    print(f"\n{name} on {data} sequences {' '.join(sequences)}: {n_frames} frames\n")
    print(format_table(result, class_set.names))
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(json.dumps({
            "model": name, "sequences": sequences, "frames": n_frames, **metrics_json(result, class_set),
        }, indent=1))


def report_fused(scores, class_set: ClassSet, name: str, data: str, sequences: list[str],
                 json_path: str | None) -> None:
    """--fuse: a table per variant (single frame, fused, fused with drift), a per-sequence
    summary and, if asked, the JSON holding all of them."""
    from ..eval.fused import IN_VIEW, OUT_OF_VIEW, SINGLE

    titles = {"single": "single frame", "fused": "fused (temporal map)",
              "fused_drift": "fused with odometry drift (1 % of distance, 0.5 deg per 10 m)"}
    print(f"\n{name} on {data} sequences {' '.join(sequences)}: {scores.frames_scored} labelled frames scored, "
          f"{scores.frames_fused} frames fused\n")
    for variant, result in scores.total.items():
        print(f"{titles[variant]}:\n")
        print(format_table(result, class_set.names))
        print()
    variants = list(scores.total)
    print("SC IoU / mIoU (%) | " + " | ".join(titles[v] for v in variants))
    for seq, res in [*scores.per_sequence.items(), ("all", scores.total)]:
        print(f"{seq} | " + " | ".join(f"{100 * res[v].sc_iou:.2f} / {100 * res[v].miou:.2f}" for v in variants))
    single = scores.total[SINGLE]
    for v in variants[1:]:
        r = scores.total[v]
        print(f"{titles[v]} - single frame: SC IoU {100 * (r.sc_iou - single.sc_iou):+.2f}, "
              f"mIoU {100 * (r.miou - single.miou):+.2f}")
    print("\nby region, all sequences: SC IoU / mIoU (%) | " + " | ".join(titles[v] for v in variants))
    names = {IN_VIEW: "in the frame's view", OUT_OF_VIEW: "outside the frame's view"}
    for region, res in scores.regions.items():
        cells = [f"{100 * res[v].sc_iou:.2f} / {100 * res[v].miou:.2f}" if res[v].n_evaluated else "no voxel scored"
                 for v in variants]
        share = res[SINGLE].n_evaluated / max(1, single.n_evaluated)
        print(f"{names[region]} ({100 * share:.1f} % of the scored voxels) | " + " | ".join(cells))
    print(f"fusion (integrate + render) median {scores.fusion_ms_median:.1f} ms per frame")
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(json.dumps({
            "model": name, "sequences": sequences, "frames": scores.frames_scored,
            "frames_fused": scores.frames_fused, "fusion_ms_median": scores.fusion_ms_median,
            **{v: metrics_json(r, class_set) for v, r in scores.total.items()},
            "per_sequence": {seq: {v: metrics_json(r, class_set) for v, r in res.items()}
                             for seq, res in scores.per_sequence.items()},
            "regions": {region: {v: {**metrics_json(r, class_set), "voxels_scored": r.n_evaluated}
                                 for v, r in res.items()}
                        for region, res in scores.regions.items()},
        }, indent=1))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    class_set = load_class_set()
    sequences = [sequence_name(s) for s in args.sequences]
    stride_and_cap = (args.frame_stride, args.max_frames)
    try:
        if args.odometry_noise and not args.fuse:
            raise ValueError("--odometry-noise drifts the poses the temporal map fuses; it needs --fuse")
        if args.fuse and (args.predictions or args.baseline):
            raise ValueError("--fuse fuses the model's class probabilities; --predictions and --baseline have none")
        if args.picture and not args.fuse:
            raise ValueError("--picture draws the fused map beside the single frame; it needs --fuse")
        if args.class_prior is not None and not args.fuse:
            raise ValueError("--class-prior weighs the temporal map's class evidence; it needs --fuse")
        if args.fusion and not args.fuse:
            raise ValueError("--fusion sets the temporal map's parameters; it needs --fuse")
        fusion_overrides = FusionConfig.parse_overrides(args.fusion)
        if args.fuse and (args.frame_stride != 1 or args.max_frames is not None):
            raise ValueError("--fuse runs every frame of each sequence in order; --frame-stride and --max-frames "
                             "would break the sequence")
        if args.predictions:
            if args.preset:
                raise ValueError("--preset names a model; --predictions scores files, no model runs")
            name = f"predictions {args.predictions}"
            jobs = labelled_frames(args.data, sequences, *stride_and_cap)
            reader = prediction_reader(args.predictions, jobs, class_set)
            result, n_frames = score_frames(jobs, reader, class_set, desc="score predictions"), len(jobs)
        else:
            if args.baseline == "sgbm":
                name, predict = "SGBM stereo baseline (SC only)", sgbm_predictor()
            else:
                checkpoint, preset, untrained = choose_weights(args.checkpoint, args.preset)
                if untrained:
                    print(f"warning: {default_model_path()} not found; scoring UNTRAINED {preset} weights",
                          file=sys.stderr)
                if args.backend == "torch" and args.precision == "fp32":
                    model = load_model(checkpoint, preset=preset)
                    name = f"{model.cfg.name} ({checkpoint})"
                    engine = StereoInference(model, threads=args.threads)
                else:  # the exporter turns the checkpoint into the file the runtime runs
                    from occdepth_export.backends import create_backend

                    backend = create_backend(args.backend, checkpoint, preset, threads=args.threads,
                                             precision=args.precision)
                    name = f"{backend.cfg.name} ({checkpoint}; {backend.describe()})"
                    engine = StereoInference(backend, threads=args.threads)
                if args.fuse:
                    from ..eval.fused import Picture, evaluate_fused

                    picture = None
                    if args.picture:
                        where, png = args.picture
                        if where.count("/") != 1:
                            raise ValueError(f"--picture: expected SEQ/FRAME (e.g. 08/000050), got {where!r}")
                        seq_name, frame = where.split("/")
                        picture = Picture(sequence_name(seq_name), frame.zfill(6), Path(png))
                    fusion_cfg = FusionConfig.for_grid(engine.cfg.grid, **fusion_overrides)
                    prior, prior_line = resolve_class_prior(args.class_prior or AUTO, checkpoint, class_set)
                    print(prior_line, file=sys.stderr)
                    name += f"; {prior_line}"
                    scores = evaluate_fused(engine, args.data, sequences, class_set, fusion_cfg=fusion_cfg,
                                            odometry_noise=args.odometry_noise, noise_seed=args.noise_seed,
                                            picture=picture,
                                            class_prior=None if prior is None else prior.probabilities)
                    report_fused(scores, class_set, name, args.data, sequences, args.json)
                    return 0
                predict = model_predictor(engine)
            result, n_frames = evaluate(predict, args.data, sequences, class_set, *stride_and_cap)
    except (CheckpointError, ConfigError, FileNotFoundError, ValueError, BackendError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    report(result, class_set, name, args.data, sequences, n_frames, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
