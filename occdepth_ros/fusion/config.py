"""Every default of the temporal semantic map, in one place.

The map is a window of voxels in the odometry frame (z up) that moves with the robot. Its
voxels have the model grid's voxel size by default, it spans ``extent_xy_m`` in x and y
centred on the robot and the model grid's height band in z (relative to the robot).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

# Map extent in x and y, metres (centred on the robot).
DEFAULT_EXTENT_XY_M = 102.4
EMPTY = 0  # the class index of free space
OCCUPANCY_MODES = ("probability", "log_odds_mean", "log_odds_sum")


@dataclass(frozen=True)
class FusionConfig:
    """How the map is laid out and how evidence is weighed. The defaults were chosen on the
    training world 00 only (docs/MODEL_CARD.md, Temporal fusion).

    Evidence: each observation adds ``weight * P(occupied)`` to a voxel's occupancy sum and
    ``weight`` to its total, and ``weight * p`` to its per-class sums (``p`` the softmax
    probabilities of the occupied classes). ``weight`` falls with the voxel's range from
    the sensor at observation time, so near views count more than far ones.
    """

    voxel_size: float = 0.4  # m
    extent_xy_m: float = DEFAULT_EXTENT_XY_M  # window side in x and y, centred on the robot
    z_min_m: float = -2.0  # height band, relative to the robot's grid frame origin
    z_max_m: float = 4.4
    # Observation weight w(r) = 1 / (1 + (r / range_falloff_m) ** range_power), r the
    # distance of the voxel centre from the grid frame origin when observed.
    range_falloff_m: float = 20.0
    range_power: float = 2.0
    # Forgetting: a voxel's evidence is multiplied by decay ** (frames since its last
    # update) before new evidence is added (applied lazily, only to voxels in view).
    decay: float = 0.9
    # Class evidence fades more slowly: a voxel's class is told by many views, while its
    # occupancy must follow what the latest views see. Below 1, so the sums stay bounded
    # (at most 1 / (1 - class_decay) per class).
    class_decay: float = 0.98
    # The occupancy weight of a voxel is capped: older evidence is scaled down so the map
    # keeps adapting however long a voxel has been watched.
    max_weight: float = 8.0
    # Occupancy evidence: "probability" sums w * P(occupied) and compares the weighted
    # mean with occupied_threshold; "log_odds_mean" sums w * logit(P) (clamped to
    # +-log_odds_clamp) and compares the weighted mean with logit(occupied_threshold);
    # "log_odds_sum" compares the weighted sum itself (evidence adds up, as in occupancy mapping).
    occupancy: str = "probability"
    log_odds_clamp: float = 4.0
    # Occupied when the fused evidence of "not empty" reaches this probability.
    occupied_threshold: float = 0.55
    # Moving objects: when a new observation's most likely class is an occupied class
    # other than the voxel's fused class, with probability >= flip_confidence, and either
    # class is movable, the voxel's old evidence is multiplied by flip_keep first (the
    # object moved; a flip). So is the occupancy evidence of a voxel whose fused class is
    # movable when an observation says empty with probability >= flip_confidence (it left).
    flip_confidence: float = 0.9
    flip_keep: float = 0.25
    # A voxel predicted empty adds class evidence only when its P(occupied) is at least
    # this (else it is plain free space; saves searching every class for most voxels).
    class_min_occupied: float = 0.25
    # Weight of voxels predicted empty relative to occupied ones (free-space evidence).
    free_weight: float = 1.0

    def __post_init__(self) -> None:
        if self.voxel_size <= 0:
            raise ValueError(f"voxel_size must be positive, got {self.voxel_size}")
        if self.extent_xy_m < 2 * self.voxel_size:
            raise ValueError(f"extent_xy_m ({self.extent_xy_m}) must span at least two voxels")
        if self.z_max_m - self.z_min_m < self.voxel_size:
            raise ValueError(f"height band [{self.z_min_m}, {self.z_max_m}] is thinner than a voxel")
        if not 0.0 < self.decay <= 1.0:
            raise ValueError(f"decay must be in (0, 1], got {self.decay}")
        if not 0.0 < self.class_decay < 1.0:
            raise ValueError(f"class_decay must be in (0, 1), got {self.class_decay}")
        if not 0.0 <= self.flip_keep <= 1.0:
            raise ValueError(f"flip_keep must be in [0, 1], got {self.flip_keep}")
        for name in ("max_weight", "range_falloff_m", "range_power", "free_weight", "log_odds_clamp"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.occupancy not in OCCUPANCY_MODES:
            raise ValueError(f"occupancy must be one of {OCCUPANCY_MODES}, got {self.occupancy!r}")
        if not 0.0 < self.occupied_threshold < 1.0:
            raise ValueError(f"occupied_threshold must be in (0, 1), got {self.occupied_threshold}")

    @property
    def dims(self) -> tuple[int, int, int]:
        """Window size in voxels (x, y, z)."""
        n_xy = int(round(self.extent_xy_m / self.voxel_size))
        n_z = int(round((self.z_max_m - self.z_min_m) / self.voxel_size))
        return n_xy, n_xy, n_z

    @classmethod
    def parse_overrides(cls, items: list[str]) -> dict[str, float | str]:
        """``NAME=VALUE`` strings (a command line's) as field overrides, typed like the
        fields; an unknown name or a value of the wrong type is a ValueError naming it."""
        kinds = {f.name: type(getattr(cls(), f.name)) for f in fields(cls)}
        out: dict[str, float | str] = {}
        for item in items:
            name, sep, value = item.partition("=")
            if not sep or name not in kinds:
                raise ValueError(f"fusion setting {item!r}: expected NAME=VALUE with NAME one of {', '.join(kinds)}")
            try:
                out[name] = kinds[name](value)
            except ValueError:
                raise ValueError(f"fusion setting {name}: {value!r} is not a {kinds[name].__name__}") from None
        return out

    @classmethod
    def for_grid(cls, grid, **overrides) -> FusionConfig:
        """Defaults for a model grid (``GridConfig``): its voxel size and height band."""
        z0 = float(grid.origin[2])
        base = cls(voxel_size=float(grid.voxel_size), z_min_m=z0, z_max_m=z0 + grid.dims[2] * float(grid.voxel_size))
        return replace(base, **overrides)
