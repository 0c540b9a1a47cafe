"""ort_cpu_concat: a convolution of a concatenation, taken apart, keeps its outputs.
References: torch's conv2d / conv3d and softmax in float64 on the concatenated input,
independent of ONNX Runtime and of the rewrite's weight slicing."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import helper

from occdepth_ros.runtime.ort_cpu_concat import nchwc_ready, split_concat_convs
from occdepth_ros.runtime.ort_cpu_graph import optimize_for_cpu
from test_ort_cpu_graph import make_model, run


def _ops(model: onnx.ModelProto) -> list[str]:
    return [n.op_type for n in model.graph.node]


def _f64(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(a).double()


def test_nchwc_ready_matches_the_blocked_kernels_rule():
    assert [c for c in range(1, 50) if nchwc_ready(c)] == [1, 2, 3, 4, 5, 6, 7, 16, 32, 48]


def _decoder_block(widths: tuple[int, ...], seed: int = 0):
    """Concat(parts) -> 3x3 Conv with bias -> LeakyRelu, as the 2D decoder's last block."""
    rng = np.random.default_rng(seed)
    names = [f"x{i}" for i in range(len(widths))]
    parts = {n: rng.standard_normal((2, c, 9, 11)).astype(np.float32) for n, c in zip(names, widths)}
    w = rng.standard_normal((5, sum(widths), 3, 3)).astype(np.float32)
    b = rng.standard_normal(5).astype(np.float32)
    nodes = [helper.make_node("Concat", names, ["cat"], axis=1),
             helper.make_node("Conv", ["cat", "w", "b"], ["y"], pads=[1] * 4, kernel_shape=[3, 3], name="conv"),
             helper.make_node("LeakyRelu", ["y"], ["out"], alpha=0.01)]
    model = make_model(nodes, {n: a.shape for n, a in parts.items()}, ["out"], {"w": w, "b": b})
    want = torch.nn.functional.leaky_relu(torch.nn.functional.conv2d(
        torch.cat([_f64(a) for a in parts.values()], 1), _f64(w), _f64(b), padding=1), 0.01).numpy()
    return model, parts, want


@pytest.mark.parametrize("widths", [(16, 3), (32, 16, 5)])
def test_a_2d_conv_whose_parts_suit_the_blocked_kernels_is_taken_apart(widths):
    model, feeds, want = _decoder_block(widths)
    assert split_concat_convs(model) == 1
    ops = _ops(model)
    assert "Concat" not in ops and ops.count("Conv") == len(widths) and ops.count("Add") == len(widths) - 1
    assert {i.name for i in model.graph.initializer}.isdisjoint({"w", "b"})  # the old weights are gone
    (got,) = run(model, feeds)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("widths", [(16, 16), (12, 7), (3, 2)])
def test_other_2d_concats_are_left_alone(widths):
    """(16, 16): already a whole block; (12, 7): a part the blocked kernels cannot take;
    (3, 2): five channels are read as they are."""
    model, _, _ = _decoder_block(widths)
    assert split_concat_convs(model) == 0
    assert "Concat" in _ops(model)


def _cascade_head(dilation_a: int = 1, seed: int = 1):
    """trunk t -> occ = Conv_A(t) -> softmax -> classifier Conv_B(concat[t, softmax(occ)]),
    the CascadeHead's ending; both logits are graph outputs."""
    rng = np.random.default_rng(seed)
    t = rng.standard_normal((1, 4, 6, 7, 5)).astype(np.float32)
    wa, ba = rng.standard_normal((2, 4, 3, 3, 3)).astype(np.float32), rng.standard_normal(2).astype(np.float32)
    wb, bb = rng.standard_normal((6, 6, 3, 3, 3)).astype(np.float32), rng.standard_normal(6).astype(np.float32)
    pads = [dilation_a] * 6
    nodes = [helper.make_node("Relu", ["x"], ["t"]),
             helper.make_node("Conv", ["t", "wa", "ba"], ["occ"], pads=pads, dilations=[dilation_a] * 3, name="occ"),
             helper.make_node("Softmax", ["occ"], ["p"], axis=1),
             helper.make_node("Concat", ["t", "p"], ["cat"], axis=1),
             helper.make_node("Conv", ["cat", "wb", "bb"], ["ssc"], pads=[1] * 6, name="classes")]
    # shapes inferred: the exporter writes every intermediate shape, which gives the concat's part widths
    model = onnx.shape_inference.infer_shapes(
        make_model(nodes, {"x": t.shape}, ["ssc", "occ"], {"wa": wa, "ba": ba, "wb": wb, "bb": bb}))
    tt = torch.relu(_f64(t))
    occ = torch.nn.functional.conv3d(tt, _f64(wa), _f64(ba), padding=dilation_a, dilation=dilation_a)
    ssc = torch.nn.functional.conv3d(torch.cat([tt, torch.softmax(occ, 1)], 1), _f64(wb), _f64(bb), padding=1)
    return model, {"x": t}, (ssc.numpy(), occ.numpy())


def test_the_cascade_heads_two_convs_on_the_trunk_become_one():
    model, feeds, (want_ssc, want_occ) = _cascade_head()
    assert split_concat_convs(model) == 1
    ops = _ops(model)
    assert "Concat" not in ops and ops.count("Conv") == 2 and ops.count("Split") == 1
    joined = next(n for n in model.graph.node if n.op_type == "Conv" and n.input[0] == "t")
    assert [i.dims[0] for i in model.graph.initializer if i.name == joined.input[1]] == [6 + 2]
    got_ssc, got_occ = run(model, feeds)
    np.testing.assert_allclose(got_ssc, want_ssc, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got_occ, want_occ, rtol=1e-5, atol=1e-5)


def test_part_widths_not_known_statically_leave_the_conv_alone():
    model, _, _ = _cascade_head()
    del model.graph.value_info[:]
    assert split_concat_convs(model) == 0


def test_a_conv_with_other_attributes_is_not_joined():
    """The occupancy conv dilated: no shared im2col, and a 3D concat gains nothing alone."""
    model, _, _ = _cascade_head(dilation_a=2)
    assert split_concat_convs(model) == 0
    assert "Concat" in _ops(model)


def test_the_whole_cpu_rewrite_chain_on_the_cascade_head():
    """Layout permuted first, then the split reads through the Transposes; the softmax
    still becomes a sigmoid (its input now comes from the Split)."""
    model, feeds, (want_ssc, want_occ) = _cascade_head()
    report = optimize_for_cpu(model, (8, 9, 4))
    assert (report.convs_permuted, report.concat_convs_split, report.softmax2_replaced) == (2, 1, 1)
    assert "1 convs of a concat taken apart" in report.describe()
    got = dict(zip(["ssc", "occ"], run(model, feeds)))
    perms = report.output_perms
    np.testing.assert_allclose(got["ssc"].transpose(perms.get("ssc", range(5))), want_ssc, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got["occ"].transpose(perms.get("occ", range(5))), want_occ, rtol=1e-5, atol=1e-5)


def test_only_what_the_rewrite_left_unread_is_dropped():
    """The Concat and the old weights go; an initializer the graph never read stays
    (it may be an input's default), as does a one-part Concat's conv."""
    model, _, _ = _decoder_block((16, 3))
    model.graph.initializer.append(onnx.numpy_helper.from_array(np.zeros(3, np.float32), "spare"))
    assert split_concat_convs(model) == 1
    names = {i.name for i in model.graph.initializer}
    assert "spare" in names and not {"w", "b"} & names
    one_part, _, _ = _decoder_block((19,))
    assert split_concat_convs(one_part) == 0
