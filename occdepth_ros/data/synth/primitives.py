"""Analytic solids the synthetic world is built from, in a z-up frame.

Three shapes cover a street: yaw-rotated boxes (ground slabs, buildings, car
bodies, fences, sign plates), vertical cylinders (trunks, poles, people) and
spheres (tree crowns, bushes, heads). Each carries the semantic class it is
labelled with and the material it is textured with, so the renderer and the
voxelizer read the same world.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np


@dataclass(frozen=True)
class Surface:
    """What every solid shares: semantics and appearance."""

    cls: str  # semantic class name (config/classes/semantic_kitti.yaml)
    material: str  # texture name (materials.py)
    color: tuple[float, float, float]  # instance base colour, RGB in [0, 1]
    salt: int  # decorrelates the noise of instances that share a material


@dataclass(frozen=True)
class Box(Surface):
    """Box of half extents ``half`` around ``center``, turned by ``yaw`` about z.

    ``voxel_layer`` set: only ``[top - voxel_layer, top]`` is labelled in the
    voxel grid, as the lidar-built SemanticKITTI ground is one surface layer.
    """

    center: tuple[float, float, float] = (0.0, 0.0, 0.0)
    half: tuple[float, float, float] = (0.5, 0.5, 0.5)
    yaw: float = 0.0
    voxel_layer: float | None = None

    def aabb(self) -> np.ndarray:
        c, s = abs(np.cos(self.yaw)), abs(np.sin(self.yaw))
        hx, hy, hz = self.half
        ext = np.array([hx * c + hy * s, hx * s + hy * c, hz])
        ctr = np.asarray(self.center, dtype=np.float64)
        return np.stack([ctr - ext, ctr + ext])


@dataclass(frozen=True)
class Cylinder(Surface):
    """Vertical cylinder: disc of ``radius`` around ``center_xy``, from ``z0`` up to ``z1``."""

    center_xy: tuple[float, float] = (0.0, 0.0)
    radius: float = 0.1
    z0: float = 0.0
    z1: float = 1.0

    def aabb(self) -> np.ndarray:
        x, y = self.center_xy
        r = self.radius
        return np.array([[x - r, y - r, self.z0], [x + r, y + r, self.z1]])


@dataclass(frozen=True)
class Sphere(Surface):
    center: tuple[float, float, float] = (0.0, 0.0, 0.0)
    radius: float = 1.0

    def aabb(self) -> np.ndarray:
        ctr = np.asarray(self.center, dtype=np.float64)
        return np.stack([ctr - self.radius, ctr + self.radius])


Primitive = Box | Cylinder | Sphere


@dataclass(frozen=True)
class Pose2D:
    """Planar rigid motion (the ego only yaws and translates; z is a pure shift)."""

    x: float
    y: float
    z: float
    yaw: float

    def matrix(self) -> np.ndarray:
        """4x4 homogeneous transform this pose stands for (child -> parent)."""
        c, s = np.cos(self.yaw), np.sin(self.yaw)
        T = np.eye(4)
        T[:2, :2] = [[c, -s], [s, c]]
        T[:3, 3] = (self.x, self.y, self.z)
        return T

    def to_local(self, x: float, y: float, z: float) -> tuple[float, float, float]:
        """Parent-frame point -> this pose's frame."""
        c, s = np.cos(self.yaw), np.sin(self.yaw)
        dx, dy = x - self.x, y - self.y
        return (c * dx + s * dy, -s * dx + c * dy, z - self.z)


def to_local(prim: Primitive, pose: Pose2D) -> Primitive:
    """Express a world-frame primitive in the frame of ``pose`` (e.g. the voxel grid)."""
    if isinstance(prim, Box):
        return replace(prim, center=pose.to_local(*prim.center), yaw=prim.yaw - pose.yaw)
    if isinstance(prim, Cylinder):
        x, y, _ = pose.to_local(*prim.center_xy, 0.0)
        return replace(prim, center_xy=(x, y), z0=prim.z0 - pose.z, z1=prim.z1 - pose.z)
    if isinstance(prim, Sphere):
        return replace(prim, center=pose.to_local(*prim.center))
    raise TypeError(f"unknown primitive {type(prim).__name__}")


def shifted(prim: Primitive, dx: float, dy: float) -> Primitive:
    """The primitive moved by (dx, dy) in its own frame's x and y."""
    if isinstance(prim, Cylinder):
        x, y = prim.center_xy
        return replace(prim, center_xy=(x + dx, y + dy))
    x, y, z = prim.center
    return replace(prim, center=(x + dx, y + dy, z))


def aabbs(prims: list[Primitive]) -> np.ndarray:
    """(N, 2, 3) world boxes [min, max] of all primitives, for culling."""
    if not prims:
        return np.zeros((0, 2, 3))
    return np.stack([p.aabb() for p in prims])


KIND_BOX, KIND_CYLINDER, KIND_SPHERE = 0, 1, 2


@dataclass(frozen=True)
class PrimitiveTable:
    """Struct-of-arrays view of a primitive list, for per-pixel gathers by primitive id."""

    kind: np.ndarray  # (N,) int8
    center: np.ndarray  # (N, 3) float64; cylinders: (x, y, 0)
    half: np.ndarray  # (N, 3) float64; boxes only
    yaw: np.ndarray  # (N,) float64; boxes only
    radius: np.ndarray  # (N,) float64; cylinders and spheres
    z_range: np.ndarray  # (N, 2) float64; cylinders only
    color: np.ndarray  # (N, 3) float32
    salt: np.ndarray  # (N,) uint32
    material: np.ndarray  # (N,) int16 index into the material names
    cls: np.ndarray  # (N,) uint8 class id

    @staticmethod
    def build(prims: list[Primitive] | tuple[Primitive, ...], class_names: tuple[str, ...],
              material_names: tuple[str, ...]) -> "PrimitiveTable":
        n = len(prims)
        t = PrimitiveTable(
            kind=np.zeros(n, np.int8),
            center=np.zeros((n, 3)),
            half=np.zeros((n, 3)),
            yaw=np.zeros(n),
            radius=np.zeros(n),
            z_range=np.zeros((n, 2)),
            color=np.asarray([p.color for p in prims], dtype=np.float32).reshape(n, 3),
            salt=np.asarray([p.salt for p in prims], dtype=np.uint32).reshape(n),
            material=np.asarray([material_names.index(p.material) for p in prims], dtype=np.int16).reshape(n),
            cls=np.asarray([class_names.index(p.cls) for p in prims], dtype=np.uint8).reshape(n),
        )
        for i, p in enumerate(prims):
            if isinstance(p, Box):
                t.kind[i], t.center[i], t.half[i], t.yaw[i] = KIND_BOX, p.center, p.half, p.yaw
            elif isinstance(p, Cylinder):
                t.kind[i], t.center[i, :2], t.radius[i] = KIND_CYLINDER, p.center_xy, p.radius
                t.z_range[i] = (p.z0, p.z1)
            else:
                t.kind[i], t.center[i], t.radius[i] = KIND_SPHERE, p.center, p.radius
        return t

    def as_float32(self) -> "PrimitiveTable":
        """Same table with float32 geometry: per-pixel work is memory bound."""
        f = np.float32
        return replace(
            self,
            center=self.center.astype(f),
            half=self.half.astype(f),
            yaw=self.yaw.astype(f),
            radius=self.radius.astype(f),
            z_range=self.z_range.astype(f),
        )
