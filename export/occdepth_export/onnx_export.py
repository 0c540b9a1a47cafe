"""Export a checkpoint or preset to ONNX: the lift as one ``occdepth::StereoVoxelSample``
node carrying its model-local function, lookups as graph inputs, config in metadata.

The graph has a fixed batch of 1 and a fixed image size (the config's network input);
the calibration enters only through the lookup inputs, so one file serves any rig at
that image size.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from occdepth_ros.geometry.lookups import LiftTensors
from occdepth_ros.model.occdepth import OccDepth
from occdepth_ros.runtime import onnx_contract as contract

from . import spec
from .custom_op import lift_as_custom_op, stereo_voxel_sample_op
from .onnx_function import build_function

log = logging.getLogger(__name__)


class ExportError(RuntimeError):
    """The model cannot be exported, or the exported file fails its checks."""


class _GraphModule(nn.Module):
    """Flat tensor inputs (what an ONNX graph has) -> semantic logits."""

    def __init__(self, model: OccDepth) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor, pixel_index: torch.Tensor, depth_coords: torch.Tensor,
                pixel_size: torch.Tensor) -> torch.Tensor:
        return self.model(images, LiftTensors(pixel_index, depth_coords, pixel_size))["ssc_logit"]


@contextlib.contextmanager
def _quiet(logger_name: str):
    """The exporter's IR logs a warning for the custom node before its type is set."""
    logger = logging.getLogger(logger_name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def example_inputs(model: OccDepth) -> tuple[torch.Tensor, ...]:
    """Inputs of the graph's shapes and dtypes (values do not matter for tracing)."""
    cfg = model.cfg
    n = int(np.prod(cfg.grid.feature_dims))
    v = cfg.n_views
    return (
        torch.zeros(1, v, 3, cfg.image.height, cfg.image.width),
        torch.zeros(1, v, len(cfg.sfa_scales), n, dtype=torch.int32),
        torch.zeros(1, v, n, 3),
        torch.ones(1, v, 1),
    )


def register_schema() -> None:
    """The exporter traces the translation through onnxscript, which needs a schema."""
    if onnx.defs.has(spec.OP_NAME, spec.OP_DOMAIN):
        return
    from onnx.defs import OpSchema

    attr = OpSchema.Attribute
    schema = OpSchema(
        spec.OP_NAME, spec.OP_DOMAIN, spec.OP_VERSION,
        doc="OccDepth's 2D-to-3D lift (docs/stereo_voxel_sample.md)",
        inputs=[OpSchema.FormalParameter("inputs", "T", param_option=OpSchema.FormalParameterOption.Variadic,
                                         is_homogeneous=False)],
        outputs=[OpSchema.FormalParameter("volume", "F")],
        type_constraints=[("T", ["tensor(float)", "tensor(float16)", "tensor(int32)"], "features, lookups"),
                          ("F", ["tensor(float)", "tensor(float16)"], "volume")],
        attributes=[attr("grid", OpSchema.AttrType.INTS, "X, Y, Z"),
                    attr("gate_scale", OpSchema.AttrType.FLOAT, "OAD gate factor"),
                    attr("num_scales", OpSchema.AttrType.INT, "S: inputs are S features, pixel_index[, depth_prob, "
                         "depth_coords]"),
                    attr("plugin_namespace", OpSchema.AttrType.STRING, "TensorRT plugin namespace"),
                    attr("plugin_version", OpSchema.AttrType.STRING, "TensorRT plugin version")],
    )
    onnx.defs.register_schema(schema)


def _translate(features, pixel_index, depth_prob, depth_coords, grid, gate_scale):
    from onnxscript.values import Opset

    op = Opset(spec.OP_DOMAIN, spec.OP_VERSION)
    inputs = [*features, pixel_index]
    if depth_prob is not None:
        inputs += [depth_prob, depth_coords]
    volume = op.StereoVoxelSample(*inputs, grid=list(grid), gate_scale=float(gate_scale), num_scales=len(features),
                                  plugin_namespace=spec.PLUGIN_NAMESPACE, plugin_version=str(spec.OP_VERSION))
    # A custom node's output has no inferred type; without one the exporter lowers the
    # next (bias-free) Conv with a wrongly shaped zero bias. Declare it here.
    import onnx_ir as ir

    f0 = features[0]
    volume.dtype = f0.dtype
    volume.shape = ir.Shape([f0.shape[0], f0.shape[2], *grid])
    return volume


def _conv3d(input, weight, bias=None, stride=(1, 1, 1), padding=(0, 0, 0), dilation=(1, 1, 1), groups=1):
    """aten.conv3d -> one Conv. onnxscript 0.7.2's own lowering gives a bias-free conv3d
    a zero bias of shape (out_channels, 2) (copied from its complex variant), which ONNX
    Runtime rejects; ONNX's Conv takes the bias as an optional input instead."""
    from onnxscript import opset18 as op

    def triple(v):
        return list(v) if isinstance(v, (list, tuple)) else [v, v, v]

    pads = triple(padding)
    inputs = [input, weight] + ([bias] if bias is not None else [])
    return op.Conv(*inputs, strides=triple(stride), pads=pads + pads, dilations=triple(dilation), group=groups)


@dataclass
class ExportResult:
    path: Path
    n_nodes: int
    lift_nodes: int
    size_bytes: int


def weights_sha256(model: nn.Module) -> str:
    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def export_onnx(model: OccDepth, path: str | Path, source: str = "", weights_hash: str | None = None) -> ExportResult:
    """Trace ``model`` and write ``path``; raises ExportError with the reason.
    ``weights_hash``: :func:`weights_sha256` of ``model`` when the caller has it."""
    cfg = model.cfg
    if cfg.sfa_fusion != "cosine":
        raise ExportError(f"{cfg.name}: sfa_fusion '{cfg.sfa_fusion}' is an ablation; only cosine (Stereo-SFA) "
                          "models export to the StereoVoxelSample contract")
    register_schema()
    model = model.eval().float()
    graph_module = _GraphModule(model)
    input_names = list(contract.INPUT_NAMES)
    with lift_as_custom_op(model), torch.no_grad(), warnings.catch_warnings(), _quiet("onnx_ir"):
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            graph_module, example_inputs(model), dynamo=True, opset_version=spec.ONNX_OPSET,
            input_names=input_names, output_names=[contract.OUTPUT_SSC_LOGIT],
            custom_translation_table={torch.ops.occdepth.stereo_voxel_sample.default: _translate,
                                      torch.ops.aten.conv3d.default: _conv3d},
            verbose=False,
        )
    proto = program.model_proto
    lift_nodes = [n for n in proto.graph.node if n.domain == spec.OP_DOMAIN and n.op_type == spec.OP_NAME]
    if len(lift_nodes) != 1:
        raise ExportError(f"expected one {spec.OP_DOMAIN}::{spec.OP_NAME} node, the graph has {len(lift_nodes)}")
    _type_lift_output(proto, lift_nodes[0], model)
    proto = finalize(proto, model, source, weights_hash or weights_sha256(model))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    onnx.save_model(proto, str(tmp))
    tmp.replace(path)
    return ExportResult(path, len(proto.graph.node), len(lift_nodes), path.stat().st_size)


def _type_lift_output(proto: onnx.ModelProto, node: onnx.NodeProto, model: OccDepth) -> None:
    """The exporter cannot infer a custom node's output type; declare it."""
    cfg = model.cfg
    out = node.output[0]
    kept = [vi for vi in proto.graph.value_info if vi.name != out]
    del proto.graph.value_info[:]
    proto.graph.value_info.extend(kept)
    proto.graph.value_info.append(onnx.helper.make_tensor_value_info(
        out, onnx.TensorProto.FLOAT, [1, cfg.feature, *cfg.grid.feature_dims]))


def finalize(proto: onnx.ModelProto, model: OccDepth, source: str, weights_hash: str) -> onnx.ModelProto:
    """Attach the model-local function, the opset import, metadata; check in full."""
    cfg = model.cfg
    del proto.functions[:]  # the exporter's own (none expected); ours is the only one
    proto.functions.append(build_function(cfg.n_views, len(cfg.sfa_scales), cfg.depth.enabled))
    if not any(o.domain == spec.OP_DOMAIN for o in proto.opset_import):
        proto.opset_import.append(onnx.helper.make_opsetid(spec.OP_DOMAIN, spec.OP_VERSION))
    proto.ir_version = spec.ONNX_IR_VERSION
    meta = {
        contract.META_FORMAT: contract.META_FORMAT_VALUE,
        contract.META_CONFIG: cfg.to_yaml(),
        contract.META_SOURCE: source,
        contract.META_WEIGHTS_SHA256: weights_hash,
    }
    del proto.metadata_props[:]
    onnx.helper.set_model_props(proto, meta)
    proto.producer_name = "occdepth_ros"
    try:
        onnx.checker.check_model(proto, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise ExportError(f"exported model fails onnx.checker (full_check): {exc}") from exc
    return proto


__all__ = ["ExportError", "ExportResult", "example_inputs", "export_onnx", "register_schema",
           "stereo_voxel_sample_op", "weights_sha256"]
