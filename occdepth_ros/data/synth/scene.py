"""A seeded street scene: ground, buildings, vegetation, furniture, traffic, people, ego path.

Each sequence draws its own layout from ``(seed, sequence)``. Everything stands still
unless ``ObjectConfig.traffic_speed_mps`` sets the lane traffic driving (``Scene.at``
gives the world of a frame); parked cars, people and everything else never move.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, replace

import numpy as np

from . import objects
from .config import ObjectConfig, RoadConfig, SynthConfig
from .materials import MarkingLayout
from .primitives import Pose2D, Primitive, aabbs, shifted
from .street import RIGHT, Street, StreetSide, draw_street, ground_slabs
from .trajectory import draw_step, ego_poses

BEHIND_MARGIN_M = 30.0  # world built behind the first frame (parked cars seen when turning)
AHEAD_MARGIN_M = 20.0  # and beyond the last frame's visible range


@dataclass(frozen=True)
class Scene:
    sequence: str
    street: Street
    primitives: tuple[Primitive, ...]
    bounds: np.ndarray  # (N, 2, 3) world AABB of each primitive
    egos: tuple[Pose2D, ...]  # velodyne pose per frame
    sun: np.ndarray  # (3,) unit vector towards the sun
    markings: MarkingLayout
    velocity: np.ndarray  # (N, 2) world x, y velocity of each primitive, m/s (0: it stands)
    frame_period_s: float

    @property
    def n_frames(self) -> int:
        return len(self.egos)

    def at(self, frame: int) -> Scene:
        """The world as frame ``frame`` sees it: moving primitives advanced by their velocity
        times the frame's time (the scene itself when nothing moves)."""
        moving = np.flatnonzero(np.any(self.velocity != 0, axis=1))
        if len(moving) == 0:
            return self
        prims = list(self.primitives)
        dt = frame * self.frame_period_s
        for k in moving:
            prims[k] = shifted(prims[k], float(self.velocity[k, 0] * dt), float(self.velocity[k, 1] * dt))
        return replace(self, primitives=tuple(prims), bounds=aabbs(prims))


def sequence_key(sequence: str) -> int:
    """Integer seed component of a sequence name; numeric names map to themselves."""
    return int(sequence) if sequence.isdigit() else zlib.crc32(sequence.encode())


def sequence_rng(seed: int, sequence: str, *stream: int) -> np.random.Generator:
    """Independent generator per (seed, sequence[, stream...])."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), sequence_key(sequence), *stream]))


def _positions(x0: float, x1: float, spacing: tuple[float, float], density: float,
               rng: np.random.Generator) -> list[float]:
    """Positions along x with random gaps; ``density`` < 1 spreads them out."""
    out, x = [], x0 + float(rng.uniform(0.0, spacing[1])) / density
    while x < x1:
        out.append(x)
        x += float(rng.uniform(*spacing)) / density
    return out


def _lots(side: StreetSide, street: Street, cfg: ObjectConfig, road: RoadConfig,
          rng: np.random.Generator) -> list[Primitive]:
    """Buildings (some with hedges) and empty lots (fences, trees) behind the terrain strip."""
    out: list[Primitive] = []
    x, x_end = street.x_range
    while x < x_end:
        length = float(rng.uniform(*cfg.building_lot))
        x0, x1 = x, min(x + length, x_end)
        if rng.random() < cfg.empty_lot_probability:
            if rng.random() < cfg.fence_probability:
                y = side.y(side.building_line + 0.5 * cfg.fence_thickness)
                out += objects.fence(x0, x1, y, road.terrain_top, cfg, rng)
            for tx in _positions(x0, x1, cfg.tree_spacing, cfg.density, rng):
                y = side.y(side.building_line + float(rng.uniform(*cfg.lot_tree_depth)))
                out += objects.tree(tx, y, road.terrain_top, cfg, rng)
        else:
            front = side.building_line + float(rng.uniform(*cfg.building_setback))
            out += objects.building(x0, x1, side.y(front), side.sign, road.road_top, cfg, rng)
            if rng.random() < cfg.hedge_probability and side.terrain_width > 2.0 * cfg.hedge_depth:
                y = side.y(side.building_line - cfg.hedge_depth)
                out += objects.hedge(x0, x1, y, road.terrain_top, cfg, rng)
        x = x1 + float(rng.uniform(*cfg.building_gap)) / cfg.density
    return out


def _vegetation(side: StreetSide, street: Street, cfg: ObjectConfig, road: RoadConfig,
                rng: np.random.Generator) -> list[Primitive]:
    """A row of trees (with bushes between them) on the terrain strip."""
    out: list[Primitive] = []
    for x in _positions(*street.x_range, cfg.tree_spacing, cfg.density, rng):
        y = side.y(side.sidewalk_outer + float(rng.uniform(*cfg.terrain_spot)) * side.terrain_width)
        out += objects.tree(x, y, road.terrain_top, cfg, rng)
        if rng.random() < cfg.bush_probability:
            bx = x + float(rng.uniform(*cfg.tree_spacing)) * 0.5
            by = side.y(side.sidewalk_outer + float(rng.uniform(*cfg.terrain_spot)) * side.terrain_width)
            out += objects.bush(bx, by, road.terrain_top, cfg, rng)
    return out


def _furniture(side: StreetSide, street: Street, cfg: ObjectConfig, road: RoadConfig,
               rng: np.random.Generator) -> list[Primitive]:
    """Poles and signs at the curb; people walking on the sidewalk."""
    out: list[Primitive] = []
    curb_y = side.y(side.curb + cfg.curb_clearance)
    for x in _positions(*street.x_range, cfg.pole_spacing, cfg.density, rng):
        out += objects.pole(x, curb_y, road.sidewalk_top, cfg, rng)
    facing = np.pi if side.sign == RIGHT else 0.0  # plates face the traffic on their side
    for x in _positions(*street.x_range, cfg.sign_spacing, cfg.density, rng):
        out += objects.traffic_sign(x, curb_y, road.sidewalk_top, facing, cfg, rng)
    margin = cfg.person_radius[1]
    for x in _positions(*street.x_range, cfg.person_spacing, cfg.density, rng):
        y = side.y(side.curb + float(rng.uniform(margin, side.sidewalk_width - margin)))
        out += objects.person(x, y, road.sidewalk_top, cfg, rng)
    return out


def _vehicle(x: float, y: float, yaw: float, cfg: ObjectConfig, road: RoadConfig,
             rng: np.random.Generator) -> list[Primitive]:
    yaw += float(rng.uniform(-cfg.yaw_jitter, cfg.yaw_jitter))
    if rng.random() < cfg.truck_probability:
        return objects.truck(x, y, road.road_top, yaw, cfg, rng)
    return objects.car(x, y, road.road_top, yaw, cfg, rng)


def _traffic(street: Street, cfg: ObjectConfig, road: RoadConfig,
             rng: np.random.Generator) -> tuple[list[Primitive], list[tuple[float, float]]]:
    """Parked cars in the parking lanes and traffic in every lane but the ego's, which
    drives along its lane at ``traffic_speed_mps``; and the velocity of each primitive."""
    out: list[Primitive] = []
    velocity: list[tuple[float, float]] = []
    for side in street.sides:
        heading = 0.0 if side.sign == RIGHT else np.pi
        if side.parking_width > 0.0:
            y = side.y(side.road_edge + 0.5 * side.parking_width)
            for x in _positions(*street.x_range, cfg.parking_slot, 1.0, rng):
                if rng.random() < cfg.parked_probability * min(cfg.density, 1.0):
                    parked = _vehicle(x, y, heading, cfg, road, rng)
                    out += parked
                    velocity += [(0.0, 0.0)] * len(parked)
        lane_velocity = (cfg.traffic_speed_mps * np.cos(heading), 0.0)
        for lane in range(street.lanes_per_direction):
            y = street.lane_center(lane, side.sign)
            if side.sign == RIGHT and np.isclose(y, street.ego_lane_y):
                continue
            for x in _positions(*street.x_range, cfg.traffic_gap, cfg.density, rng):
                driving = _vehicle(x, y, heading, cfg, road, rng)
                out += driving
                velocity += [lane_velocity] * len(driving)
    return out, velocity


def _sun(cfg: SynthConfig, rng: np.random.Generator) -> np.ndarray:
    elevation = float(rng.uniform(*cfg.render.sun_elevation))
    azimuth = float(rng.uniform(0.0, 2.0 * np.pi))
    return np.array([np.cos(elevation) * np.cos(azimuth), np.cos(elevation) * np.sin(azimuth), np.sin(elevation)])


def build_scene(cfg: SynthConfig, sequence: str, n_frames: int | None = None) -> Scene:
    """The world of one sequence and the ego's path through it."""
    n_frames = cfg.frames if n_frames is None else n_frames
    rng = sequence_rng(cfg.seed, sequence)
    step = draw_step(cfg.trajectory, rng)
    x0 = cfg.trajectory.start_x - BEHIND_MARGIN_M
    x1 = cfg.trajectory.start_x + n_frames * step + cfg.render.max_range_m + AHEAD_MARGIN_M
    street = draw_street(cfg.road, rng, (x0, x1))
    road, obj = cfg.road, cfg.objects
    prims: list[Primitive] = list(ground_slabs(street, road, rng))
    for side in street.sides:
        prims += _lots(side, street, obj, road, rng)
        prims += _vegetation(side, street, obj, road, rng)
        prims += _furniture(side, street, obj, road, rng)
    velocity = np.zeros((len(prims), 2))
    traffic, traffic_velocity = _traffic(street, obj, road, rng)
    prims += traffic
    velocity = np.concatenate([velocity, np.asarray(traffic_velocity, dtype=np.float64).reshape(-1, 2)])
    egos = ego_poses(cfg.trajectory, cfg.rig, street.ego_lane_y, step, n_frames)
    markings = MarkingLayout(
        lane_width=road.lane_width,
        lanes_per_direction=street.lanes_per_direction,
        line_half_width=0.5 * road.line_width,
        dash_length=road.dash_length,
        dash_period=road.dash_period,
        parking_bay_length=road.parking_bay_length,
        road_half_width=street.road_half_width,
    )
    return Scene(sequence, street, tuple(prims), aabbs(prims), tuple(egos), _sun(cfg, rng), markings, velocity,
                 cfg.trajectory.frame_period_s)


__all__ = ["Scene", "build_scene", "sequence_key", "sequence_rng"]
