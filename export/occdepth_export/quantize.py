"""The INT8 variant of an exported graph: post-training quantisation with NNCF into a
QDQ ONNX file that ONNX Runtime's OpenVINO provider runs with its INT8 kernels.

What is quantised and what stays float32 (docs/INT8.md):

- INT8: every node the lift does not depend on, i.e. the 2D UNet (EfficientNet-B0
  encoder, decoder) and the depth net;
- float32: the lift (``occdepth::StereoVoxelSample``) and every node downstream of it,
  the 3D UNet, CRP and the heads. The lift's inputs (features, depth probabilities) are
  float32 tensors as well: no quantiser sits on an edge into an ignored node.

Scope ``2d+3d`` (``--scope``, not the default) quantises the 3D network too, on its own
(calibrated on the float lift's outputs), except the nodes ``float_3d_nodes`` names;
docs/INT8.md has its accuracy and why it is not the default.

Calibration uses frames of a training world only (``occdepth-synth`` sequence 00): the
held-out worlds that score the model must not tune its ranges. The graph keeps the float
file's metadata, plus the precision key (``onnx_contract.META_PRECISION``) so the runtime
can say what it runs.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from occdepth_ros.runtime import onnx_contract as contract

from .spec import OP_DOMAIN, OP_NAME

log = logging.getLogger(__name__)

NNCF_VERSION = "3.4.0"  # requirements.txt pins it; part of the cache key
CALIBRATION_FRAMES = 16
CALIBRATION_SEQUENCE = "00"  # a training world (docs/MODEL_CARD.md): never a held-out one
CALIBRATION_SEED = 1
INT8_SUFFIX = ".int8.onnx"
# What NNCF quantises: "2d" = everything upstream of the lift; "2d+3d" = also the 3D
# network downstream of it (the lift itself stays float32 in both). Part of the cache key.
SCOPE_2D = "2d"
SCOPE_2D_3D = "2d+3d"
QUANT_SCOPES = (SCOPE_2D, SCOPE_2D_3D)
QUANT_SCOPE = SCOPE_2D
# 2d+3d: the 3D network is calibrated on the float lift's outputs of this many training
# frames (the 2D part on the first CALIBRATION_FRAMES of them, as in scope 2d), with
# asymmetric activations (NNCF's MIXED preset): the 3D features after the lift and the
# residual sums are not post-ReLU. These stay float32 there: the context-prior block's
# non-convolution ops (its matrix products over all voxels, sigmoid, softmax, reshapes,
# concatenations, pools; quantised, the labels collapse), and every node that reads the
# lift's output (NNCF's accuracy control, run on training-world frames, reverted exactly
# these three: the first 3D convolution and two residual sums).
CALIBRATION_FRAMES_3D = 64
FLOAT_3D_OPS = ("MatMul", "Sigmoid", "Softmax", "Reshape", "Transpose", "Concat", "AveragePool")
MISSING_NNCF = f"INT8 quantisation needs nncf (pip install nncf=={NNCF_VERSION})"


class QuantizeError(RuntimeError):
    """The graph cannot be quantised (no lift node, nncf missing, no calibration frames)."""


@dataclass(frozen=True)
class Calibration:
    """Where the calibration frames come from (a KITTI-layout root and one sequence)."""

    root: Path
    sequence: str = CALIBRATION_SEQUENCE
    frames: int = CALIBRATION_FRAMES
    rendered: bool = False  # the seeded training-world frames (make_calibration_frames), else a user's data

    def key(self) -> str:
        """What the cached INT8 graph depends on: the frames' source, sequence and count."""
        source = f"synth seed {CALIBRATION_SEED}" if self.rendered else str(Path(self.root).resolve())
        return f"{source}\n{self.sequence}\n{self.frames}"


def float_region(graph: onnx.GraphProto) -> list[str]:
    """Names of the lift node and of every node that depends on its output (the 3D
    network and heads): the part that stays float32."""
    lifts = [n for n in graph.node if n.domain == OP_DOMAIN and n.op_type == OP_NAME]
    if len(lifts) != 1:
        raise QuantizeError(f"expected one {OP_DOMAIN}::{OP_NAME} node, the graph has {len(lifts)}")
    tainted = set(lifts[0].output)
    names = [lifts[0].name]
    for node in graph.node:  # ONNX graphs are topologically sorted
        if node is not lifts[0] and tainted.intersection(node.input):
            tainted.update(node.output)
            names.append(node.name)
    return names


def calibration_feeds(model_cfg_yaml: str, calibration: Calibration) -> list[dict[str, np.ndarray]]:
    """Graph feeds of the calibration frames, made exactly as the runtime makes them
    (StereoInference's resize, normalisation and lift lookups)."""
    import yaml

    from occdepth_ros.data.images import read_rgb
    from occdepth_ros.data.kitti_odometry import KittiSequence
    from occdepth_ros.geometry.calib import kitti_calibration, read_kitti_calib
    from occdepth_ros.inference.pipeline import StereoInference
    from occdepth_ros.model.config import config_from_dict

    cfg = config_from_dict(yaml.safe_load(model_cfg_yaml), "embedded config")

    class _Shapes:  # a backend that only carries the config: feeds need no network
        def __init__(self) -> None:
            self.cfg = cfg

    engine = StereoInference(_Shapes())  # type: ignore[arg-type]
    seq = KittiSequence(calibration.root, calibration.sequence)
    frames = seq.frame_ids()[: calibration.frames]
    if not frames:
        raise QuantizeError(f"no frames in {calibration.root} sequence {calibration.sequence}")
    feeds = []
    for frame in frames:
        left, right = (read_rgb(p) for p in seq.image_paths(frame))
        engine.set_calibration(kitti_calibration(read_kitti_calib(seq.path / "calib.txt"), left.shape[:2]))
        lift = engine._lift
        feeds.append({
            contract.INPUT_IMAGES: engine.prepare([left, right]).numpy().astype(np.float32),
            contract.INPUT_PIXEL_INDEX: lift.pixel_index.numpy().astype(np.int32),
            contract.INPUT_DEPTH_COORDS: lift.depth_coords.numpy().astype(np.float32),
            contract.INPUT_PIXEL_SIZE: lift.pixel_size.numpy().astype(np.float32),
        })
    return feeds


def _front(model: onnx.ModelProto, float_nodes: set[str]) -> onnx.ModelProto:
    """The part of the graph that is quantised, as a model of its own: the nodes outside
    the float region, with every tensor the float region (or the graph output) reads from
    them as an output. NNCF then never sees the lift's custom node."""
    graph = model.graph
    front = [n for n in graph.node if n.name not in float_nodes]
    back = [n for n in graph.node if n.name in float_nodes]
    wanted = {i for n in back for i in n.input} | {o.name for o in graph.output}
    outputs = [o for n in front for o in n.output if o in wanted]
    used = {i for n in front for i in n.input}
    return _subgraph(model, front, [i.name for i in graph.input if i.name in used], outputs, "front")


def _subgraph(model: onnx.ModelProto, nodes: list[onnx.NodeProto], inputs: list[str],
              outputs: list[str], name: str) -> onnx.ModelProto:
    """``nodes`` of ``model`` as a model of their own, fed by the tensors ``inputs``."""
    graph = model.graph
    types = {v.name: v for v in [*graph.input, *graph.value_info, *graph.output]}
    if any(t not in types for t in [*inputs, *outputs]):
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False).graph
        types.update({v.name: v for v in inferred.value_info})
    missing = [t for t in [*inputs, *outputs] if t not in types]
    if missing:
        raise QuantizeError(f"no type known for {missing}; cannot cut the graph")
    used = {i for n in nodes for i in n.input}
    produced = {o for n in nodes for o in n.output}
    sub = onnx.helper.make_graph(
        nodes, f"{graph.name}_{name}",
        inputs=[types[i] for i in inputs], outputs=[types[o] for o in outputs],
        initializer=[t for t in graph.initializer if t.name in used],
        value_info=[v for v in graph.value_info if v.name in produced and v.name not in outputs],
    )
    opsets = [o for o in model.opset_import if o.domain in ("", "ai.onnx")]
    return onnx.helper.make_model(sub, opset_imports=opsets, ir_version=model.ir_version)


def _lift_outputs(model: onnx.ModelProto, lift: onnx.NodeProto,
                  feeds: Sequence[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
    """The lift's output on each calibration feed, from the float32 graph (ORT's CPU
    provider, which inlines the lift's ONNX function)."""
    import onnxruntime as ort

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False).graph
    types = {v.name: v for v in [*inferred.value_info, *model.graph.value_info]}
    del probe.graph.output[:]
    probe.graph.output.extend([types[o] for o in lift.output])
    sess = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    return [dict(zip(lift.output, sess.run(list(lift.output), {k: feed[k] for k in names}))) for feed in feeds]


def _stitch(model: onnx.ModelProto, front: onnx.ModelProto, float_nodes: set[str]) -> onnx.ModelProto:
    """``model`` with its front part replaced by the quantised ``front``: the float
    region's nodes, initializers, value types and functions as they were."""
    graph = model.graph
    back = [n for n in graph.node if n.name in float_nodes]
    back_inputs = {i for n in back for i in n.input}
    have = {t.name for t in front.graph.initializer}
    initializers = [*front.graph.initializer,
                    *(t for t in graph.initializer if t.name in back_inputs and t.name not in have)]
    out = onnx.ModelProto()
    out.CopyFrom(model)
    del out.graph.node[:]
    out.graph.node.extend([*front.graph.node, *back])
    del out.graph.initializer[:]
    out.graph.initializer.extend(initializers)
    known = {v.name for v in front.graph.value_info}
    kept = [v for v in graph.value_info if v.name not in known]
    del out.graph.value_info[:]
    out.graph.value_info.extend([*front.graph.value_info, *kept])
    opsets = {o.domain or "": o.version for o in model.opset_import}
    for o in front.opset_import:  # QDQ may need a newer default opset
        if (o.domain or "") == "" and o.version > opsets.get("", 0):
            for mine in out.opset_import:
                if (mine.domain or "") == "":
                    mine.version = o.version
    return out


def float_3d_nodes(back_nodes: Sequence[onnx.NodeProto], lift_outputs: Sequence[str]) -> list[str]:
    """The 3D network's nodes that stay float32 in the 2d+3d scope: FLOAT_3D_OPS and the
    readers of the lift's output."""
    return [n.name for n in back_nodes if n.op_type in FLOAT_3D_OPS or set(lift_outputs).intersection(n.input)]


def _quantize_back(nncf, model: onnx.ModelProto, stitched: onnx.ModelProto,
                   feeds: Sequence[dict[str, np.ndarray]]) -> onnx.ModelProto:
    """``stitched`` with the 3D network downstream of the lift (not the lift) quantised
    too, calibrated on the float32 lift's outputs of the same frames."""
    graph = model.graph
    region = float_region(graph)
    lift = next(n for n in graph.node if n.name == region[0])
    back_names = set(region[1:])
    back_nodes = [n for n in graph.node if n.name in back_names]
    produced = {o for n in back_nodes for o in n.output}
    inits = {t.name for t in graph.initializer}
    inputs = sorted({i for n in back_nodes for i in n.input if i and i not in produced and i not in inits})
    if inputs != sorted(lift.output):
        raise QuantizeError(f"the 3D network reads {inputs}, not only the lift's output")
    back = _subgraph(model, back_nodes, inputs, [o.name for o in graph.output], "back")
    dataset = nncf.Dataset(_lift_outputs(model, lift, feeds))
    keep_float = float_3d_nodes(back_nodes, list(lift.output))
    qback = nncf.quantize(back, dataset, subset_size=len(feeds), target_device=nncf.TargetDevice.CPU,
                          preset=nncf.QuantizationPreset.MIXED, ignored_scope=nncf.IgnoredScope(names=keep_float))
    keep = [n for n in stitched.graph.node if n.name not in back_names]
    names = [n.name for n in keep] + [n.name for n in qback.graph.node]
    out = onnx.ModelProto()
    out.CopyFrom(stitched)
    del out.graph.node[:]
    out.graph.node.extend([*keep, *qback.graph.node])
    back_used = {i for n in back_nodes for i in n.input}
    keep_used = {i for n in keep for i in n.input}
    front_inits = [t for t in stitched.graph.initializer if t.name not in back_used or t.name in keep_used]
    have = {t.name for t in front_inits}
    clash = [t.name for t in qback.graph.initializer if t.name in have]
    if len(set(names)) != len(names) or clash:
        raise QuantizeError(f"name clash joining the quantised 3D network: {clash[:5]}")
    del out.graph.initializer[:]
    out.graph.initializer.extend([*front_inits, *qback.graph.initializer])
    known = {v.name for v in qback.graph.value_info}
    kept = [v for v in stitched.graph.value_info if v.name not in known]
    del out.graph.value_info[:]
    out.graph.value_info.extend([*kept, *qback.graph.value_info])
    return out


def quantize_onnx(float_path: Path, out_path: Path, feeds: Sequence[dict[str, np.ndarray]],
                  scope: str | None = None) -> Path:
    """NNCF post-training quantisation of ``float_path`` (everything but the float
    region) on ``feeds``; writes ``out_path`` with the float file's metadata and
    the precision key."""
    try:
        import nncf
    except ImportError as exc:
        raise QuantizeError(MISSING_NNCF) from exc
    model = onnx.load(str(float_path))
    meta = {p.key: p.value for p in model.metadata_props}
    if meta.get(contract.META_FORMAT) != contract.META_FORMAT_VALUE:
        raise QuantizeError(f"{float_path}: not exported by occdepth-export-onnx")
    if meta.get(contract.META_PRECISION, contract.PRECISION_FP32) != contract.PRECISION_FP32:
        raise QuantizeError(f"{float_path}: already quantised ({meta[contract.META_PRECISION]})")
    if not feeds:
        raise QuantizeError("no calibration frames")
    float_nodes = set(float_region(model.graph))
    front = _front(model, float_nodes)
    front_inputs = {i.name for i in front.graph.input}
    front_feeds = feeds[:CALIBRATION_FRAMES]  # the 2D part's calibration does not depend on the scope
    dataset = nncf.Dataset([{k: v for k, v in feed.items() if k in front_inputs} for feed in front_feeds])
    quantized_front = nncf.quantize(front, dataset, subset_size=len(front_feeds), target_device=nncf.TargetDevice.CPU)
    quantized = _stitch(model, quantized_front, float_nodes)
    if (scope or QUANT_SCOPE) == SCOPE_2D_3D:
        quantized = _quantize_back(nncf, model, quantized, feeds)
    meta[contract.META_PRECISION] = contract.PRECISION_INT8
    del quantized.metadata_props[:]
    onnx.helper.set_model_props(quantized, meta)
    quantized.producer_name = "occdepth_ros"
    try:
        onnx.checker.check_model(quantized)
    except onnx.checker.ValidationError as exc:
        raise QuantizeError(f"the quantised graph fails onnx.checker: {exc}") from exc
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_suffix(out_path.suffix + ".tmp")
    onnx.save_model(quantized, str(tmp))
    tmp.replace(out_path)
    return out_path


def nncf_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("nncf") is not None


def int8_cache_path(float_path: Path, cache: Path, calibration: Calibration | None = None,
                    scope: str | None = None) -> Path:
    """Where the INT8 graph of ``float_path`` is cached: keyed by the float graph's bytes,
    the calibration (default: the rendered training-world frames) and the quantiser's
    version."""
    scope = scope or QUANT_SCOPE
    calibration = calibration or default_calibration(cache, scope=scope)
    h = hashlib.sha256(Path(float_path).read_bytes())
    h.update(f"\n{NNCF_VERSION}\n{calibration.key()}".encode())
    if scope != SCOPE_2D:  # the key of a 2D-only graph is what it was before scopes existed
        h.update(f"\nscope {scope}".encode())
    stem = Path(float_path).name.removesuffix(".onnx")
    return cache / f"{stem}-{h.hexdigest()[:16]}{INT8_SUFFIX}"


def calibration_frames(scope: str | None = None) -> int:
    """How many training-world frames a scope calibrates on."""
    return CALIBRATION_FRAMES_3D if (scope or QUANT_SCOPE) == SCOPE_2D_3D else CALIBRATION_FRAMES


def default_calibration(cache: Path, frames: int | None = None, scope: str | None = None) -> Calibration:
    """The seeded training-world frames, rendered under ``cache`` when first needed; by
    default as many as the scope calibrates on."""
    frames = calibration_frames(scope) if frames is None else frames
    return Calibration(cache / "calibration", CALIBRATION_SEQUENCE, frames, rendered=True)


def make_calibration_frames(root: Path, calibration_frames: int = CALIBRATION_FRAMES) -> Calibration:
    """Render the calibration frames of the training world (occdepth-synth, seeded: the
    same bytes every time) under ``root`` unless they are there."""
    calibration = Calibration(root, CALIBRATION_SEQUENCE, calibration_frames, rendered=True)
    seq_dir = root / "sequences" / CALIBRATION_SEQUENCE / "image_3"
    if len(list(seq_dir.glob("*.png"))) >= calibration_frames:
        return calibration
    from occdepth_ros.data.synth.cli import main as synth_main

    log.warning("rendering %d calibration frames of training world %s into %s (once; about a second each)",
                calibration_frames, CALIBRATION_SEQUENCE, root)
    rc = synth_main(["--out", str(root), "--sequences", CALIBRATION_SEQUENCE, "--frames", str(calibration_frames),
                     "--seed", str(CALIBRATION_SEED), "--voxel-every", "0", "--workers", "1"])
    if rc:
        raise QuantizeError(f"occdepth-synth failed rendering the calibration frames (exit {rc})")
    return calibration


def cached_int8(float_path: Path, cache: Path, calibration: Calibration | None = None,
                scope: str | None = None) -> Path:
    """The INT8 graph of ``float_path``, from ``cache`` when quantised before with the
    same float graph and calibration; else calibrated (frames rendered into the cache
    unless given) and written there."""
    calibration = calibration or default_calibration(cache, scope=scope)
    path = int8_cache_path(float_path, cache, calibration, scope)
    if path.is_file():
        return path
    if not nncf_installed():
        raise QuantizeError(MISSING_NNCF)
    if calibration.rendered:
        calibration = make_calibration_frames(calibration.root, calibration.frames)
    log.warning("quantising %s to INT8 into %s (once per model; about a minute)", float_path, path)
    meta = {p.key: p.value for p in onnx.load(str(float_path), load_external_data=False).metadata_props}
    if contract.META_CONFIG not in meta:
        raise QuantizeError(f"{float_path}: not exported by occdepth-export-onnx")
    feeds = calibration_feeds(meta[contract.META_CONFIG], calibration)
    return quantize_onnx(Path(float_path), path, feeds, scope)


def graph_precision(model: onnx.ModelProto) -> str:
    return {p.key: p.value for p in model.metadata_props}.get(contract.META_PRECISION, contract.PRECISION_FP32)


def quantized_nodes(graph: onnx.GraphProto) -> set[str]:
    """Names of the nodes that take a dequantised (QDQ) input."""
    dq_out = {o for n in graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    return {n.name for n in graph.node if n.op_type != "QuantizeLinear" and dq_out.intersection(n.input)}


def main(argv: Iterable[str] | None = None) -> int:
    """occdepth-quantize: the INT8 graph of a checkpoint (default: the shipped model)."""
    ap = argparse.ArgumentParser(prog="occdepth-quantize", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", help="weights; default: the shipped model")
    ap.add_argument("--calibration-data", type=Path,
                    help="KITTI-layout root with training sequence 00; default: rendered into the cache")
    ap.add_argument("--frames", type=int, help=f"calibration frames (default {CALIBRATION_FRAMES}; "
                    f"{CALIBRATION_FRAMES_3D} with --scope {SCOPE_2D_3D})")
    ap.add_argument("--out", type=Path, help="also copy the INT8 graph here")
    ap.add_argument("--scope", choices=QUANT_SCOPES, default=QUANT_SCOPE,
                    help="what is quantised: the 2D part, or also the 3D network after the lift")
    args = ap.parse_args(list(argv) if argv is not None else None)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    from occdepth_ros.checkpoint.io import choose_weights, load_model
    from occdepth_ros.resources import cache_dir

    from .backends import cached_onnx

    ckpt, preset, _ = choose_weights(args.checkpoint, None)
    float_path = cached_onnx(load_model(ckpt, preset=preset), str(ckpt or f"preset {preset}"))
    frames = args.frames or calibration_frames(args.scope)
    calibration = Calibration(args.calibration_data, CALIBRATION_SEQUENCE, frames) if args.calibration_data \
        else default_calibration(cache_dir("int8"), frames)
    try:
        path = cached_int8(float_path, cache_dir("int8"), calibration, args.scope)
    except QuantizeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_bytes(path.read_bytes())
    print(f"INT8 graph: {path}" + (f" (copied to {args.out})" if args.out else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
