"""Ray-cast a rectified stereo pair of the scene, with per-pixel depth and class.

Pipeline per frame: camera placement -> per-primitive hits inside projected
bounding rectangles (a z-buffer over both cameras at once) -> surface
attributes of the visible points -> material textures -> Lambert + ambient
lighting -> haze towards the horizon colour -> sky -> sensor noise -> uint8.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...classes import load_class_set
from ...geometry.calib import StereoRig
from .config import RenderConfig
from .culling import pixel_rects, within_range
from .materials import MATERIAL_NAMES, TEXTURES, Samples, TextureContext
from .noise import smoothstep
from .primitives import Pose2D, PrimitiveTable
from .raycast import NO_HIT, RayBlock, hit, surface_attributes
from .rig import CameraPose, camera_poses
from .scene import Scene, sequence_rng

NO_CLASS = 255  # class image value of sky / nothing
_TRIANGULAR_TO_UNIT = 1.0 / (256.0 * np.sqrt(1.0 / 6.0))  # 1 / std of (a + b - 255), a, b uniform bytes


@dataclass(frozen=True)
class StereoFrame:
    """One rendered frame; index 0 = left (image_2), 1 = right (image_3)."""

    images: np.ndarray  # (C, H, W, 3) uint8 RGB
    depth: np.ndarray  # (C, H, W) float32 camera-z metres, 0 = nothing within range
    classes: np.ndarray  # (C, H, W) uint8 class id, NO_CLASS where there is no surface


class SceneRenderer:
    """Renders frames of one scene; holds what is shared between its frames."""

    def __init__(self, scene: Scene, rig: StereoRig, cfg: RenderConfig, seed: int = 0):
        self.scene, self.rig, self.cfg, self.seed = scene, rig, cfg, int(seed)
        names = load_class_set().names
        self.table = PrimitiveTable.build(scene.primitives, names, MATERIAL_NAMES).as_float32()
        self.ctx = TextureContext(scene.markings, (cfg.aa_low, cfg.aa_high))
        cam = rig.cameras[0]
        for other in rig.cameras[1:]:
            same_rotation = np.allclose(other.T_grid_to_cam[:3, :3], cam.T_grid_to_cam[:3, :3])
            if not (np.allclose(other.K, cam.K) and same_rotation):
                raise ValueError("the renderer needs a rectified rig: equal K and rotation for all cameras")
        self.K = cam.K
        self.size = (cam.height, cam.width)
        h, w = self.size
        self.cam_dirs = (
            ((np.arange(w) - self.K[0, 2]) / self.K[0, 0])[None, :],
            ((np.arange(h) - self.K[1, 2]) / self.K[1, 1])[:, None],
        )
        # |ray| per pixel (rays have camera-z 1): distance = depth * ray_len, any pose
        self.ray_len = np.sqrt(self.cam_dirs[0] ** 2 + self.cam_dirs[1] ** 2 + 1.0).astype(np.float32)

    # --- geometry ----------------------------------------------------------------------

    def _rays(self, cam: CameraPose) -> RayBlock:
        """World directions of all pixels, camera-z component 1, float32."""
        a, b = self.cam_dirs
        R = cam.R_world_cam
        comps = [(R[i, 0] * a + R[i, 1] * b + R[i, 2]).astype(np.float32) for i in range(3)]
        h, w = self.size
        return RayBlock(*(np.broadcast_to(c, (h, w)).copy() for c in comps))

    def _visibility(self, cams: list[CameraPose], rays: RayBlock) -> tuple[np.ndarray, np.ndarray]:
        """z-buffer: depth (C, H, W) float32 and primitive id (C, H, W) int32 (-1 = none)."""
        h, w = self.size
        n_cam = len(cams)
        depth = np.full((n_cam, h, w), NO_HIT, dtype=np.float32)
        ids = np.full((n_cam, h, w), -1, dtype=np.int32)
        origins = np.stack([c.origin for c in cams])
        cand = np.flatnonzero(within_range(self.scene.bounds, cams, self.cfg.max_range_m))
        rects = pixel_rects(self.scene.bounds[cand], cams, self.size, self.cfg.near_m)
        for k, (v0, v1, u0, u1) in zip(cand, rects):
            if v1 <= v0 or u1 <= u0:
                continue
            block = RayBlock(rays.dx[v0:v1, u0:u1], rays.dy[v0:v1, u0:u1], rays.dz[v0:v1, u0:u1])
            t = hit(self.scene.primitives[k], origins, block, self.cfg.near_m)
            zbuf = depth[:, v0:v1, u0:u1]
            closer = t < zbuf
            if closer.any():
                np.copyto(zbuf, t, where=closer)
                ids[:, v0:v1, u0:u1][closer] = k
        dist = depth * self.ray_len[None]
        too_far = dist > self.cfg.max_range_m
        depth[too_far], ids[too_far] = NO_HIT, -1
        return depth, ids

    # --- appearance --------------------------------------------------------------------

    def _albedo(
        self, ids: np.ndarray, p: np.ndarray, d: np.ndarray, t: np.ndarray, d_len: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Texture colour and normal of visible points (N of them)."""
        tab = self.table
        attr = surface_attributes(tab, ids, p)
        cosine = np.abs(np.einsum("ij,ij->i", attr.n, d)) / d_len
        focal = float(np.sqrt(self.K[0, 0] * self.K[1, 1]))
        # Geometric mean of the across- and along-ray footprints: stereo only needs the
        # row direction alias-free, the stretched one just must not shimmer too much.
        stretch = np.sqrt(np.maximum(cosine, self.cfg.min_cosine))
        footprint = (t * d_len / (focal * stretch)).astype(np.float32)
        albedo = np.zeros((len(ids), 3), dtype=np.float32)
        mats = tab.material[ids]
        for m, name in enumerate(MATERIAL_NAMES):
            sel = np.flatnonzero(mats == m)
            if not sel.size:
                continue
            samples = Samples(
                p=p[sel],
                n=attr.n[sel],
                uv=attr.uv[sel],
                height=attr.height[sel],
                face=attr.face[sel],
                footprint=footprint[sel],
                color=tab.color[ids[sel]],
                salt=tab.salt[ids[sel]],
            )
            albedo[sel] = TEXTURES[name](samples, self.ctx)
        return albedo, attr.n

    def _light(self, albedo: np.ndarray, n: np.ndarray) -> np.ndarray:
        sky_light = np.float32(self.cfg.ambient) * (np.float32(0.75) + np.float32(0.25) * n[:, 2])
        sun = np.float32(self.cfg.diffuse) * np.maximum(n @ self.scene.sun.astype(np.float32), np.float32(0.0))
        return albedo * (sky_light + sun)[:, None]

    def _sky(self, dz_over_len: np.ndarray) -> np.ndarray:
        """Sky colour by ray elevation (sine), horizon colour at and below the horizon."""
        horizon = np.asarray(self.cfg.sky_horizon, dtype=np.float32)
        zenith = np.asarray(self.cfg.sky_zenith, dtype=np.float32)
        t = smoothstep(0.0, 0.6, dz_over_len).astype(np.float32)
        return horizon + (zenith - horizon) * t[:, None]

    def _shade(self, cams: list[CameraPose], rays: RayBlock, depth: np.ndarray, ids: np.ndarray) -> np.ndarray:
        """Linear RGB in [0, 1] of every pixel of every camera, (C, H, W, 3) float32."""
        h, w = self.size
        d_all = np.stack([rays.dx, rays.dy, rays.dz], axis=-1).reshape(-1, 3)
        d_len = self.ray_len.reshape(-1)
        out = np.empty((len(cams), h * w, 3), dtype=np.float32)
        horizon = np.asarray(self.cfg.sky_horizon, dtype=np.float32)
        r_max = self.cfg.max_range_m
        for c, cam in enumerate(cams):
            flat_ids, flat_t = ids[c].reshape(-1), depth[c].reshape(-1)
            vis = np.flatnonzero(flat_ids >= 0)
            sky = np.flatnonzero(flat_ids < 0)
            out[c, sky] = self._sky(d_all[sky, 2] / d_len[sky])
            t = flat_t[vis]
            d = d_all[vis]
            p = cam.origin.astype(np.float32) + t[:, None] * d
            albedo, n = self._albedo(flat_ids[vis], p, d, t, d_len[vis])
            color = self._light(albedo, n)
            haze = smoothstep(np.float32(self.cfg.haze_start * r_max), np.float32(r_max), t * d_len[vis])
            out[c, vis] = color + (horizon - color) * haze[:, None]
        return out.reshape(len(cams), h, w, 3)

    def _expose(self, rgb: np.ndarray, frame: int) -> np.ndarray:
        """Add sensor noise (seeded per frame and camera) and quantise to uint8."""
        out = np.empty(rgb.shape, dtype=np.uint8)
        for c in range(rgb.shape[0]):
            rng = sequence_rng(self.seed, self.scene.sequence, int(frame), c)
            # triangular noise from two uniform bytes: cheap, zero-mean, std = sensor_noise
            pair = np.frombuffer(rng.bytes(2 * rgb[c].size), dtype=np.uint8).reshape(2, *rgb.shape[1:])
            unit = (pair[0].astype(np.float32) + pair[1] - np.float32(255.0)) * np.float32(_TRIANGULAR_TO_UNIT)
            noise = unit * np.float32(self.cfg.sensor_noise)
            out[c] = np.clip(np.rint(rgb[c] * 255.0 + noise), 0, 255).astype(np.uint8)
        return out

    # --- public ------------------------------------------------------------------------

    def render(self, frame: int) -> StereoFrame:
        """Render frame ``frame`` of the scene's ego path."""
        return self.render_pose(self.scene.egos[frame], frame)

    def render_pose(self, ego: Pose2D, frame: int = 0) -> StereoFrame:
        cams = camera_poses(self.rig, ego)
        rays = self._rays(cams[0])
        depth, ids = self._visibility(cams, rays)
        rgb = self._shade(cams, rays, depth, ids)
        classes = np.where(ids >= 0, self.table.cls[np.maximum(ids, 0)], NO_CLASS).astype(np.uint8)
        depth_out = np.where(ids >= 0, depth, 0.0).astype(np.float32)
        return StereoFrame(self._expose(rgb, frame), depth_out, classes)
