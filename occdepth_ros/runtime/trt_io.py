"""A TensorRT engine's I/O buffers: dtypes and shapes read from the engine, the
calibration's lookup tensors copied to the device only when they change.

The lookups (pixel index, depth coordinates, pixel size) are constant for a rig: 1.8 MB
for the shipped model, 14.7 MB for kitti_b3_f32. Copying them each frame costs more
than the images. Plain torch plus the engine's inspection API, so it is unit-tested
with fakes of the TensorRT objects where no TensorRT exists.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..geometry.lookups import LiftTensors
from .base import BackendError

IMAGES = "images"
LIFT_INPUTS = ("pixel_index", "depth_coords", "pixel_size")  # LiftTensors' fields, in order
INPUTS = (IMAGES, *LIFT_INPUTS)
OUTPUT = "ssc_logit"

# TensorRT DataType member name -> torch dtype (names are stable across TensorRT 10 and 11).
TRT_TO_TORCH = {"FLOAT": torch.float32, "HALF": torch.float16, "BF16": torch.bfloat16, "INT8": torch.int8,
                "UINT8": torch.uint8, "INT32": torch.int32, "INT64": torch.int64, "BOOL": torch.bool}


def torch_dtype(trt, trt_dtype, tensor: str) -> torch.dtype:
    for name, dtype in TRT_TO_TORCH.items():
        if getattr(trt.DataType, name, None) == trt_dtype:
            return dtype
    raise BackendError(f"engine tensor {tensor!r} has TensorRT type {trt_dtype}, which this backend cannot feed")


def _stamp(tensors: LiftTensors) -> tuple:
    """What identifies the lookups' content: the tensor objects and their in-place version."""
    return tuple((id(t), t._version) for t in tensors)


@dataclass
class EngineIO:
    """Device buffers bound to an execution context, one per engine I/O tensor."""

    buffers: dict[str, torch.Tensor]
    _lift: LiftTensors | None = None  # held, so the ids in _lift_stamp stay unique
    _lift_stamp: tuple = ()

    @classmethod
    def bind(cls, trt, engine, context, device: torch.device) -> "EngineIO":
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        missing = [n for n in (*INPUTS, OUTPUT) if n not in names]
        if missing:
            raise BackendError(f"engine lacks I/O tensors {missing}; it has {names}")
        buffers = {}
        for name in names:
            shape = tuple(engine.get_tensor_shape(name))
            if any(d < 0 for d in shape):
                raise BackendError(f"engine tensor {name!r} has a dynamic shape {shape}; engines are built static")
            buffers[name] = torch.empty(shape, dtype=torch_dtype(trt, engine.get_tensor_dtype(name), name),
                                        device=device)
            context.set_tensor_address(name, buffers[name].data_ptr())
        return cls(buffers)

    def feed(self, images: torch.Tensor, lift: LiftTensors) -> list[str]:
        """Copy this frame's inputs into the buffers (the caller's stream); returns the
        names copied. The lookups are copied when they are new or were changed in place."""
        copied = [IMAGES]
        self._copy(IMAGES, images)
        stamp = _stamp(lift)
        if self._lift is None or stamp != self._lift_stamp:
            for name, value in zip(LIFT_INPUTS, lift):
                self._copy(name, value)
            self._lift, self._lift_stamp = lift, stamp
            copied += LIFT_INPUTS
        return copied

    def _copy(self, name: str, value: torch.Tensor) -> None:
        buffer = self.buffers[name]
        if tuple(value.shape) != tuple(buffer.shape):
            raise BackendError(f"input {name!r} is {tuple(value.shape)}, the engine was built for "
                               f"{tuple(buffer.shape)}")
        buffer.copy_(value.to(buffer.dtype), non_blocking=True)

    def output(self) -> torch.Tensor:
        return self.buffers[OUTPUT].float().cpu()
