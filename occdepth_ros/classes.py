"""Semantic class sets (names, colours, weights, label remaps), read from config/classes."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import yaml

from .resources import config_path


@dataclass(frozen=True)
class ClassSet:
    name: str
    names: tuple[str, ...]
    colors: np.ndarray  # (n_classes, 3) uint8 RGB
    frequencies: np.ndarray  # (n_classes,) float64 voxel counts
    learning_map: dict[int, int]
    learning_map_inv: dict[int, int]
    movable: tuple[str, ...] = ()  # classes whose things move (the temporal map's flip rule)
    ignore_index: int = 255
    empty_index: int = 0

    @property
    def n_classes(self) -> int:
        return len(self.names)

    def class_weights(self) -> np.ndarray:
        """Cross-entropy weights 1/ln(f + 0.001), as the official training uses."""
        return 1.0 / np.log(self.frequencies + 0.001)

    def occupancy_weights(self) -> np.ndarray:
        """Weights of the cascade head's empty/occupied CE."""
        f = np.array([self.frequencies[0], self.frequencies[1:].sum()])
        return 1.0 / np.log(f + 0.001)

    def movable_mask(self) -> np.ndarray:
        """(n_classes,) bool: True for the movable classes."""
        return np.isin(np.array(self.names), self.movable)

    def remap_lut(self) -> np.ndarray:
        """Raw label id -> class lookup (uint8; ids beyond the table are the caller's to
        clip). Raw ids that the learning map sends to empty, other than 0 itself
        (outlier, other-structure, other-object), become ignore, as in OccDepth."""
        lut = np.full(max(self.learning_map) + 1, self.ignore_index, dtype=np.uint8)
        for raw, cls in self.learning_map.items():
            lut[raw] = cls if (cls != self.empty_index or raw == 0) else self.ignore_index
        return lut

    def inverse_lut(self) -> np.ndarray:
        """Class -> raw label id, for writing SemanticKITTI .label predictions."""
        lut = np.zeros(self.n_classes, dtype=np.uint16)
        for cls, raw in self.learning_map_inv.items():
            lut[cls] = raw
        return lut


@lru_cache(maxsize=None)
def load_class_set(name: str = "semantic_kitti") -> ClassSet:
    path = config_path("classes", f"{name}.yaml")
    if not path.is_file():
        raise FileNotFoundError(f"unknown class set {name!r}: no file {path}")
    raw = yaml.safe_load(path.read_text())
    colors = np.asarray(raw["colors"], dtype=np.uint8)
    freqs = np.asarray(raw["frequencies"], dtype=np.float64)
    names = tuple(raw["names"])
    if colors.shape != (len(names), 3) or freqs.shape != (len(names),):
        raise ValueError(f"{path}: colors/frequencies do not match {len(names)} names")
    movable = tuple(raw.get("movable", ()))
    unknown = sorted(set(movable) - set(names))
    if unknown:
        raise ValueError(f"{path}: movable names classes that do not exist: {unknown}")
    return ClassSet(
        name=raw["name"],
        names=names,
        colors=colors,
        frequencies=freqs,
        learning_map={int(k): int(v) for k, v in raw["learning_map"].items()},
        learning_map_inv={int(k): int(v) for k, v in raw["learning_map_inv"].items()},
        movable=movable,
        ignore_index=int(raw.get("ignore_index", 255)),
        empty_index=int(raw.get("empty_index", 0)),
    )
