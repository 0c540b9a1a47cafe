"""Pictures of semantic voxel grids: an oblique 3D view, a bird's-eye view, a legend.

Pure NumPy + Pillow, so it runs on a headless robot or CI machine.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..classes import ClassSet

BACKGROUND = (255, 255, 255)
# Brightness of the three visible faces: top, back (-x), right side (-y).
FACE_SHADE = (1.0, 0.78, 0.62)


def occupied_mask(labels: np.ndarray, class_set: ClassSet) -> np.ndarray:
    return (labels != class_set.empty_index) & (labels != class_set.ignore_index) & (labels < class_set.n_classes)


def _exposed(occ: np.ndarray, axis: int, step: int) -> np.ndarray:
    """Occupied voxels whose neighbour at index+step along axis is empty or outside."""
    nb = np.zeros_like(occ)
    src = [slice(None)] * 3
    dst = [slice(None)] * 3
    if step > 0:
        src[axis], dst[axis] = slice(1, None), slice(None, -1)
    else:
        src[axis], dst[axis] = slice(None, -1), slice(1, None)
    nb[tuple(dst)] = occ[tuple(src)]
    return occ & ~nb


def render_oblique(labels: np.ndarray, class_set: ClassSet, size: int = 640,
                   azimuth_deg: float = 35.0, elevation_deg: float = 35.0) -> Image.Image:
    """Orthographic view from behind-right-above the grid origin (x forward, z up)."""
    occ = occupied_mask(labels, class_set)
    az, el = np.deg2rad(azimuth_deg), np.deg2rad(elevation_deg)
    # Viewer direction (from scene towards viewer) and screen axes.
    to_viewer = np.array([-np.cos(el) * np.cos(az), -np.cos(el) * np.sin(az), np.sin(el)])
    right = np.array([-np.sin(az), np.cos(az), 0.0])  # screen x
    right = -right
    up = np.cross(to_viewer, right)
    up = up if up[2] > 0 else -up
    # Unit-cube face corner offsets: top (+z), back (-x), side (-y).
    faces = [
        (2, +1, np.array([[0, 0, 1], [1, 0, 1], [1, 1, 1], [0, 1, 1]], float)),
        (0, -1, np.array([[0, 0, 0], [0, 1, 0], [0, 1, 1], [0, 0, 1]], float)),
        (1, -1, np.array([[0, 0, 0], [1, 0, 0], [1, 0, 1], [0, 0, 1]], float)),
    ]
    polys, depths, colors = [], [], []
    for (axis, step, corners), shade in zip(faces, FACE_SHADE):
        idx = np.argwhere(_exposed(occ, axis, step))
        if len(idx) == 0:
            continue
        pts = idx[:, None, :] + corners[None]  # (F, 4, 3)
        polys.append(np.stack([pts @ right, -(pts @ up)], axis=-1))
        depths.append((idx + 0.5) @ to_viewer)
        colors.append((class_set.colors[labels[tuple(idx.T)]] * shade).astype(np.uint8))
    img = Image.new("RGB", (size, size), BACKGROUND)
    if not polys:
        return img
    poly = np.concatenate(polys)
    depth = np.concatenate(depths)
    color = np.concatenate(colors)
    order = np.argsort(depth, kind="stable")  # far (small towards-viewer) first
    # Fit the whole grid's bounding box, not just the occupied voxels, so views compare.
    dims = np.array(labels.shape, float)
    box = np.array([[i, j, k] for i in (0, dims[0]) for j in (0, dims[1]) for k in (0, dims[2])])
    bx, by = box @ right, -(box @ up)
    scale = 0.95 * size / max(bx.max() - bx.min(), by.max() - by.min())
    offset = np.array([(size - scale * (bx.max() + bx.min())) / 2, (size - scale * (by.max() + by.min())) / 2])
    screen = poly * scale + offset
    draw = ImageDraw.Draw(img)
    outline_needed = scale >= 4
    for i in order:
        c = tuple(int(v) for v in color[i])
        draw.polygon([tuple(p) for p in screen[i]], fill=c,
                     outline=tuple(int(v * 0.7) for v in c) if outline_needed else None)
    return img


def render_bev(labels: np.ndarray, class_set: ClassSet, cell: int = 2) -> Image.Image:
    """Top-down view: each column's highest occupied voxel, darker when lower.
    Forward (+x) is up in the picture, left (+y) is left."""
    occ = occupied_mask(labels, class_set)
    nz = labels.shape[2]
    any_occ = occ.any(axis=2)
    top = nz - 1 - np.argmax(occ[:, :, ::-1], axis=2)
    cls = np.take_along_axis(labels, top[..., None], axis=2)[..., 0]
    shade = 0.55 + 0.45 * (top + 1) / nz
    rgb = class_set.colors[np.where(any_occ, cls, 0)] * shade[..., None]
    rgb[~any_occ] = BACKGROUND
    rgb = rgb[::-1, ::-1].astype(np.uint8)  # row 0 = far forward, col 0 = far left
    return Image.fromarray(rgb).resize((labels.shape[1] * cell, labels.shape[0] * cell), Image.NEAREST)


def render_legend(labels: np.ndarray, class_set: ClassSet, width: int = 170) -> Image.Image:
    occ = occupied_mask(labels, class_set)
    present, counts = np.unique(labels[occ], return_counts=True)
    font = ImageFont.load_default()
    row = 16
    img = Image.new("RGB", (width, row * (len(present) + 1) + 8), BACKGROUND)
    draw = ImageDraw.Draw(img)
    draw.text((4, 2), f"{int(occ.sum())} occupied voxels", fill=(0, 0, 0), font=font)
    for i, (c, n) in enumerate(zip(present, counts), 1):
        y = 4 + i * row
        draw.rectangle([4, y, 16, y + 11], fill=tuple(int(v) for v in class_set.colors[c]), outline=(0, 0, 0))
        draw.text((22, y), f"{class_set.names[c]} ({n})", fill=(0, 0, 0), font=font)
    return img


def render_panel(labels: np.ndarray, class_set: ClassSet, image: np.ndarray | None = None,
                 title: str = "") -> Image.Image:
    """Camera image (optional) above a 3D view, a bird's-eye view and the legend."""
    view = render_oblique(labels, class_set)
    bev = render_bev(labels, class_set, cell=max(1, 512 // max(labels.shape[:2])))
    legend = render_legend(labels, class_set)
    body_w = view.width + bev.width + legend.width + 20
    body_h = max(view.height, bev.height, legend.height)
    top = None
    if image is not None:
        top = Image.fromarray(image)
        top = top.resize((body_w, max(1, round(top.height * body_w / top.width))), Image.BILINEAR)
    title_h = 18 if title else 0
    canvas = Image.new("RGB", (body_w, title_h + (top.height if top else 0) + body_h), BACKGROUND)
    y = 0
    if title:
        ImageDraw.Draw(canvas).text((6, 3), title, fill=(0, 0, 0), font=ImageFont.load_default())
        y += title_h
    if top is not None:
        canvas.paste(top, (0, y))
        y += top.height
    canvas.paste(view, (0, y))
    canvas.paste(bev, (view.width + 10, y + (body_h - bev.height) // 2))
    canvas.paste(legend, (view.width + bev.width + 20, y))
    return canvas


def render_bev_row(panels: list[tuple[str, np.ndarray]], class_set: ClassSet, title: str = "",
                   cell: int = 1) -> Image.Image:
    """Bird's-eye views side by side (same grid each), a caption above each, one legend
    (of the last panel's classes: the ground truth in that example) at the right: e.g. a single frame, the fused map and
    the ground truth of one frame."""
    font = ImageFont.load_default()
    bevs = [render_bev(labels, class_set, cell=cell) for _, labels in panels]
    legend = render_legend(panels[-1][1], class_set)
    gap, caption_h, title_h = 10, 16, 18 if title else 0
    width = sum(b.width for b in bevs) + gap * len(bevs) + legend.width
    height = title_h + caption_h + max(max(b.height for b in bevs), legend.height)
    canvas = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((6, 3), title, fill=(0, 0, 0), font=font)
    x = 0
    for (caption, _), bev in zip(panels, bevs):
        draw.text((x + 4, title_h + 2), caption, fill=(0, 0, 0), font=font)
        canvas.paste(bev, (x, title_h + caption_h))
        x += bev.width + gap
    canvas.paste(legend, (x, title_h + caption_h))
    return canvas
