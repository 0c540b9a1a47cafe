"""Street furniture, vehicles, vegetation and people assembled from primitives.

Every builder takes a ground position (world x, y, the ground height there)
plus a random generator, and returns the primitives of one object.
"""

from __future__ import annotations

import numpy as np

from .config import ObjectConfig
from .materials import pick_color
from .primitives import Box, Cylinder, Primitive, Sphere

WHEEL_SIZE = (0.62, 0.22, 0.62)  # length, width, height of a (boxy) wheel
WHEEL_INSET = 0.18  # wheel centres sit this fraction of the length in from the ends
CABIN_LENGTH = 0.55  # cabin length as a fraction of the car length
CABIN_WIDTH = 0.9
CABIN_SHIFT = -0.08  # cabin centre offset (fraction of length, negative = towards the rear)


def _salt(rng: np.random.Generator) -> int:
    return int(rng.integers(1 << 30))


def _u(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    return float(rng.uniform(*bounds))


def _along(x: float, y: float, yaw: float, forward: float, left: float = 0.0) -> tuple[float, float]:
    """Point ``forward``/``left`` metres from (x, y) in a frame turned by ``yaw``."""
    c, s = np.cos(yaw), np.sin(yaw)
    return x + c * forward - s * left, y + s * forward + c * left


Vec3 = tuple[float, float, float]


def _box(cls: str, material: str, rng: np.random.Generator, center: Vec3, half: Vec3, yaw: float = 0.0,
         color: Vec3 | None = None) -> Box:
    return Box(
        cls=cls,
        material=material,
        color=color if color is not None else pick_color(material, rng),
        salt=_salt(rng),
        center=tuple(float(v) for v in center),
        half=tuple(float(v) for v in half),
        yaw=float(yaw),
    )


def _wheels(cls: str, x: float, y: float, ground: float, yaw: float, length: float, width: float,
            rng: np.random.Generator) -> list[Primitive]:
    color = pick_color("tyre", rng)
    half = (0.5 * WHEEL_SIZE[0], 0.5 * WHEEL_SIZE[1], 0.5 * WHEEL_SIZE[2])
    out: list[Primitive] = []
    for fwd in (0.5 - WHEEL_INSET, WHEEL_INSET - 0.5):
        for side in (-1.0, 1.0):
            cx, cy = _along(x, y, yaw, fwd * length, side * (0.5 * width - half[1]))
            out.append(_box(cls, "tyre", rng, (cx, cy, ground + half[2]), half, yaw, color))
    return out


def car(x: float, y: float, ground: float, yaw: float, cfg: ObjectConfig, rng: np.random.Generator) -> list[Primitive]:
    """Body slab over four wheels, with a narrower glass cabin on top."""
    length, width = _u(rng, cfg.car_length), _u(rng, cfg.car_width)
    body_h, cabin_h = _u(rng, cfg.car_body_height), _u(rng, cfg.car_cabin_height)
    bottom = ground + cfg.car_clearance
    body = _box("car", "car_paint", rng, (x, y, bottom + 0.5 * body_h), (0.5 * length, 0.5 * width, 0.5 * body_h), yaw)
    cx, cy = _along(x, y, yaw, CABIN_SHIFT * length)
    cabin_half = (0.5 * CABIN_LENGTH * length, 0.5 * CABIN_WIDTH * width, 0.5 * cabin_h)
    cab = _box("car", "cabin", rng, (cx, cy, bottom + body_h + 0.5 * cabin_h), cabin_half, yaw)
    return [body, cab, *_wheels("car", x, y, ground, yaw, length, width, rng)]


def truck(x: float, y: float, ground: float, yaw: float, cfg: ObjectConfig, rng: np.random.Generator) -> list[Primitive]:
    """Cab in front of a tall cargo box."""
    length, height, width = _u(rng, cfg.truck_length), _u(rng, cfg.truck_height), cfg.truck_width
    bottom = ground + cfg.car_clearance
    cargo_len = length - cfg.truck_cab_length
    cab_h = 0.8 * (height - cfg.car_clearance)
    cgx, cgy = _along(x, y, yaw, -0.5 * cfg.truck_cab_length)
    cargo = _box("truck", "truck_paint", rng, (cgx, cgy, 0.5 * (bottom + ground + height)),
                 (0.5 * cargo_len, 0.5 * width, 0.5 * (ground + height - bottom)), yaw)
    cbx, cby = _along(x, y, yaw, 0.5 * length - 0.5 * cfg.truck_cab_length)
    cab = _box("truck", "truck_paint", rng, (cbx, cby, bottom + 0.5 * cab_h),
               (0.5 * cfg.truck_cab_length, 0.5 * width, 0.5 * cab_h), yaw)
    return [cargo, cab, *_wheels("truck", x, y, ground, yaw, length, width, rng)]


def tree(x: float, y: float, ground: float, cfg: ObjectConfig, rng: np.random.Generator) -> list[Primitive]:
    """Trunk with a round crown resting on its top."""
    trunk_h, crown_r = _u(rng, cfg.trunk_height), _u(rng, cfg.crown_radius)
    trunk = Cylinder(cls="trunk", material="bark", color=pick_color("bark", rng), salt=_salt(rng),
                     center_xy=(x, y), radius=_u(rng, cfg.trunk_radius), z0=ground, z1=ground + trunk_h)
    crown = Sphere(cls="vegetation", material="foliage", color=pick_color("foliage", rng), salt=_salt(rng),
                   center=(x, y, ground + trunk_h + 0.7 * crown_r), radius=crown_r)
    return [trunk, crown]


def bush(x: float, y: float, ground: float, cfg: ObjectConfig, rng: np.random.Generator) -> list[Primitive]:
    r = _u(rng, cfg.bush_radius)
    return [Sphere(cls="vegetation", material="foliage", color=pick_color("foliage", rng), salt=_salt(rng),
                   center=(x, y, ground + 0.4 * r), radius=r)]


def pole(x: float, y: float, ground: float, cfg: ObjectConfig, rng: np.random.Generator) -> list[Primitive]:
    return [Cylinder(cls="pole", material="metal", color=pick_color("metal", rng), salt=_salt(rng),
                     center_xy=(x, y), radius=_u(rng, cfg.pole_radius), z0=ground, z1=ground + _u(rng, cfg.pole_height))]


def traffic_sign(x: float, y: float, ground: float, facing: float, cfg: ObjectConfig,
                 rng: np.random.Generator) -> list[Primitive]:
    """Thin post with a square plate whose front (+x face) looks along ``facing``."""
    size = _u(rng, cfg.sign_size)
    post = Cylinder(cls="pole", material="metal", color=pick_color("metal", rng), salt=_salt(rng),
                    center_xy=(x, y), radius=cfg.sign_pole_radius, z0=ground, z1=ground + cfg.sign_pole_height)
    plate_z = ground + cfg.sign_pole_height + 0.5 * size
    px, py = _along(x, y, facing, cfg.sign_pole_radius + 0.5 * cfg.sign_thickness)
    plate = _box("traffic-sign", "sign", rng, (px, py, plate_z), (0.5 * cfg.sign_thickness, 0.5 * size, 0.5 * size), facing)
    return [post, plate]


def person(x: float, y: float, ground: float, cfg: ObjectConfig, rng: np.random.Generator) -> list[Primitive]:
    """Cylindrical body topped by a head."""
    height = _u(rng, cfg.person_height)
    body_top = ground + height - 2.0 * cfg.head_radius
    body = Cylinder(cls="person", material="cloth", color=pick_color("cloth", rng), salt=_salt(rng),
                    center_xy=(x, y), radius=_u(rng, cfg.person_radius), z0=ground, z1=body_top)
    head = Sphere(cls="person", material="skin", color=pick_color("skin", rng), salt=_salt(rng),
                  center=(x, y, body_top + cfg.head_radius), radius=cfg.head_radius)
    return [body, head]


def building(x0: float, x1: float, front_y: float, sign: int, ground: float, cfg: ObjectConfig,
             rng: np.random.Generator) -> list[Primitive]:
    """Block from ``x0`` to ``x1`` whose facade is at ``front_y``, extending away from the road."""
    depth, height = _u(rng, cfg.building_depth), _u(rng, cfg.building_height)
    material = "brick" if rng.random() < cfg.brick_probability else "plaster"
    center = (0.5 * (x0 + x1), front_y + sign * 0.5 * depth, ground + 0.5 * height)
    return [_box("building", material, rng, center, (0.5 * (x1 - x0), 0.5 * depth, 0.5 * height))]


def hedge(x0: float, x1: float, y: float, ground: float, cfg: ObjectConfig, rng: np.random.Generator) -> list[Primitive]:
    h = _u(rng, cfg.hedge_height)
    return [_box("vegetation", "foliage", rng, (0.5 * (x0 + x1), y, ground + 0.5 * h),
                 (0.5 * (x1 - x0), 0.5 * cfg.hedge_depth, 0.5 * h))]


def fence(x0: float, x1: float, y: float, ground: float, cfg: ObjectConfig, rng: np.random.Generator) -> list[Primitive]:
    h = _u(rng, cfg.fence_height)
    return [_box("fence", "fence", rng, (0.5 * (x0 + x1), y, ground + 0.5 * h),
                 (0.5 * (x1 - x0), 0.5 * cfg.fence_thickness, 0.5 * h))]
