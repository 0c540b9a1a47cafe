"""TensorRT: a cached engine run on one CUDA stream with static I/O buffers (trt_io),
optional CUDA graph. A ``.engine`` file runs only with the plugin library its manifest
names by hash. Written against the TensorRT 10 Python API (tensor-address bindings,
execute_async_v3); it has not run in this project's CI, which has no TensorRT or GPU
(docs/EXPORT.md)."""

from __future__ import annotations

from pathlib import Path

import torch
import yaml

from ..geometry.lookups import LiftTensors
from ..model.config import ModelConfig, config_from_dict
from .base import BackendError, with_selection
from .engine_cache import engine_plugin_problem, validate_engine
from .trt_env import NO_PLUGIN, find_plugin_library, import_tensorrt, load_plugin
from .trt_io import EngineIO


class TrtBackend:
    name = "tensorrt"

    def __init__(self, engine_path: str | Path, cfg: ModelConfig, plugin: str | Path | None = None,
                 device: str = "cuda:0", cuda_graph: bool = False) -> None:
        trt = import_tensorrt()
        self.cfg, self.engine_path, self.device = cfg, Path(engine_path), torch.device(device)
        load_plugin(trt, find_plugin_library(plugin))
        self._logger = trt.Logger(trt.Logger.WARNING)
        runtime = trt.Runtime(self._logger)
        self.engine = runtime.deserialize_cuda_engine(self.engine_path.read_bytes())
        if self.engine is None:
            raise BackendError(f"{self.engine_path}: TensorRT cannot deserialise it (other TensorRT version, "
                               "GPU or plugin?); delete it to rebuild")
        self.context = self.engine.create_execution_context()
        self.stream = torch.cuda.Stream(self.device)
        try:
            self.io = EngineIO.bind(trt, self.engine, self.context, self.device)
        except BackendError as exc:
            raise BackendError(f"{self.engine_path}: {exc}") from exc
        self._graph: torch.cuda.CUDAGraph | None = None
        self._use_graph = cuda_graph

    @classmethod
    def from_engine(cls, path: str | Path, **kwargs) -> "TrtBackend":
        cached, why = validate_engine(path, key=None)
        if cached is None:
            raise BackendError(f"cannot use engine: {why}")
        manifest = cached.manifest
        if kwargs.get("plugin") is None:  # the plugin the engine was built with, if any
            kwargs["plugin"] = manifest.get("plugin") or NO_PLUGIN
        plugin_path = find_plugin_library(kwargs["plugin"])
        problem = engine_plugin_problem(manifest, plugin_path)
        if problem:
            raise BackendError(f"{path}: {problem}")
        kwargs["plugin"] = plugin_path or NO_PLUGIN
        try:
            cfg = config_from_dict(yaml.safe_load(manifest["config"]), f"{path} manifest config")
        except (KeyError, ValueError) as exc:
            raise BackendError(f"{path}: manifest has no valid model config ({exc})") from exc
        return cls(path, cfg, **kwargs)

    def _enqueue(self) -> None:
        if not self.context.execute_async_v3(self.stream.cuda_stream):
            raise BackendError("TensorRT enqueue failed")

    def forward(self, images: torch.Tensor, lift: LiftTensors) -> torch.Tensor:
        with torch.cuda.stream(self.stream):
            self.io.feed(images, lift)  # the lookups only when the calibration changed
            if self._use_graph and self._graph is None:
                self._enqueue()  # TensorRT must run once before capture
                self._graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(self._graph, stream=self.stream):
                    self._enqueue()
            if self._graph is not None:
                self._graph.replay()
            else:
                self._enqueue()
            out = self.io.output()
        self.stream.synchronize()
        return out

    def describe(self) -> str:
        trt = import_tensorrt()
        return with_selection(self, f"TensorRT {trt.__version__} on {torch.cuda.get_device_name(self.device)} "
                                    f"({self.engine_path.name})")
