"""FAKES of the TensorRT Python API objects our runtime touches (libnvinfer cannot be
installed here). They mirror only the calls the runtime makes: the engine's I/O
inspection (num_io_tensors, get_tensor_name/shape/dtype), an execution context's
set_tensor_address, and the plugin registry's load_library. Nothing here builds or runs
an engine; tests using them check our bookkeeping, never TensorRT's behaviour."""

from __future__ import annotations

import enum
import types
from dataclasses import dataclass, field


class DataType(enum.Enum):  # the member names TensorRT 10/11 use
    FLOAT = 0
    HALF = 1
    INT8 = 2
    INT32 = 3
    BOOL = 4
    UINT8 = 5
    FP8 = 6
    BF16 = 7
    INT64 = 8


@dataclass
class FakeRegistry:
    loaded: list[str] = field(default_factory=list)

    def load_library(self, path: str) -> object:
        self.loaded.append(path)
        return object()


def fake_tensorrt(name: str = "tensorrt") -> types.SimpleNamespace:
    """A module-like object with DataType and one plugin registry (``.registry``)."""
    registry = FakeRegistry()
    return types.SimpleNamespace(__name__=name, __version__="10.3.0", DataType=DataType, registry=registry,
                                 get_plugin_registry=lambda: registry)


@dataclass
class FakeEngine:
    """I/O tensors as {name: (shape, DataType)}, in engine order."""

    tensors: dict[str, tuple[tuple[int, ...], DataType]]

    @property
    def num_io_tensors(self) -> int:
        return len(self.tensors)

    def get_tensor_name(self, index: int) -> str:
        return list(self.tensors)[index]

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        return self.tensors[name][0]

    def get_tensor_dtype(self, name: str) -> DataType:
        return self.tensors[name][1]


@dataclass
class FakeContext:
    addresses: dict[str, int] = field(default_factory=dict)

    def set_tensor_address(self, name: str, address: int) -> bool:
        self.addresses[name] = address
        return True
