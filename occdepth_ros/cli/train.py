"""occdepth-train: train or fine-tune OccDepth on KITTI-layout sequences.

Example (the default model): occdepth-train --data DATA --train 00 01 02 03 04 05 --val 06 \\
    --preset compact --epochs 6 --seed 42 --out runs/default
Fine-tune the released model: --preset kitti_b3_f32 --init occdepth.ckpt
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

import torch

from ..checkpoint import CheckpointError, load_checkpoint, load_model, save_checkpoint
from ..model.config import ConfigError, load_config, load_preset
from ..train.losses import LossConfig
from ..train.trainer import TrainConfig, Trainer


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="occdepth-train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="dataset root holding sequences/<seq>/")
    p.add_argument("--train", nargs="+", required=True, help="training sequences")
    p.add_argument("--val", nargs="*", default=[], help="validation sequences (best model by val mIoU)")
    model = p.add_mutually_exclusive_group()
    model.add_argument("--preset", default="compact", help="model preset")
    model.add_argument("--config", help="model config YAML")
    p.add_argument("--fusion", choices=["cosine", "mean"], help="override the view fusion (ablation)")
    p.add_argument("--init", help="start from these weights (fine-tuning); same architecture")
    p.add_argument("--resume", action="store_true", help="continue from --out/last.*")
    p.add_argument("--out", default="runs/train")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--frustum-size", type=int, default=8)
    p.add_argument("--no-augment", action="store_true")
    p.add_argument("--val-frame-stride", type=int, default=1)
    p.add_argument("--threads", type=int)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--max-steps", type=int)
    p.add_argument("--time-budget-min", type=float)
    p.add_argument("--export", help="write the final model (best by val mIoU, else last) here, float16")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        cfg = load_config(args.config) if args.config else load_preset(args.preset)
        if args.fusion:
            cfg = dataclasses.replace(cfg, sfa_fusion=args.fusion, name=f"{cfg.name}-{args.fusion}")
        train_cfg = TrainConfig(
            data_root=args.data, train_sequences=args.train, val_sequences=args.val, out_dir=args.out,
            epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, frustum_size=args.frustum_size,
            augment=not args.no_augment, val_frame_stride=args.val_frame_stride, seed=args.seed,
            threads=args.threads, max_steps=args.max_steps, time_budget_min=args.time_budget_min,
        )
        resume_weights = f"{args.out}/last.safetensors" if args.resume else None
        init = resume_weights or args.init
        torch.manual_seed(args.seed)  # before the model exists: its random init is part of the run
        model = load_model(init, config=cfg)  # init None: random weights
        trainer = Trainer(model, train_cfg, LossConfig())
        if args.resume and not trainer.resume():
            print(f"error: nothing to resume in {args.out}", file=sys.stderr)
            return 2
        trainer.train()
    except (CheckpointError, ConfigError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.export:
        best = trainer.out / "best.safetensors"
        source = best if best.is_file() else trainer.out / "last.safetensors"
        _, _, meta = load_checkpoint(source)
        save_checkpoint(args.export, load_model(source), meta={**meta, "source": source.name}, half=True)
        print(f"exported {args.export} (float16 weights) from {source}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
