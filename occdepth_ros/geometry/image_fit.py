"""Bringing a camera image to the network's input size, and its intrinsics with it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .calib import CalibrationError


@dataclass(frozen=True)
class ImageFit:
    """Maps source pixels to network-input pixels: ``p_dst = A @ p_src``.

    'crop' keeps the top-left window (the official KITTI preprocessing: 1226x370 ->
    1220x370); 'resize' scales the whole image with the pixel-centre convention of
    bilinear resampling (align_corners=False).
    """

    src_size: tuple[int, int]  # (height, width)
    dst_size: tuple[int, int]
    mode: str = "crop"

    def __post_init__(self) -> None:
        (sh, sw), (dh, dw) = self.src_size, self.dst_size
        if min(sh, sw, dh, dw) <= 0:
            raise CalibrationError(f"image sizes must be positive: {self.src_size} -> {self.dst_size}")
        if self.mode == "crop" and (sh < dh or sw < dw):
            raise CalibrationError(
                f"image {sw}x{sh} is smaller than the network input {dw}x{dh}; "
                "crop needs a larger image (use a model whose image.fit is 'resize')"
            )
        if self.mode not in ("crop", "resize"):
            raise CalibrationError(f"unknown image fit mode {self.mode!r}")

    @property
    def matrix(self) -> np.ndarray:
        if self.mode == "crop":
            return np.eye(3)
        (sh, sw), (dh, dw) = self.src_size, self.dst_size
        sx, sy = dw / sw, dh / sh
        return np.array([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5], [0.0, 0.0, 1.0]])

    def apply_projection(self, P: np.ndarray) -> np.ndarray:
        return self.matrix @ np.asarray(P, dtype=np.float64)
