"""Model configuration: one dataclass tree, loaded from YAML presets in config/models.

The official code hard-codes KITTI's image size, grid and depth range in several
files; here they all live in one place so a different camera or grid is a YAML edit.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..resources import config_path


class ConfigError(ValueError):
    """A model configuration is inconsistent or names something unknown."""


@dataclass(frozen=True)
class ImageConfig:
    """Network input: every input image is brought to (height, width) first."""

    height: int = 370
    width: int = 1220
    # "crop": keep the top-left height x width pixels (official; intrinsics unchanged
    # but the principal point), "resize": scale the whole image (intrinsics scaled).
    fit: str = "crop"
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class GridConfig:
    """The output voxel grid, in the grid frame (velodyne for KITTI: x fwd, y left, z up)."""

    origin: tuple[float, float, float] = (0.0, -25.6, -2.0)  # corner of voxel (0, 0, 0), m
    dims: tuple[int, int, int] = (256, 256, 32)  # output voxels along x, y, z
    voxel_size: float = 0.2  # m
    # The 3D network works at voxel_size * project_scale; the head upsamples back.
    project_scale: int = 2

    @property
    def feature_dims(self) -> tuple[int, int, int]:
        s = self.project_scale
        return (self.dims[0] // s, self.dims[1] // s, self.dims[2] // s)

    @property
    def feature_voxel_size(self) -> float:
        return self.voxel_size * self.project_scale

    @property
    def extent(self) -> tuple[float, float, float]:
        return tuple(d * self.voxel_size for d in self.dims)  # type: ignore[return-value]


@dataclass(frozen=True)
class DepthConfig:
    """OAD: the occupancy-aware depth prior (camera-aware depth net + frustum sampling)."""

    enabled: bool = True
    d_min: float = 2.0  # m
    d_max: float = 54.0  # m
    d_step: float = 0.5  # m; bins = (d_max - d_min) / d_step, uniform in the depth loss
    # How the frustum sampler reads the bins. "lid" is the released code's quirk: the loss
    # trains uniform bins but the sampler indexes them as LID bins, so a voxel reads the
    # channel of a farther depth (at 20 m, the one trained for ~33 m). Official weights need
    # it. "uniform" reads the channels as the loss trains them (for models trained anew).
    sampler_bins: str = "lid"
    mid_channels: int = 128
    feature_scale: int = 8  # the depth net runs on the 1/8 2D features
    gate_scale: float = 100.0  # x3d = sfa * occupancy * gate_scale

    @property
    def n_bins(self) -> int:
        return int((self.d_max - self.d_min) / self.d_step)


@dataclass(frozen=True)
class ModelConfig:
    name: str = "kitti_b3_f32"
    backbone: str = "tf_efficientnet_b3_ns"
    feature: int = 32  # 2D output channels == 3D feature channels
    # 2D decoder width; None = the backbone's head width (official). Stage widths are
    # this /2, /4, ... /32, so it must be a multiple of 32.
    decoder_channels: int | None = None
    class_set: str = "semantic_kitti"
    n_classes: int = 20
    n_views: int = 2
    sfa_scales: tuple[int, ...] = (1, 2, 4, 8)
    # How the views' features are fused per voxel: "cosine" is Stereo-SFA (official);
    # "mean" averages the views that see the voxel (the paper's fusion ablation).
    sfa_fusion: str = "cosine"
    context_prior: bool = True  # CRP
    n_relations: int = 4
    cascade_head: bool = True
    share_2d_backbone_gradient: bool = True  # training: right view under no_grad
    image: ImageConfig = field(default_factory=ImageConfig)
    grid: GridConfig = field(default_factory=GridConfig)
    depth: DepthConfig = field(default_factory=DepthConfig)

    def __post_init__(self) -> None:
        validate(self)

    def to_dict(self) -> dict[str, Any]:
        return _to_plain(dataclasses.asdict(self))

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


SUPPORTED_SCALES = (1, 2, 4, 8, 16)


def validate(cfg: ModelConfig) -> None:
    """Reject configurations the network cannot be built for, naming the field."""
    g = cfg.grid
    if g.project_scale not in (1, 2):
        raise ConfigError(f"grid.project_scale must be 1 or 2, got {g.project_scale}")
    for d in g.dims:
        if d % (4 * g.project_scale):
            raise ConfigError(
                f"grid.dims {g.dims}: each must be divisible by 4 * project_scale "
                f"= {4 * g.project_scale} (two 3D downsamplings)"
            )
    if cfg.context_prior and any((d // g.project_scale // 4) % 2 for d in g.dims):
        raise ConfigError(f"grid.dims {g.dims}: CRP needs the 1/4 feature grid to be even")
    if g.voxel_size <= 0:
        raise ConfigError("grid.voxel_size must be positive")
    if cfg.feature % 4 or cfg.feature < 8:
        raise ConfigError(f"feature must be a multiple of 4 and >= 8, got {cfg.feature}")
    if cfg.decoder_channels is not None and (cfg.decoder_channels <= 0 or cfg.decoder_channels % 32):
        raise ConfigError(f"decoder_channels must be a positive multiple of 32, got {cfg.decoder_channels}")
    if not cfg.sfa_scales or any(s not in SUPPORTED_SCALES for s in cfg.sfa_scales):
        raise ConfigError(f"sfa_scales must be drawn from {SUPPORTED_SCALES}, got {cfg.sfa_scales}")
    if cfg.sfa_fusion not in ("cosine", "mean"):
        raise ConfigError(f"sfa_fusion must be 'cosine' or 'mean', got {cfg.sfa_fusion!r}")
    if cfg.n_views < 1:
        raise ConfigError("n_views must be >= 1")
    if cfg.image.fit not in ("crop", "resize"):
        raise ConfigError(f"image.fit must be 'crop' or 'resize', got {cfg.image.fit!r}")
    if cfg.image.height < 32 or cfg.image.width < 32:
        raise ConfigError("image height and width must be at least 32 pixels")
    d = cfg.depth
    if d.enabled:
        if not (0 < d.d_min < d.d_max) or d.d_step <= 0 or d.n_bins < 2:
            raise ConfigError(f"depth range [{d.d_min}, {d.d_max}] step {d.d_step} is invalid")
        if d.feature_scale not in SUPPORTED_SCALES:
            raise ConfigError(f"depth.feature_scale must be one of {SUPPORTED_SCALES}")
        if d.sampler_bins not in ("lid", "uniform"):
            raise ConfigError(f"depth.sampler_bins must be 'lid' or 'uniform', got {d.sampler_bins!r}")
    if not cfg.backbone.startswith("tf_efficientnet_b") or not cfg.backbone.endswith("_ns"):
        raise ConfigError(f"backbone must be one of tf_efficientnet_b0_ns .. b7_ns, got {cfg.backbone!r}")


def _to_plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_to_plain(v) for v in obj]
    return obj


def _build(cls: type, data: dict[str, Any], where: str) -> Any:
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; known: {sorted(known)}")
    kwargs: dict[str, Any] = {}
    nested = {"image": ImageConfig, "grid": GridConfig, "depth": DepthConfig}
    for key, value in data.items():
        if cls is ModelConfig and key in nested:
            if not isinstance(value, dict):
                raise ConfigError(f"{where}.{key}: expected a mapping")
            kwargs[key] = _build(nested[key], value, f"{where}.{key}")
        elif isinstance(value, list):
            kwargs[key] = tuple(value)
        else:
            kwargs[key] = value
    return cls(**kwargs)


def config_from_dict(data: dict[str, Any], where: str = "config") -> ModelConfig:
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping at the top level")
    return _build(ModelConfig, data, where)


def load_config(path: str | Path) -> ModelConfig:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"model config not found: {path}")
    return config_from_dict(yaml.safe_load(path.read_text()), str(path))


def preset_names() -> list[str]:
    return sorted(p.stem for p in config_path("models").glob("*.yaml"))


def load_preset(name: str) -> ModelConfig:
    path = config_path("models", f"{name}.yaml")
    if not path.is_file():
        raise ConfigError(f"unknown preset {name!r}; presets: {', '.join(preset_names())}")
    return load_config(path)
