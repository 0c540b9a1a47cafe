"""Strict state-dict checks with a diff a person can read."""

from __future__ import annotations

from collections import Counter

import torch
from torch import nn

from .errors import CheckpointError

MAX_LISTED = 12


def _group(keys: list[str]) -> str:
    """Summarise keys by their first two name components, e.g. 'net_rgb.decoder (34 keys)'."""
    groups = Counter(".".join(k.split(".")[:2]) for k in keys)
    return ", ".join(f"{g} ({n})" for g, n in groups.most_common())


def describe_checkpoint(sd: dict[str, torch.Tensor]) -> str:
    """A hint at what architecture a state dict belongs to."""
    hints = []
    head = sd.get("net_rgb.encoder.original_model.conv_head.weight")
    if head is not None:
        widths = {1280: "b0/b1", 1408: "b2", 1536: "b3", 1792: "b4", 2048: "b5", 2304: "b6", 2560: "b7"}
        hints.append(f"EfficientNet-{widths.get(head.shape[0], '?')} (head width {head.shape[0]})")
    out = sd.get("net_rgb.decoder.resize_output_1_1.weight")
    if out is not None:
        hints.append(f"feature {out.shape[0]}")
    hints.append("CRP" if any(k.startswith("net_3d_decoder.CP_mega_voxels") for k in sd) else "no CRP")
    hints.append("cascade head" if "net_3d_decoder.ssc_head.occ_classes.weight" in sd else "plain head")
    hints.append("OAD" if any(k.startswith("flosp_depth.") for k in sd) else "no OAD")
    return ", ".join(hints)


def state_dict_problems(model: nn.Module, sd: dict[str, torch.Tensor]) -> list[str]:
    expected = model.state_dict()
    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in sd if k not in expected]
    shape = [
        f"{k}: checkpoint {tuple(sd[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in sd and tuple(sd[k].shape) != tuple(v.shape)
    ]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing keys in {_group(missing)}: " + ", ".join(missing[:MAX_LISTED]))
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys in {_group(unexpected)}: " + ", ".join(unexpected[:MAX_LISTED]))
    if shape:
        problems.append(f"{len(shape)} shape mismatches: " + "; ".join(shape[:MAX_LISTED]))
    return problems


def check_state_dict(model: nn.Module, sd: dict[str, torch.Tensor], source: str = "checkpoint") -> None:
    """Raise CheckpointError with a readable diff unless ``sd`` fits ``model`` exactly."""
    bad = [k for k, v in sd.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{source}: entries that are not tensors: {', '.join(bad[:MAX_LISTED])}")
    problems = state_dict_problems(model, sd)
    if problems:
        cfg = getattr(model, "cfg", None)
        target = f"model {cfg.name!r}" if cfg is not None else "the model"
        raise CheckpointError(
            f"{source} does not fit {target}.\n  checkpoint looks like: {describe_checkpoint(sd)}\n  - "
            + "\n  - ".join(problems)
        )
