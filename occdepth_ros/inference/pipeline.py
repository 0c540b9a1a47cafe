"""StereoInference: the one object the CLI, the ROS node and tools call.

It owns the network (a runtime backend: eager torch, ONNX Runtime or TensorRT), turns a raw calibration into lift lookups (cached while the
calibration does not change) and validates every input before it reaches the model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..geometry.calib import CalibrationError, StereoCalibration, rig_from_projections
from ..geometry.image_fit import ImageFit
from ..geometry.lookups import LiftLookup, LiftTensors
from ..model.lift_lookup import build_lift_lookup
from ..model.occdepth import OccDepth
from ..runtime.base import Backend
from ..runtime.torch_backend import TorchBackend
from .preprocess import InputError, check_image, to_network_input


@dataclass
class Prediction:
    labels: np.ndarray  # (X, Y, Z) uint8 class per voxel
    confidence: np.ndarray | None  # (X, Y, Z) float32 softmax probability of that class; None: not asked for
    seen: np.ndarray  # (X, Y, Z) bool: inside at least one camera's view (output grid)
    # (K, X, Y, Z) float32 softmax probabilities of every class (temporal fusion); None: not asked for
    probs: np.ndarray | None = None


class StereoInference:
    def __init__(self, model: OccDepth | Backend, device: str | torch.device = "cpu",
                 threads: int | None = None) -> None:
        """``model``: a network (run eagerly on ``device``) or any runtime backend."""
        if threads:
            torch.set_num_threads(threads)
        self.backend: Backend = TorchBackend(model, device) if isinstance(model, OccDepth) else model
        self.cfg = self.backend.cfg
        self._calib_key: bytes | None = None
        self._lookup: LiftLookup | None = None
        self._lift: LiftTensors | None = None
        self._fit: ImageFit | None = None
        self._seen: np.ndarray | None = None  # seen_mask() of the current calibration

    # -- calibration ---------------------------------------------------------
    def set_calibration(self, calib: StereoCalibration) -> LiftLookup:
        """Build (or reuse) the lift lookups for this calibration."""
        key = calib.key()
        if key == self._calib_key and self._lookup is not None:
            return self._lookup
        cfg = self.cfg
        if len(calib.projections) != cfg.n_views:
            raise CalibrationError(f"model expects {cfg.n_views} cameras, calibration has {len(calib.projections)}")
        fit = ImageFit(tuple(calib.image_size), (cfg.image.height, cfg.image.width), cfg.image.fit)
        rig = rig_from_projections([fit.apply_projection(P) for P in calib.projections],
                                   calib.T_grid_to_ref, fit.dst_size)
        lookup = build_lift_lookup(rig, cfg)
        if not lookup.seen.any():
            raise CalibrationError("no voxel of the grid is visible from any camera; check T_grid_to_ref")
        self._calib_key, self._lookup, self._fit, self._seen = key, lookup, fit, None
        self._lift = lookup.to_torch()  # on the host; backends move what they need
        return lookup

    @property
    def lift_tensors(self) -> LiftTensors:
        """The lookups of the current calibration, as the backends take them."""
        if self._lift is None:
            raise CalibrationError("no calibration set")
        return self._lift

    @property
    def rig_lookup(self) -> LiftLookup:
        if self._lookup is None:
            raise CalibrationError("no calibration set")
        return self._lookup

    def warm_up(self) -> float:
        """One forward pass on zeros (any valid lookups), so the first real frame does not
        pay for allocator and kernel set-up. Returns the seconds it took."""
        import time

        from ..geometry.lookups import LiftTensors

        cfg = self.cfg
        n = int(np.prod(cfg.grid.feature_dims))
        lift = LiftTensors(
            torch.zeros(1, cfg.n_views, len(cfg.sfa_scales), n, dtype=torch.int64),
            torch.zeros(1, cfg.n_views, n, 3),
            torch.ones(1, cfg.n_views, 1),
        )
        start = time.perf_counter()
        self.backend.forward(torch.zeros(1, cfg.n_views, 3, cfg.image.height, cfg.image.width), lift)
        return time.perf_counter() - start

    # -- inference -----------------------------------------------------------
    def prepare(self, images: list[np.ndarray]) -> torch.Tensor:
        if self._fit is None:
            raise CalibrationError("set_calibration() must be called before inference")
        if len(images) != self.cfg.n_views:
            raise InputError(f"expected {self.cfg.n_views} images, got {len(images)}")
        names = ["left", "right"] + [f"view{i}" for i in range(2, len(images))]
        for img, name in zip(images, names):
            check_image(img, name)
        shapes = {img.shape for img in images}
        if len(shapes) != 1:
            raise InputError("stereo images differ in size: " + ", ".join(f"{s[1]}x{s[0]}" for s in
                                                                          (i.shape for i in images)))
        if images[0].shape[:2] != tuple(self._fit.src_size):
            h, w = self._fit.src_size
            raise InputError(
                f"images are {images[0].shape[1]}x{images[0].shape[0]} but the calibration is for {w}x{h}"
            )
        batch = torch.stack([to_network_input(img, self._fit, self.cfg.image) for img in images])
        return batch.unsqueeze(0)

    def logits(self, images: list[np.ndarray]) -> torch.Tensor:
        """Semantic logits (1, classes, X, Y, Z) from the backend."""
        return self.backend.forward(self.prepare(images), self._lift)

    def predict(self, images: list[np.ndarray], with_confidence: bool = True,
                with_probs: bool = False) -> Prediction:
        return self.postprocess(self.logits(images), with_confidence, with_probs=with_probs)

    @torch.inference_mode()
    def postprocess(self, logits: torch.Tensor, with_confidence: bool = True,
                    seen: np.ndarray | None = None, with_probs: bool = False) -> Prediction:
        """Labels by argmax; the softmax (a full pass over every class) only when the
        confidence is wanted. ``seen``: the mask of the logits' calibration when it was
        taken earlier (a pipelined caller); else the current calibration's. ``with_probs``:
        also every class's probability (float32, K x the grid), which temporal fusion needs."""
        labels, top = _argmax_classes(logits[0])
        probs = None
        if with_probs:
            probs = torch.softmax(logits[0].float(), dim=0).contiguous().numpy()
        confidence = None
        if with_confidence:  # max softmax probability = 1 / sum_k exp(l_k - l_max)
            total = torch.zeros_like(top)
            for class_logits in logits[0]:
                total += (class_logits - top).exp_()
            confidence = total.reciprocal_().float().contiguous().numpy()
        return Prediction(labels=labels.contiguous().numpy(), confidence=confidence,
                          seen=self.seen_mask() if seen is None else seen, probs=probs)

    def seen_mask(self) -> np.ndarray:
        """Output-grid voxels inside at least one view (3D-feature mask upsampled). Made
        once per calibration (the node asks for it every frame) and read-only, since
        every caller shares it."""
        if self._seen is None:
            seen = output_seen_mask(self.rig_lookup, self.cfg.grid)
            seen.flags.writeable = False
            self._seen = seen
        return self._seen


def output_seen_mask(lookup: LiftLookup, grid) -> np.ndarray:
    """(X, Y, Z) bool on the output grid (a model ``GridConfig``): voxels inside at least
    one view, the lookup's 3D-feature mask upsampled by the grid's ``project_scale``."""
    s = grid.project_scale
    seen = lookup.seen.any(axis=0).reshape(grid.feature_dims)
    return seen.repeat(s, 0).repeat(s, 1).repeat(s, 2)


def _argmax_classes(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(labels uint8, max logit) over the class axis of (K, X, Y, Z) logits, one class
    slice at a time: contiguous passes, ~3x faster than ``argmax(dim=0)``'s strided
    reduction on a 2M-voxel grid. Ties go to the lower class, as in argmax. The results
    keep the memory layout of ``logits`` (a backend may hand over a permuted view). With
    the class axis innermost (OpenVINO's class-last logits) the slices would be strided,
    and one reduction over contiguous rows is the fast way (~6 vs ~15 ms)."""
    if logits.stride(0) == 1 and logits.shape[0] > 1:
        top, labels = logits.max(dim=0)  # the first maximal index, as argmax
        return labels.to(torch.uint8), top
    top = logits[0].clone()
    labels = torch.zeros_like(top, dtype=torch.uint8)
    for k in range(1, logits.shape[0]):
        better = logits[k] > top
        labels.masked_fill_(better, k)
        torch.maximum(top, logits[k], out=top)
    return labels, top
