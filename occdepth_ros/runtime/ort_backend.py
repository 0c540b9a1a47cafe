"""ONNX Runtime: runs an exported file as exported (ORT inlines the lift's model-local
function). On a CPU: the OpenVINO provider where installed, else ORT's own CPU provider;
on a GPU: the TensorRT or CUDA providers where installed. The choice is ort_providers'."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import yaml

from ..geometry.lookups import LiftTensors
from ..model.config import ConfigError, ModelConfig, config_from_dict
from .base import BackendError, with_selection
from .onnx_contract import (
    INPUT_NAMES,
    META_CONFIG,
    META_FORMAT,
    META_FORMAT_VALUE,
    META_PRECISION,
    OUTPUT_SSC_LOGIT,
    PRECISION_FP32,
)
from .ort_providers import by_preference, provider_options


MISSING_ORT = ("backend 'onnxruntime' needs the onnxruntime package (pip install onnxruntime-openvino on x86-64, "
               "else onnxruntime)")


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

    def __init__(self, path: str | Path, providers: str | list[str] = "auto", threads: int | None = None) -> None:
        """``providers``: "auto" (the best installed, GPU first) or provider names, best
        first (ort_providers.choose_providers)."""
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise BackendError(MISSING_ORT) from exc
        self.path = Path(path)
        if not self.path.is_file():
            raise BackendError(f"ONNX file not found: {self.path}")
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        available = ort.get_available_providers()
        if providers == "auto":
            chosen = by_preference(available)
        else:
            chosen = [providers] if isinstance(providers, str) else list(providers)
            missing = [p for p in chosen if p not in available]
            if missing:
                raise BackendError(f"ONNX Runtime providers {missing} not available here; available: {available}")
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=chosen,
                                                provider_options=[provider_options(p, threads) for p in chosen])
        except Exception as exc:  # ORT raises its own exception types (Fail, InvalidGraph, ...)
            raise BackendError(f"{self.path}: ONNX Runtime cannot load it: {exc}") from exc
        metadata = self.session.get_modelmeta().custom_metadata_map
        self.cfg = config_from_text(self.path, metadata)
        self.precision = metadata.get(META_PRECISION, PRECISION_FP32)  # int8: the quantised graph
        names = [i.name for i in self.session.get_inputs()]
        if names != list(INPUT_NAMES):
            raise BackendError(f"{self.path}: graph inputs {names}, expected {list(INPUT_NAMES)}")
        self.providers = self.session.get_providers()
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
        return torch.from_numpy(logits)

    def describe(self) -> str:
        import onnxruntime as ort

        return with_selection(self, f"onnxruntime {ort.__version__} ({', '.join(self.providers)}) "
                                    f"{self.path.name} {self.precision}")


def available_providers() -> list[str]:
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise BackendError(MISSING_ORT) from exc
    return list(ort.get_available_providers())


def _numpy(t: torch.Tensor, dtype) -> np.ndarray:
    return np.ascontiguousarray(t.detach().cpu().numpy(), dtype=dtype)
