"""occdepth-inspect: config, parameter counts and state-dict keys of a preset or checkpoint.

``occdepth-inspect --preset kitti_b3_f32 --keys`` prints one ``key<TAB>shape<TAB>dtype``
line per entry, the format of the official state-dict listings, so ``diff`` compares them.
"""

from __future__ import annotations

import argparse
import sys

import torch

from ..checkpoint import CheckpointError, load_checkpoint
from ..checkpoint.state_dict import describe_checkpoint, state_dict_problems
from ..model import OccDepth, load_preset
from ..model.config import ConfigError

PARTS = (
    ("2D encoder", "net_rgb.encoder."),
    ("2D decoder", "net_rgb.decoder."),
    ("3D UNet + CRP + head", "net_3d_decoder."),
    ("depth net (OAD)", "flosp_depth."),
)

# The entries of an official training config that decide the architecture.
OFFICIAL_CONFIG_KEYS = ("dataset", "backbone_2d_name", "feature", "feature_2d_oc", "full_scene_size",
                        "project_scale", "n_classes", "multi_view_mode", "trans_2d_to_3d", "context_prior",
                        "cascade_cls")


def key_lines(sd: dict[str, torch.Tensor]) -> list[str]:
    return [f"{k}\t{tuple(v.shape)}\t{v.dtype}" for k, v in sd.items()]


def parameter_table(model: OccDepth) -> str:
    counts = {name: 0 for name, _ in PARTS}
    for key, p in model.named_parameters():
        for name, prefix in PARTS:
            if key.startswith(prefix):
                counts[name] += p.numel()
    total = sum(p.numel() for p in model.parameters())
    rows = [f"| {name} | {n:,} |" for name, n in counts.items()] + [f"| **total** | **{total:,}** |"]
    return "\n".join(["| part | parameters |", "|---|---:|", *rows])


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="occdepth-inspect", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", help="model preset name (config/models/<name>.yaml)")
    p.add_argument("--checkpoint", help="a .safetensors, Lightning .ckpt or torch state-dict file")
    p.add_argument("--keys", action="store_true", help="print only key<TAB>shape<TAB>dtype lines")
    p.add_argument("--diff", action="store_true", help="compare the checkpoint against the preset")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.preset and not args.checkpoint:
        args.preset = "kitti_b3_f32"
    try:
        sd, ckpt_cfg, meta = load_checkpoint(args.checkpoint) if args.checkpoint else (None, None, {})
        cfg = load_preset(args.preset) if args.preset else ckpt_cfg
        if args.keys:
            if sd is None:
                sd = OccDepth(cfg).state_dict()
            print("\n".join(key_lines(sd)))
            return 0
        if args.diff:
            if sd is None or cfg is None:
                print("--diff needs --checkpoint and a preset (or a checkpoint that names its config)",
                      file=sys.stderr)
                return 2
            problems = state_dict_problems(OccDepth(cfg), sd)
            if problems:
                print(f"checkpoint does not fit preset {cfg.name!r} "
                      f"(it looks like: {describe_checkpoint(sd)}):")
                print("\n".join(f"- {p}" for p in problems))
                return 1
            print(f"checkpoint fits preset {cfg.name!r}: {len(sd)} entries, names, shapes match")
            return 0
        if sd is not None:
            print(f"checkpoint: {args.checkpoint}\n  entries: {len(sd)}\n  looks like: {describe_checkpoint(sd)}")
            hparams = meta.get("hyper_parameters")
            scalars = {k: v for k, v in meta.items() if k != "hyper_parameters"}
            if scalars:
                print(f"  meta: {scalars}")
            if isinstance(hparams, dict) and isinstance(hparams.get("config"), dict):
                official = hparams["config"]
                shown = {k: official[k] for k in OFFICIAL_CONFIG_KEYS if k in official}
                print(f"  training config: {shown}")
        if cfg is None:
            print("no config: pass --preset to see the model this checkpoint would load into")
            return 0
        print(f"\n# config {cfg.name}\n{cfg.to_yaml()}")
        print(parameter_table(OccDepth(cfg)))
        return 0
    except (CheckpointError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
