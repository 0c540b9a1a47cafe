"""Class-specific surface appearance: base colour palettes and procedural textures.

A texture maps surface samples (world point, normal, face coordinates, pixel
footprint, instance colour and salt) to an albedo. Everything it reads is a
property of the 3D point, so the stereo pair agrees; all detail goes through
the filtered patterns of ``noise.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from .noise import box_coverage, cell_random, fbm, grid_lines, periodic, smoothstep

# Base colours (0-255 RGB) an instance draws from; jittered per instance.
PALETTES: dict[str, tuple[tuple[int, int, int], ...]] = {
    "asphalt": ((78, 78, 82), (92, 90, 88), (70, 72, 76)),
    "parking": ((96, 94, 92), (104, 100, 96)),
    "paving": ((150, 146, 140), (165, 158, 150), (138, 136, 134)),
    "grass": ((88, 118, 52), (104, 124, 60), (96, 110, 58)),
    "plaster": ((196, 184, 160), (214, 206, 190), (180, 160, 140), (170, 176, 180), (222, 200, 170)),
    "brick": ((150, 72, 52), (128, 64, 50), (168, 98, 70)),
    "car_paint": ((180, 20, 24), (30, 50, 140), (220, 220, 222), (30, 30, 34), (150, 152, 156), (90, 110, 60)),
    "cabin": ((40, 48, 60),),
    "tyre": ((28, 28, 30),),
    "truck_paint": ((230, 230, 232), (200, 120, 30), (60, 90, 150), (160, 40, 30)),
    "foliage": ((52, 94, 38), (70, 110, 42), (44, 80, 40), (90, 120, 50)),
    "bark": ((92, 70, 52), (80, 64, 50)),
    "metal": ((120, 124, 128), (96, 100, 104), (140, 140, 136)),
    "sign": ((200, 30, 30), (30, 80, 170), (230, 180, 20)),
    "fence": ((120, 84, 52), (96, 100, 104), (60, 90, 60)),
    "cloth": ((40, 40, 60), (150, 30, 40), (200, 200, 190), (60, 100, 150), (90, 70, 50)),
    "skin": ((224, 180, 150), (160, 110, 80), (240, 200, 170)),
}

COLOR_JITTER = 0.06  # per-channel relative jitter of an instance's base colour


def pick_color(material: str, rng: np.random.Generator) -> tuple[float, float, float]:
    """An instance colour: a palette entry, slightly jittered."""
    palette = PALETTES[material]
    base = np.asarray(palette[int(rng.integers(len(palette)))], dtype=np.float64) / 255.0
    jitter = 1.0 + COLOR_JITTER * rng.uniform(-1.0, 1.0, size=3)
    r, g, b = np.clip(base * jitter, 0.0, 1.0)
    return (float(r), float(g), float(b))


# Box face ids; cylinders use FACE_SIDE and the cap ids, spheres FACE_SIDE.
FACE_POS_X, FACE_NEG_X, FACE_POS_Y, FACE_NEG_Y, FACE_TOP, FACE_BOTTOM = range(6)
FACE_SIDE = 0


@dataclass
class Samples:
    """Visible surface points of one material (N of them), in float32."""

    p: np.ndarray  # (N, 3) world point
    n: np.ndarray  # (N, 3) world normal
    uv: np.ndarray  # (N, 2) face coordinates in metres, centred on the face
    height: np.ndarray  # (N,) metres above the primitive's bottom
    face: np.ndarray  # (N,) face id
    footprint: np.ndarray  # (N,) pixel footprint on the surface, metres
    color: np.ndarray  # (N, 3) instance base colour
    salt: np.ndarray  # (N,) uint32 instance salt


@dataclass(frozen=True)
class MarkingLayout:
    """Where the street paint goes (world y of lines, dash pattern)."""

    lane_width: float
    lanes_per_direction: int
    line_half_width: float
    dash_length: float
    dash_period: float
    parking_bay_length: float
    road_half_width: float


Texture = Callable[[Samples, "TextureContext"], np.ndarray]


@dataclass(frozen=True)
class TextureContext:
    markings: MarkingLayout
    aa: tuple[float, float]  # an octave fades out between these footprints per wavelength


PAINT_WHITE = np.array([0.92, 0.92, 0.9], dtype=np.float32)
WINDOW_COLOR = np.array([0.16, 0.2, 0.26], dtype=np.float32)
MORTAR_COLOR = np.array([0.72, 0.7, 0.66], dtype=np.float32)
SIGN_WHITE = np.array([0.94, 0.94, 0.94], dtype=np.float32)
METAL_BACK = np.array([0.55, 0.56, 0.58], dtype=np.float32)


def _mix(a: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Per-sample blend of colours a -> b by t (N,)."""
    return a + (b - a) * t[:, None]


def _modulate(color: np.ndarray, amount: np.ndarray) -> np.ndarray:
    return color * (1.0 + amount)[:, None]


def _noise(s: Samples, ctx: TextureContext, wavelength: float, octaves: int, salt: int = 0) -> np.ndarray:
    return fbm(s.uv[:, 0], s.uv[:, 1], s.footprint, wavelength, octaves, s.salt + salt, ctx.aa)


def asphalt(s: Samples, ctx: TextureContext) -> np.ndarray:
    """Grainy asphalt with lane lines: dashed between lanes, solid at the edges."""
    col = _modulate(s.color, 0.2 * _noise(s, ctx, 3.0, 3, 11) + 0.6 * _noise(s, ctx, 0.3, 5))
    m = ctx.markings
    x, y = s.p[:, 0], s.p[:, 1]
    dash = box_coverage(periodic(x, m.dash_period), 0.5 * m.dash_length, s.footprint)
    paint = np.zeros_like(x)
    for k in range(-m.lanes_per_direction + 1, m.lanes_per_direction):
        line = box_coverage(y - k * m.lane_width, m.line_half_width, s.footprint)
        paint = np.maximum(paint, line if (k == 0 and m.lanes_per_direction > 1) else line * dash)
    edge = m.road_half_width - 2 * m.line_half_width
    for sign in (-1.0, 1.0):
        paint = np.maximum(paint, box_coverage(y - sign * edge, m.line_half_width, s.footprint))
    return _mix(col, PAINT_WHITE, paint)


def parking(s: Samples, ctx: TextureContext) -> np.ndarray:
    """Asphalt with painted bays: lines across the lane every bay length."""
    col = _modulate(s.color, 0.3 * _noise(s, ctx, 2.5, 3, 5) + 0.55 * _noise(s, ctx, 0.3, 5))
    m = ctx.markings
    bays = box_coverage(periodic(s.p[:, 0], m.parking_bay_length), m.line_half_width, s.footprint)
    return _mix(col, PAINT_WHITE, 0.8 * bays)


def paving(s: Samples, ctx: TextureContext) -> np.ndarray:
    """Square paving slabs with joints; each slab slightly different."""
    slab = (0.5, 0.5)
    tone = cell_random(s.uv[:, 0], s.uv[:, 1], slab, 3) - 0.5
    col = _modulate(s.color, 0.3 * tone + 0.45 * _noise(s, ctx, 0.25, 5))
    joints = grid_lines(s.uv[:, 0], s.uv[:, 1], slab, 0.012, s.footprint)
    return _mix(col, col * 0.6, joints)


def grass(s: Samples, ctx: TextureContext) -> np.ndarray:
    patches = _noise(s, ctx, 4.0, 2, 1)
    col = _modulate(s.color, 0.8 * _noise(s, ctx, 0.4, 6))
    dirt = np.array([0.45, 0.38, 0.28], dtype=np.float32)
    return _mix(col, dirt, np.clip(patches * 1.5, 0.0, 0.6))


def _windows(s: Samples) -> np.ndarray:
    """Coverage of a window grid on vertical faces (none on roofs)."""
    u, v = s.uv[:, 0], s.height
    cols = box_coverage(periodic(u - 1.5, 3.0), 0.6, s.footprint)
    rows = box_coverage(periodic(v - 1.6, 3.0), 0.75, s.footprint) * (v > 0.8)
    vertical = (s.face != FACE_TOP) & (s.face != FACE_BOTTOM)
    return cols * rows * vertical


def plaster(s: Samples, ctx: TextureContext) -> np.ndarray:
    col = _modulate(s.color, 0.3 * _noise(s, ctx, 3.0, 3) + 0.4 * _noise(s, ctx, 0.3, 4, 9))
    col = np.where((s.face == FACE_TOP)[:, None], col * 0.55, col)
    return _mix(col, WINDOW_COLOR, _windows(s))


def brick(s: Samples, ctx: TextureContext) -> np.ndarray:
    """Running-bond bricks (every other course shifted half a brick) with windows."""
    brick_size = (0.24, 0.075)
    course = np.floor(s.height / brick_size[1])
    u = s.uv[:, 0] + 0.5 * brick_size[0] * (course % 2)
    tone = cell_random(u, s.height, brick_size, 5) - 0.5
    col = _modulate(s.color, 0.4 * tone + 0.3 * _noise(s, ctx, 1.5, 3) + 0.3 * _noise(s, ctx, 0.1, 3, 9))
    mortar = grid_lines(u, s.height, brick_size, 0.006, s.footprint)
    col = _mix(col, MORTAR_COLOR, 0.7 * mortar)
    col = np.where((s.face == FACE_TOP)[:, None], s.color * 0.5, col)
    return _mix(col, WINDOW_COLOR, _windows(s))


def paint(s: Samples, ctx: TextureContext) -> np.ndarray:
    """Car/truck paint: smooth, with dirt and a darker lower edge."""
    col = _modulate(s.color, 0.15 * _noise(s, ctx, 1.0, 3) + 0.25 * _noise(s, ctx, 0.15, 3, 9))
    lower = 1.0 - 0.35 * smoothstep(0.35, 0.0, s.height) * (s.face != FACE_TOP)
    return col * lower[:, None]


def cabin(s: Samples, ctx: TextureContext) -> np.ndarray:
    """Dark tinted glass, brighter towards the top, cut by window pillars."""
    glass = _modulate(s.color, 0.45 * _noise(s, ctx, 0.6, 4) + 0.4 * smoothstep(0.0, 0.6, s.height))
    pillars = box_coverage(periodic(s.uv[:, 0], 1.1), 0.07, s.footprint)
    return _mix(glass, glass * 0.4, pillars)


def plain(s: Samples, ctx: TextureContext) -> np.ndarray:
    """Base colour with mild grain: tyres, metal, cloth."""
    return _modulate(s.color, 0.35 * _noise(s, ctx, 0.3, 4))


def foliage(s: Samples, ctx: TextureContext) -> np.ndarray:
    leaves = _noise(s, ctx, 0.35, 5)
    clumps = _noise(s, ctx, 2.0, 2, 13)
    return _modulate(s.color, 0.9 * leaves + 0.4 * clumps)


def bark(s: Samples, ctx: TextureContext) -> np.ndarray:
    """Vertical furrows: noise stretched along the trunk."""
    stretched = fbm(s.uv[:, 0] * 4.0, s.uv[:, 1] * 0.5, s.footprint * 4.0, 0.8, 4, s.salt, ctx.aa)
    return _modulate(s.color, 0.8 * stretched)


def sign(s: Samples, ctx: TextureContext) -> np.ndarray:
    """Front face: white disc rimmed with the sign colour; back and edges: bare metal."""
    du, dv = s.uv[:, 0], s.uv[:, 1]
    r = np.sqrt(du * du + dv * dv)
    inner = box_coverage(r, 0.18, s.footprint)
    front = _mix(s.color, SIGN_WHITE, inner)
    is_front = (s.face == FACE_POS_X)[:, None]
    return np.where(is_front, front, METAL_BACK)


def fence(s: Samples, ctx: TextureContext) -> np.ndarray:
    """Vertical slats with gaps darker than the slats."""
    slats = box_coverage(periodic(s.uv[:, 0], 0.15), 0.015, s.footprint)
    col = _modulate(s.color, 0.3 * _noise(s, ctx, 0.3, 3))
    return _mix(col, col * 0.45, slats)


TEXTURES: dict[str, Texture] = {
    "asphalt": asphalt,
    "parking": parking,
    "paving": paving,
    "grass": grass,
    "plaster": plaster,
    "brick": brick,
    "car_paint": paint,
    "truck_paint": paint,
    "cabin": cabin,
    "tyre": plain,
    "metal": plain,
    "cloth": plain,
    "skin": plain,
    "foliage": foliage,
    "bark": bark,
    "sign": sign,
    "fence": fence,
}

MATERIAL_NAMES: tuple[str, ...] = tuple(TEXTURES)
assert set(MATERIAL_NAMES) == set(PALETTES), "every material needs a palette and a texture"
