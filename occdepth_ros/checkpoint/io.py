"""Checkpoint files: our safetensors format (weights + the config that built them)
and official PyTorch Lightning ``.ckpt`` / plain ``torch.save`` state dicts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import yaml

from ..model.config import ConfigError, ModelConfig, config_from_dict, load_preset
from ..model.occdepth import OccDepth
from ..resources import default_model_path
from .errors import CheckpointError
from .lightning import plain
from .restricted_unpickler import load_torch_zip
from .state_dict import check_state_dict

FORMAT_TAG = "occdepth_ros/1"
FALLBACK_PRESET = "compact"  # what tools run, untrained, when the default model is missing
SAFETENSORS_SUFFIX = ".safetensors"


def save_checkpoint(path: str | Path, model: OccDepth, meta: dict[str, Any] | None = None,
                    half: bool = False) -> Path:
    """Write weights and config; ``half`` stores floating tensors as float16 (smaller file)."""
    from safetensors.torch import save_file

    path = Path(path)
    tensors = {}
    for k, v in model.state_dict().items():
        v = v.detach().cpu().contiguous()
        tensors[k] = v.half() if half and v.is_floating_point() else v
    header = {
        "format": FORMAT_TAG,
        "config": model.cfg.to_yaml(),
        "meta": json.dumps(meta or {}),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata=header)
    return path


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], ModelConfig, dict[str, Any]]:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
            sd = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: cannot read safetensors file ({exc})") from exc
    if header.get("format") != FORMAT_TAG or "config" not in header:
        raise CheckpointError(f"{path}: not an occdepth_ros checkpoint (missing '{FORMAT_TAG}' header)")
    try:
        cfg = config_from_dict(yaml.safe_load(header["config"]), f"{path} config")
    except ConfigError as exc:
        raise CheckpointError(f"{path}: embedded config is invalid: {exc}") from exc
    return sd, cfg, json.loads(header.get("meta", "{}"))


def _read_torch(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    obj = load_torch_zip(path)
    if isinstance(obj, dict) and "state_dict" in obj:
        sd, meta = obj["state_dict"], {k: v for k, v in obj.items() if k in ("epoch", "global_step")}
        meta["pytorch-lightning_version"] = obj.get("pytorch-lightning_version")
        if "hyper_parameters" in obj:  # read back as plain data; nothing in it is run
            meta["hyper_parameters"] = plain(obj["hyper_parameters"])
    elif isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        sd, meta = obj, {}
    else:
        raise CheckpointError(f"{path}: holds neither a Lightning checkpoint nor a state dict")
    if not isinstance(sd, dict):
        raise CheckpointError(f"{path}: 'state_dict' is not a mapping")
    return dict(sd), meta


def load_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], ModelConfig | None, dict[str, Any]]:
    """(state_dict, config or None, meta). Official checkpoints carry no usable config:
    their hyper-parameters are OmegaConf objects that are never executed; ``meta``
    holds them read back as plain data (``meta["hyper_parameters"]``)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.suffix == SAFETENSORS_SUFFIX:
        sd, cfg, meta = _read_safetensors(path)
        return sd, cfg, meta
    sd, meta = _read_torch(path)
    return sd, None, meta


def choose_weights(checkpoint: str | Path | None, preset: str | None) -> tuple[Path | str | None, str | None, bool]:
    """(checkpoint, preset, untrained) for tools that run the shipped default model when
    nothing is named, and the untrained compact preset if even that file is missing."""
    if checkpoint or preset:
        return checkpoint or None, preset or None, False
    default = default_model_path()
    if default.is_file():
        return default, None, False
    return None, FALLBACK_PRESET, True


def load_model(
    checkpoint: str | Path | None = None,
    preset: str | None = None,
    config: ModelConfig | None = None,
) -> OccDepth:
    """Build the network and load weights strictly.

    The architecture comes from ``config``, else ``preset``, else the checkpoint's own
    config; an official ``.ckpt`` defaults to the released ``kitti_b3_f32`` preset.
    With no checkpoint the weights stay randomly initialised.
    """
    sd, ckpt_cfg, _ = load_checkpoint(checkpoint) if checkpoint is not None else (None, None, {})
    if config is None:
        config = load_preset(preset) if preset else ckpt_cfg
    if config is None:
        config = load_preset("kitti_b3_f32")
    model = OccDepth(config)
    if sd is not None:
        check_state_dict(model, sd, str(checkpoint))
        expected = model.state_dict()
        model.load_state_dict({k: v.to(expected[k].dtype) for k, v in sd.items()}, strict=True)
    return model.eval()
