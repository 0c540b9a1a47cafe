"""Cross-section of a straight street along world x: road, parking, sidewalk, terrain.

World frame: x along the street, y to the left, z up, road surface at z = 0.
The right side (y < 0) carries the ego's direction of travel (+x).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .config import RoadConfig
from .materials import pick_color
from .primitives import Box

LEFT, RIGHT = 1, -1


@dataclass(frozen=True)
class StreetSide:
    """One side of the street, distances measured from the centre line outwards."""

    sign: int  # LEFT (+y) or RIGHT (-y)
    road_edge: float
    parking_width: float  # 0: no parking lane on this side
    sidewalk_width: float
    terrain_width: float

    @property
    def curb(self) -> float:
        return self.road_edge + self.parking_width

    @property
    def sidewalk_outer(self) -> float:
        return self.curb + self.sidewalk_width

    @property
    def building_line(self) -> float:
        return self.sidewalk_outer + self.terrain_width

    def y(self, distance: float) -> float:
        """World y of a point ``distance`` metres out from the centre line on this side."""
        return self.sign * distance


@dataclass(frozen=True)
class Street:
    lanes_per_direction: int
    lane_width: float
    sides: tuple[StreetSide, StreetSide]  # (left, right)
    x_range: tuple[float, float]

    @property
    def road_half_width(self) -> float:
        return self.lanes_per_direction * self.lane_width

    def lane_center(self, lane: int, sign: int) -> float:
        """World y of lane ``lane`` (0 = next to the centre line) on side ``sign``."""
        return sign * (lane + 0.5) * self.lane_width

    @property
    def ego_lane_y(self) -> float:
        """The ego keeps to the outermost right lane."""
        return self.lane_center(self.lanes_per_direction - 1, RIGHT)


def draw_street(cfg: RoadConfig, rng: np.random.Generator, x_range: tuple[float, float]) -> Street:
    lanes = int(rng.choice(cfg.lanes_per_direction))
    half = lanes * cfg.lane_width
    sides = []
    for sign in (LEFT, RIGHT):
        parking = cfg.parking_width if rng.random() < cfg.parking_probability else 0.0
        sides.append(
            StreetSide(
                sign=sign,
                road_edge=half,
                parking_width=parking,
                sidewalk_width=float(rng.uniform(*cfg.sidewalk_width)),
                terrain_width=float(rng.uniform(*cfg.terrain_width)),
            )
        )
    return Street(lanes, cfg.lane_width, (sides[0], sides[1]), x_range)


def _band(
    cls: str,
    material: str,
    y_lo: float,
    y_hi: float,
    top: float,
    street: Street,
    cfg: RoadConfig,
    rng: np.random.Generator,
) -> Box:
    """A ground slab covering world y in [y_lo, y_hi] over the whole street length."""
    x0, x1 = street.x_range
    bottom = top - cfg.slab_depth
    return Box(
        cls=cls,
        material=material,
        color=pick_color(material, rng),
        salt=int(rng.integers(1 << 30)),
        center=(0.5 * (x0 + x1), 0.5 * (y_lo + y_hi), 0.5 * (top + bottom)),
        half=(0.5 * (x1 - x0), 0.5 * (y_hi - y_lo), 0.5 * (top - bottom)),
        voxel_layer=cfg.voxel_layer,
    )


def ground_slabs(street: Street, cfg: RoadConfig, rng: np.random.Generator) -> list[Box]:
    """Road, parking lanes, sidewalks and terrain as flat-topped slabs that tile the ground."""
    half = street.road_half_width
    slabs = [_band("road", "asphalt", -half, half, cfg.road_top, street, cfg, rng)]
    for side in street.sides:
        bands = [
            ("parking", "parking", side.road_edge, side.curb, cfg.parking_top),
            ("sidewalk", "paving", side.curb, side.sidewalk_outer, cfg.sidewalk_top),
            ("terrain", "grass", side.sidewalk_outer, cfg.outer_extent, cfg.terrain_top),
        ]
        for cls, material, near, far, top in bands:
            if far - near <= 0.0:
                continue
            y_a, y_b = sorted((side.y(near), side.y(far)))
            slabs.append(_band(cls, material, y_a, y_b, top, street, cfg, rng))
    return slabs
