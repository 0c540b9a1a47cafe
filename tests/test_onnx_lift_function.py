"""The lift's ONNX model-local function, run by ONNX Runtime, against the torch reference
op on random inputs and every edge case of the contract (docs/stereo_voxel_sample.md)."""

from __future__ import annotations

import numpy as np
import pytest

from helpers.lift_graph import single_op_model
from lift_cases import CASES, GATE_SCALE, make_case, run_reference

ort = pytest.importorskip("onnxruntime", reason="onnxruntime is in requirements.txt; missing means setup is broken")


@pytest.mark.parametrize("B,V,S,C,with_depth,zero_view0", CASES)
def test_function_matches_reference_op(B, V, S, C, with_depth, zero_view0) -> None:
    rng = np.random.default_rng(100 * B + 10 * V + S + C)
    features, index, depth_prob, coords, grid = make_case(rng, B, V, S, C, zero_view0)
    model = single_op_model(V, S, with_depth, grid, GATE_SCALE)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    feeds = {f"f{s}": f for s, f in enumerate(features)} | {"index": index}
    if with_depth:
        feeds |= {"prob": depth_prob, "coords": coords}
    (got,) = session.run(None, feeds)
    ref = run_reference(features, index, grid, depth_prob if with_depth else None, coords if with_depth else None)
    assert got.shape == (B, C, *grid)
    np.testing.assert_allclose(got.reshape(ref.shape), ref, rtol=1e-5, atol=1e-6 * np.abs(ref).max())


def test_gate_scale_attribute_reaches_the_body() -> None:
    """The function reads gate_scale from the calling node, not a baked-in constant."""
    rng = np.random.default_rng(5)
    features, index, depth_prob, coords, grid = make_case(rng, 1, 2, 2, 4)
    outs = []
    for scale in (1.0, 3.0):
        session = ort.InferenceSession(single_op_model(2, 2, True, grid, scale).SerializeToString(),
                                       providers=["CPUExecutionProvider"])
        outs.append(session.run(None, {"f0": features[0], "f1": features[1], "index": index, "prob": depth_prob,
                                       "coords": coords})[0])
    np.testing.assert_allclose(outs[1], 3.0 * outs[0], rtol=1e-5, atol=1e-7)
