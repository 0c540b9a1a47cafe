"""A network's class prior: the mean class distribution it predicts over the voxels its
cameras see, measured on the frames it was trained on (``occdepth-class-prior``).

Every frame's probabilities carry that prior. The temporal map sums class evidence over many
frames and divides it out before choosing a voxel's class (``RollingSemanticMap``), so a
rare class the frames agree on is not outvoted by a common class each frame leans to. The
prior belongs to one set of weights: it lives in a small YAML file beside them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from ..classes import ClassSet
from ..resources import default_class_prior_path, default_model_path

FORMAT_TAG = "occdepth_ros/class_prior/1"


@dataclass(frozen=True)
class ClassPrior:
    probabilities: np.ndarray  # (n_classes,) float64, positive, sums to 1; index 0 is empty
    class_set: str  # the class set the indices follow
    model: str  # the weights it was measured for
    frames: int  # how many frames were averaged
    data: str  # where the frames came from

    def to_yaml(self) -> str:
        header = ("# The network's mean class distribution over the voxels its cameras see, on its training\n"
                  "# frames (occdepth-class-prior). The temporal map divides class evidence by it.\n")
        body = {"format": FORMAT_TAG, "class_set": self.class_set, "model": self.model, "frames": int(self.frames),
                "data": self.data, "probabilities": [float(f"{p:.6g}") for p in self.probabilities]}
        return header + yaml.safe_dump(body, sort_keys=False, width=100)


def save_class_prior(path: str | Path, prior: ClassPrior) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(prior.to_yaml())
    return path


def load_class_prior(path: str | Path, class_set: ClassSet) -> ClassPrior:
    """Read and check a prior file: its format, its class set, one positive finite number
    per class (renormalised to sum to 1). ValueError names what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"class prior not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not YAML ({exc})") from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT_TAG:
        raise ValueError(f"{path}: not a class prior file (format {FORMAT_TAG!r} expected)")
    if raw.get("class_set") != class_set.name:
        raise ValueError(f"{path}: measured for class set {raw.get('class_set')!r}, the model's is {class_set.name!r}")
    try:
        p = np.asarray(raw.get("probabilities"), dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{path}: probabilities must be a list of numbers") from None
    if p.shape != (class_set.n_classes,) or not np.all(np.isfinite(p)) or np.any(p <= 0):
        raise ValueError(f"{path}: probabilities must be {class_set.n_classes} positive finite numbers, "
                         f"got {raw.get('probabilities')!r}")
    return ClassPrior(p / p.sum(), class_set.name, str(raw.get("model", "")), int(raw.get("frames", 0)),
                      str(raw.get("data", "")))


AUTO = ""  # the shipped model's prior when the shipped model runs, else none
NONE = "none"  # no prior: each voxel takes the class with the most evidence


def resolve_class_prior(setting: str, checkpoint: str | Path | None,
                        class_set: ClassSet) -> tuple[ClassPrior | None, str]:
    """(prior or None, a line that says which and why) for a setting (AUTO, NONE or a path)
    and the weights that run (``checkpoint``; None: untrained)."""
    if setting == NONE:
        return None, "class prior: none (as set): each map voxel takes the class with the most evidence"
    if setting == AUTO:
        if checkpoint is None or Path(checkpoint).resolve() != default_model_path().resolve():
            return None, ("class prior: none (the model is not the shipped default; occdepth-class-prior measures "
                          "one): each map voxel takes the class with the most evidence")
        default = default_class_prior_path()
        if not default.is_file():
            return None, f"class prior: none ({default} is missing): each map voxel takes the class with the most evidence"
        setting = str(default)
    prior = load_class_prior(setting, class_set)
    return prior, f"class prior: {setting} (measured for {prior.model} on {prior.frames} frames)"
