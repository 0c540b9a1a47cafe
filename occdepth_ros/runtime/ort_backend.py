"""ONNX Runtime: runs an exported file (ORT inlines the lift's model-local function).
CPU here, with exact layout rewrites for ORT's CPU kernels (ort_cpu_graph); the CUDA or
TensorRT execution providers where installed, on the graph as exported."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
import yaml

from ..geometry.lookups import LiftTensors
from ..model.config import ConfigError, ModelConfig, config_from_dict
from .base import BackendError
from .ort_cpu_graph import RewriteReport, optimize_for_cpu
from occdepth_export.spec import INPUT_NAMES, META_CONFIG, META_FORMAT, META_FORMAT_VALUE, OUTPUT_SSC_LOGIT

log = logging.getLogger(__name__)

# Preference order when the caller asks for "auto".
PROVIDER_PREFERENCE = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")


def read_onnx_metadata(path: str | Path) -> str:
    """The model config YAML embedded by occdepth-export-onnx (read without ONNX Runtime)."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError and friends for a corrupt file
        raise BackendError(f"{path}: not a readable ONNX file ({exc})") from exc
    metadata = {p.key: p.value for p in model.metadata_props}
    config_from_text(path, metadata)  # validates
    return metadata[META_CONFIG]


def config_from_text(path: str | Path, metadata: dict[str, str]) -> ModelConfig:
    if metadata.get(META_FORMAT) != META_FORMAT_VALUE or META_CONFIG not in metadata:
        raise BackendError(f"{path}: not exported by occdepth-export-onnx (no '{META_FORMAT}' metadata); "
                           "export it with occdepth-export-onnx")
    try:
        return config_from_dict(yaml.safe_load(metadata[META_CONFIG]), f"{path} config")
    except ConfigError as exc:
        raise BackendError(f"{path}: embedded config is invalid: {exc}") from exc


class OrtBackend:
    name = "onnxruntime"

    def __init__(self, path: str | Path, providers: str | list[str] = "auto", threads: int | None = None,
                 cpu_rewrites: bool = True) -> None:
        """``cpu_rewrites``: apply ort_cpu_graph's rewrites when the CPU provider runs the
        whole graph (no GPU provider chosen)."""
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise BackendError("backend 'onnxruntime' needs the onnxruntime package (pip install onnxruntime)") from exc
        self.path = Path(path)
        if not self.path.is_file():
            raise BackendError(f"ONNX file not found: {self.path}")
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        available = ort.get_available_providers()
        if providers == "auto":
            chosen = [p for p in PROVIDER_PREFERENCE if p in available]
        else:
            chosen = [providers] if isinstance(providers, str) else list(providers)
            missing = [p for p in chosen if p not in available]
            if missing:
                raise BackendError(f"ONNX Runtime providers {missing} not available here; available: {available}")
        self.rewrites: RewriteReport | None = None
        model_source: str | bytes = str(self.path)
        if cpu_rewrites and chosen == ["CPUExecutionProvider"]:
            model_source, self.rewrites = _rewritten_for_cpu(self.path)
        try:
            self.session = ort.InferenceSession(model_source, options, providers=chosen)
        except Exception as exc:  # ORT raises its own exception types (Fail, InvalidGraph, ...)
            raise BackendError(f"{self.path}: ONNX Runtime cannot load it: {exc}") from exc
        self.cfg = config_from_text(self.path, self.session.get_modelmeta().custom_metadata_map)
        names = [i.name for i in self.session.get_inputs()]
        if names != list(INPUT_NAMES):
            raise BackendError(f"{self.path}: graph inputs {names}, expected {list(INPUT_NAMES)}")
        self.providers = self.session.get_providers()
        # the CPU rewrites may leave the logits in the layout the head computes them in
        self._logits_perm = self.rewrites.output_perms.get(OUTPUT_SSC_LOGIT) if self.rewrites else None
        self._lift: LiftTensors | None = None  # the lookups the cached feeds were made from
        self._lift_feeds: dict[str, np.ndarray] = {}

    def forward(self, images: torch.Tensor, lift: LiftTensors) -> torch.Tensor:
        if lift is not self._lift:  # lookups change with the calibration only: convert once
            self._lift_feeds = {
                INPUT_NAMES[1]: _numpy(lift.pixel_index, np.int32),
                INPUT_NAMES[2]: _numpy(lift.depth_coords, np.float32),
                INPUT_NAMES[3]: _numpy(lift.pixel_size, np.float32),
            }
            self._lift = lift
        feeds = {INPUT_NAMES[0]: _numpy(images, np.float32), **self._lift_feeds}
        (logits,) = self.session.run([OUTPUT_SSC_LOGIT], feeds)
        out = torch.from_numpy(logits)
        return out.permute(self._logits_perm) if self._logits_perm else out  # a view: no copy

    def describe(self) -> str:
        import onnxruntime as ort

        rewrites = f"; {self.rewrites.describe()}" if self.rewrites else ""
        return f"onnxruntime {ort.__version__} ({', '.join(self.providers)}) {self.path.name}{rewrites}"


def _rewritten_for_cpu(path: Path) -> tuple[str | bytes, RewriteReport | None]:
    """The file's graph with the CPU rewrites, serialized for InferenceSession."""
    import onnx

    try:
        model = onnx.load(str(path))
    except Exception as exc:  # DecodeError and friends for a corrupt file
        raise BackendError(f"{path}: not a readable ONNX file ({exc})") from exc
    cfg = config_from_text(path, {p.key: p.value for p in model.metadata_props})
    try:
        report = optimize_for_cpu(model, cfg.grid.dims)
    except Exception as exc:  # noqa: BLE001 - an optimisation must not stop the backend
        log.warning("%s: CPU graph rewrites failed (%s); running the graph as exported", path, exc)
        return str(path), None
    return model.SerializeToString(), report


def _numpy(t: torch.Tensor, dtype) -> np.ndarray:
    return np.ascontiguousarray(t.detach().cpu().numpy(), dtype=dtype)
