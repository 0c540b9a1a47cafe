"""Files shaped as PyTorch Lightning 1.4.9 writes them for the official OccDepth configs.

The official training script keeps its Hydra config (an OmegaConf 2.0 DictConfig) in
``hyper_parameters``; Lightning 1.4 writes ``dict(model.hparams)`` there, callback
states keyed by the callback class, optimizer and scheduler state dicts, all through
``torch.save`` (pickle protocol 2). The OmegaConf and Lightning classes below are real
classes under the module and qualified names the real packages use, registered in
``sys.modules`` only while a file is written (or read back by the reference loader),
so the pickle stream names them exactly as a real file does (``omegaconf.listconfig
ListConfig``, ``__builtin__ long`` for a ListConfig's ``key_type=int``, ...) while the
loader under test never finds them importable.

Deliberate differences from a real file, to keep fixtures small: optimizer moments
are kept for the first few parameters only.
"""

from __future__ import annotations

import collections
import enum
import math
import sys
import types
import typing
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import torch

# The official configs' entries (OccDepth occdepth/config/semantic_kitti/
# multicam_flospdepth_crp_stereodepth_cascadecls_2080ti.yaml and occdepth/config/NYU/
# multicam_flosp_crp_stereodepth_cascadecls_2080ti.yaml), in file order.
_COMMON_TRAINING = {
    "max_epochs": 30, "gradient_clip_val": 35,
}
KITTI_CONFIG: dict[str, Any] = {
    "dataset": "kitti", "n_relations": 4, "enable_log": True,
    "data_root": "/data/dataset/KITTI_Odometry_Semantic",
    "data_preprocess_root": "/data/dataset/kitti_semantic_preprocess",
    "data_stereo_depth_root": "/data/dataset/KITTI_Odometry_Stereo_Depth",
    "data_lidar_depth_root": "/data/dataset/KITTI_Odometry_Lidar_Depth", "logdir": "logdir",
    **_COMMON_TRAINING,
    "use_stereo_depth_gt": True, "use_lidar_depth_gt": False, "use_depth_gt": False, "depth_loss_weight": 1.0,
    "deterministic": False, "use_strong_img_aug": False, "sem_step_decay_loss": False, "fp_loss": True,
    "frustum_size": 8, "batch_size_per_gpu": 1, "n_gpus": 1, "num_workers_per_gpu": 0, "exp_prefix": "kitti_exp",
    "run": 1, "lr": 2e-4, "weight_decay": 1e-4, "context_prior": True, "relation_loss": True, "CE_ssc_loss": True,
    "sem_scal_loss": True, "geo_scal_loss": True, "project_1_2": True, "project_1_4": True, "project_1_8": True,
    "ckpt": "", "multi_view_mode": True, "pattern_id": 0, "full_scene_size": [256, 256, 32], "project_scale": 2,
    "feature": 32, "feature_2d_oc": 32, "n_classes": 20, "backbone_2d_name": "tf_efficientnet_b3_ns",
    "return_up_feats": 1, "cascade_cls": True, "occluded_cls": False, "trans_2d_to_3d_debug": False,
    "trans_2d_to_3d": "flosp_depth",
}
NYU_CONFIG: dict[str, Any] = {
    "dataset": "NYU", "n_relations": 4, "enable_log": True, "data_root": "/data/dataset/NYU_dataset/depthbin/",
    "data_preprocess_root": "/data/dataset/NYU_dataset_preprocess", "data_stereo_depth_root": "",
    "data_lidar_depth_root": "", "logdir": "logdir", **_COMMON_TRAINING,
    "use_stereo_depth_gt": False, "use_lidar_depth_gt": False, "use_depth_gt": True, "depth_loss_weight": 1.0,
    "deterministic": False, "use_strong_img_aug": False, "sem_step_decay_loss": False,
    "share_2d_backbone_gradient": True, "fp_loss": True, "frustum_size": 8, "batch_size_per_gpu": 1, "n_gpus": 1,
    "num_workers_per_gpu": 0, "exp_prefix": "nyu_exp", "run": 1, "lr": 2e-4, "weight_decay": 1e-4,
    "context_prior": False, "relation_loss": True, "CE_ssc_loss": True, "sem_scal_loss": True,
    "geo_scal_loss": True, "project_1_2": True, "project_1_4": True, "project_1_8": True, "ckpt": "",
    "multi_view_mode": False, "pattern_id": 0, "full_scene_size": [60, 36, 60], "project_scale": 1,
    "feature": 100, "feature_2d_oc": 100, "n_classes": 12, "backbone_2d_name": "tf_efficientnet_b4_ns",
    "return_up_feats": 1, "cascade_cls": False, "occluded_cls": False, "trans_2d_to_3d_debug": False,
    "trans_2d_to_3d": "flosp",
}
# Class frequencies of SemanticKITTI (classes 0..19); the official weights are 1 / ln(f + 0.001).
KITTI_FREQUENCIES = [5.41773033e09, 1.57835390e07, 1.25136000e05, 1.18809000e05, 6.46799000e05, 8.21951000e05,
                     2.62978000e05, 2.83696000e05, 2.04750000e05, 6.16887030e07, 4.50296100e06, 4.48836500e07,
                     2.26992300e06, 5.68402180e07, 1.57196520e07, 1.58442623e08, 2.06162300e06, 3.69705220e07,
                     1.15198800e06, 3.34146000e05]
NYU_CLASSES = ["empty", "ceiling", "floor", "wall", "window", "chair", "bed", "sofa", "table", "tvs", "furn", "objs"]
OPTIMIZER_STATE_PARAMS = 3  # optimizer moments kept for this many parameters (a real file has all)

_MODULES = ("omegaconf", "omegaconf.base", "omegaconf.nodes", "omegaconf.dictconfig", "omegaconf.listconfig",
            "pytorch_lightning", "pytorch_lightning.callbacks", "pytorch_lightning.callbacks.model_checkpoint",
            "pytorch_lightning.utilities", "pytorch_lightning.utilities.enums")


def _place(module: str):
    def wrap(cls: type) -> type:
        cls.__module__ = module
        return cls
    return wrap


@_place("omegaconf.base")
@dataclass
class Metadata:
    ref_type: Any
    object_type: Any
    optional: bool
    key: Any
    flags: dict = field(default_factory=dict)


@_place("omegaconf.base")
@dataclass
class ContainerMetadata(Metadata):
    key_type: Any = None
    element_type: Any = None


@_place("omegaconf.nodes")
class AnyNode:
    """A leaf value, as OmegaConf holds every untyped config entry."""

    def __init__(self, value: Any, key: Any, parent: Any) -> None:
        self._val = value
        self._metadata = Metadata(ref_type=typing.Any, object_type=None, optional=True, key=key)
        self._parent = parent


def _node(value: Any, key: Any, parent: Any) -> Any:
    if isinstance(value, dict):
        return DictConfig(value, key, parent)
    if isinstance(value, list):
        return ListConfig(value, key, parent)
    return AnyNode(value, key, parent)


@_place("omegaconf.dictconfig")
class DictConfig:
    def __init__(self, content: dict, key: Any = None, parent: Any = None, flags: dict | None = None) -> None:
        self._metadata = ContainerMetadata(ref_type=typing.Any, object_type=dict, optional=True, key=key,
                                           flags=dict(flags or {}), key_type=typing.Any, element_type=typing.Any)
        self._parent = parent
        self._content = {k: _node(v, k, self) for k, v in content.items()}

    def __getstate__(self) -> dict:
        return dict(self.__dict__)


@_place("omegaconf.listconfig")
class ListConfig:
    def __init__(self, content: list, key: Any = None, parent: Any = None) -> None:
        # OmegaConf records a list's key type as int: torch.save writes it as __builtin__.long.
        self._metadata = ContainerMetadata(ref_type=typing.Any, object_type=list, optional=True, key=key,
                                           key_type=int, element_type=typing.Any)
        self._parent = parent
        self._content = [_node(v, i, self) for i, v in enumerate(content)]

    def __getstate__(self) -> dict:
        return dict(self.__dict__)


@_place("pytorch_lightning.callbacks.model_checkpoint")
class ModelCheckpoint:
    """Lightning 1.4 keys callback states by the callback's class."""


# A str-valued Lightning enum, the kind of value hyper-parameters may hold.
DistributedType = enum.Enum("DistributedType", {"DP": "dp", "DDP": "ddp"}, type=str,
                            module="pytorch_lightning.utilities.enums", qualname="DistributedType")

_CLASSES = {"omegaconf.base": (Metadata, ContainerMetadata), "omegaconf.nodes": (AnyNode,),
            "omegaconf.dictconfig": (DictConfig,), "omegaconf.listconfig": (ListConfig,),
            "pytorch_lightning.callbacks.model_checkpoint": (ModelCheckpoint,),
            "pytorch_lightning.utilities.enums": (DistributedType,)}


@contextmanager
def official_classes_importable() -> Iterator[None]:
    """Make the OmegaConf/Lightning stand-ins importable under their real names."""
    clashes = [m for m in _MODULES if m in sys.modules]
    if clashes:
        raise RuntimeError(f"real packages are imported ({clashes}); the fixtures need their names free")
    for name in _MODULES:
        sys.modules[name] = types.ModuleType(name)
    for name, classes in _CLASSES.items():
        for cls in classes:
            setattr(sys.modules[name], cls.__qualname__, cls)
    try:
        yield
    finally:
        for name in _MODULES:
            sys.modules.pop(name, None)


@contextmanager
def storages_tagged(location: str) -> Iterator[None]:
    """torch.save records each storage's device; tag them as a GPU training run does."""
    import torch.serialization as ser

    original = ser.location_tag
    ser.location_tag = lambda storage: location
    try:
        yield
    finally:
        ser.location_tag = original


@dataclass(frozen=True)
class OfficialRun:
    """What one official training run puts in its checkpoint besides the weights."""

    config: dict
    class_names: list
    class_weights: list
    class_weights_occ: list
    monitor: str = "val/mIoU"
    best_score: float = 0.1284


KITTI_RUN = OfficialRun(
    KITTI_CONFIG,
    class_names=["empty", "car", "bicycle", "motorcycle", "truck", "other-vehicle", "person", "bicyclist",
                 "motorcyclist", "road", "parking", "sidewalk", "other-ground", "building", "fence", "vegetation",
                 "trunk", "terrain", "pole", "traffic-sign"],
    class_weights=[1 / math.log(f + 0.001) for f in KITTI_FREQUENCIES],
    class_weights_occ=[1 / math.log(f + 0.001) for f in (KITTI_FREQUENCIES[0], sum(KITTI_FREQUENCIES[1:]))],
)
NYU_RUN = OfficialRun(NYU_CONFIG, class_names=NYU_CLASSES, class_weights=[0.05] + [1.0] * 11,
                      class_weights_occ=[0.05, 2.0], best_score=0.2934)


def lightning_checkpoint(state_dict: dict[str, torch.Tensor], run: OfficialRun, extra_config: dict | None = None,
                         ) -> dict:
    """The dict Lightning 1.4.9 hands to torch.save (call inside official_classes_importable)."""
    config = DictConfig({**run.config, **(extra_config or {})}, flags={"struct": True})
    params = list(state_dict.values())
    moments = {i: {"step": torch.tensor(115020.0), "exp_avg": torch.zeros_like(p), "exp_avg_sq": torch.zeros_like(p)}
               for i, p in enumerate(params[:OPTIMIZER_STATE_PARAMS]) if p.is_floating_point()}
    lr = run.config["lr"]
    score = torch.tensor(run.best_score)
    return {
        "epoch": 29,
        "global_step": 115020,
        "pytorch-lightning_version": "1.4.9",
        "state_dict": collections.OrderedDict(state_dict),
        "callbacks": {ModelCheckpoint: {"monitor": run.monitor, "best_model_score": score,
                                        "best_model_path": "/logdir/exp/checkpoints/epoch=029.ckpt",
                                        "current_score": score, "dirpath": "/logdir/exp/checkpoints"}},
        "optimizer_states": [{"state": moments, "param_groups": [{
            "lr": lr * 0.4 ** 2, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": run.config["weight_decay"],
            "amsgrad": False, "maximize": False, "foreach": None, "capturable": False, "initial_lr": lr,
            "params": list(range(len(params)))}]}],
        "lr_schedulers": [{"milestones": collections.Counter({18: 1, 24: 1}), "gamma": 0.4, "base_lrs": [lr],
                           "last_epoch": 30, "_step_count": 31, "verbose": False,
                           "_get_lr_called_within_step": False, "_last_lr": [lr * 0.4 ** 2]}],
        "hparams_name": "kwargs",
        "hyper_parameters": {
            "class_names": list(run.class_names),
            "class_weights": torch.tensor(run.class_weights, dtype=torch.float64),
            "class_weights_occ": torch.tensor(run.class_weights_occ, dtype=torch.float64),
            "full_scene_size": config._content["full_scene_size"],
            "project_res": ["1", "2", "4", "8"],
            "config": config,
            "infer_mode": False,
            "distributed_backend": DistributedType.DDP,
        },
    }


def save_lightning_checkpoint(path: str | Path, state_dict: dict[str, torch.Tensor], run: OfficialRun = KITTI_RUN,
                              extra_config: dict | None = None, location: str = "cuda:0") -> Path:
    """Write the file with torch.save (pickle protocol 2), every storage tagged ``location``."""
    with official_classes_importable(), storages_tagged(location):
        torch.save(lightning_checkpoint(state_dict, run, extra_config), path)
    return Path(path)


def reference_load(path: str | Path) -> dict:
    """The file read back by torch.load with the stand-in classes importable: the
    independent reference for what the restricted loader must return."""
    with official_classes_importable():
        return torch.load(path, map_location="cpu", weights_only=False)
