"""Procedural, filtered 2D patterns evaluated on surface coordinates in metres.

Patterns are functions of the surface point, never of the pixel, so both
cameras (and consecutive frames) see the same texture on the same spot. Each
pattern is box-filtered over the pixel footprint (detail finer than a couple
of pixels fades to its mean), which keeps far surfaces from aliasing into
noise that would differ between the left and right image.
"""

from __future__ import annotations

import numpy as np

_PRIME_X = np.uint32(0x8DA6B343)
_PRIME_Y = np.uint32(0xD8163841)
_PRIME_SALT = np.uint32(0xCB1AB31F)
_MIX = np.uint32(0x5BD1E995)
_UNIT = np.float32(1.0 / (1 << 24))


def smoothstep(lo: float, hi: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - lo) / (hi - lo), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _finalize(h: np.ndarray) -> np.ndarray:
    """Avalanche a uint32 lattice hash into a uniform float in [0, 1)."""
    h = h ^ (h >> np.uint32(15))
    h = h * _MIX
    h = h ^ (h >> np.uint32(13))
    h = h * _MIX
    h = h ^ (h >> np.uint32(16))
    return (h >> np.uint32(8)).astype(np.float32) * _UNIT


def value_noise(x: np.ndarray, y: np.ndarray, salt: np.ndarray | int) -> np.ndarray:
    """Smooth lattice noise in [0, 1) with unit cell size; ``salt`` picks the instance."""
    xf, yf = np.floor(x), np.floor(y)
    tx, ty = (x - xf).astype(np.float32), (y - yf).astype(np.float32)
    tx = tx * tx * (3.0 - 2.0 * tx)
    ty = ty * ty * (3.0 - 2.0 * ty)
    hx0 = xf.astype(np.int32).view(np.uint32) * _PRIME_X
    hy0 = yf.astype(np.int32).view(np.uint32) * _PRIME_Y
    hx1, hy1 = hx0 + _PRIME_X, hy0 + _PRIME_Y
    mix = np.asarray(salt).astype(np.uint32) * _PRIME_SALT
    hy0, hy1 = hy0 ^ mix, hy1 ^ mix
    n00, n10 = _finalize(hx0 ^ hy0), _finalize(hx1 ^ hy0)
    n01, n11 = _finalize(hx0 ^ hy1), _finalize(hx1 ^ hy1)
    a = n00 + (n10 - n00) * tx
    b = n01 + (n11 - n01) * tx
    return a + (b - a) * ty


def octave_weight(wavelength: float, footprint: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """How much of a detail of ``wavelength`` survives a pixel of ``footprint`` metres."""
    return smoothstep(lo, hi, wavelength / footprint)


def fbm(
    u: np.ndarray,
    v: np.ndarray,
    footprint: np.ndarray,
    wavelength: float,
    octaves: int,
    salt: np.ndarray | int,
    aa: tuple[float, float],
    gain: float = 0.7,
) -> np.ndarray:
    """Filtered fractal noise, zero-mean, standard deviation about 0.35 when unfiltered.

    Octave k has wavelength ``wavelength / 2**k`` and amplitude ``gain**k``;
    octaves too fine for the footprint are faded out (and skipped when no
    pixel keeps any of them).
    """
    out = np.zeros(np.shape(u), dtype=np.float32)
    amp, power = 1.0, 0.0
    for k in range(octaves):
        lam = wavelength / (2**k)
        w = octave_weight(lam, footprint, *aa)
        power += amp * amp
        if np.any(w > 0):
            n = value_noise(u / lam, v / lam, np.asarray(salt) + 7919 * k)
            out += (2.0 * amp * w) * (n - 0.5)
        amp *= gain
    return out / np.float32(np.sqrt(power))


def box_coverage(x: np.ndarray, half_width: float, footprint: np.ndarray) -> np.ndarray:
    """Fraction of a pixel of width ``footprint`` centred at ``x`` covered by [-hw, hw]."""
    ax = np.abs(x)
    lo = np.maximum(ax - 0.5 * footprint, -half_width)
    hi = np.minimum(ax + 0.5 * footprint, half_width)
    return np.clip(hi - lo, 0.0, None) / footprint


def periodic(x: np.ndarray, period: float) -> np.ndarray:
    """Signed offset of ``x`` from the nearest multiple of ``period``."""
    return x - period * np.round(x / period)


def grid_lines(
    u: np.ndarray, v: np.ndarray, period: tuple[float, float], half_width: float, footprint: np.ndarray
) -> np.ndarray:
    """Coverage of a rectangular grid of lines (joints, mortar), in [0, 1]."""
    a = box_coverage(periodic(u, period[0]), half_width, footprint)
    b = box_coverage(periodic(v, period[1]), half_width, footprint)
    return 1.0 - (1.0 - a) * (1.0 - b)


def cell_random(u: np.ndarray, v: np.ndarray, period: tuple[float, float], salt: int) -> np.ndarray:
    """One random value in [0, 1) per grid cell (per brick, per paving slab)."""
    return lattice_random(np.floor(u / period[0]), np.floor(v / period[1]), salt)


def lattice_random(ix: np.ndarray, iy: np.ndarray, salt: np.ndarray | int) -> np.ndarray:
    """Uniform [0, 1) value per integer lattice point (given as floats or ints)."""
    hx = np.asarray(ix).astype(np.int32).view(np.uint32) * _PRIME_X
    hy = np.asarray(iy).astype(np.int32).view(np.uint32) * _PRIME_Y
    return _finalize(hx ^ hy ^ (np.asarray(salt).astype(np.uint32) * _PRIME_SALT))
