"""The network's class prior file: the shipped one, writing and reading, the choice of prior
(shipped model, other weights, none, a file), the movable classes of the class set, and the
node parameter that names a prior."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from occdepth_ros.classes import load_class_set
from occdepth_ros.fusion.class_prior import (AUTO, FORMAT_TAG, NONE, ClassPrior, load_class_prior,
                                             resolve_class_prior, save_class_prior)
from occdepth_ros.node.params import NodeParams
from occdepth_ros.resources import DEFAULT_MODEL_FILE, default_class_prior_path, default_model_path

CS = load_class_set()
MOVING_RAW_IDS = range(252, 260)  # SemanticKITTI's moving-car ... moving-other-vehicle


def test_the_shipped_prior_belongs_to_the_shipped_model() -> None:
    prior = load_class_prior(default_class_prior_path(), CS)
    assert prior.model == DEFAULT_MODEL_FILE and prior.class_set == CS.name and prior.frames >= 100
    assert prior.probabilities.shape == (CS.n_classes,) and abs(prior.probabilities.sum() - 1.0) < 1e-12
    assert prior.probabilities[0] == prior.probabilities.max()  # most voxels in view are empty


def test_a_written_prior_reads_back(tmp_path: Path) -> None:
    p = np.random.default_rng(0).random(CS.n_classes) + 1e-3
    written = ClassPrior(p / p.sum(), CS.name, "net.safetensors", 12, "data sequences 00, frame stride 1")
    back = load_class_prior(save_class_prior(tmp_path / "prior.yaml", written), CS)
    np.testing.assert_allclose(back.probabilities, written.probabilities, rtol=1e-5)
    assert (back.model, back.frames, back.data) == (written.model, written.frames, written.data)


@pytest.mark.parametrize("text, message", [
    ("a: [", "not YAML"),
    ("format: other\n", "not a class prior file"),
    (f"format: {FORMAT_TAG}\nclass_set: nuscenes\nprobabilities: [1]\n", "measured for class set 'nuscenes'"),
    (f"format: {FORMAT_TAG}\nclass_set: semantic_kitti\nprobabilities: [0.5, 0.5]\n", "must be 20 positive"),
    (f"format: {FORMAT_TAG}\nclass_set: semantic_kitti\nprobabilities: [{', '.join(['0'] + ['0.1'] * 19)}]\n",
     "must be 20 positive"),
    (f"format: {FORMAT_TAG}\nclass_set: semantic_kitti\nprobabilities: [{', '.join(['.nan'] * 20)}]\n",
     "must be 20 positive"),
    (f"format: {FORMAT_TAG}\nclass_set: semantic_kitti\nprobabilities: {{a: 1}}\n", "must be"),
])
def test_a_bad_prior_file_is_refused_by_name(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "prior.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        load_class_prior(path, CS)


def test_a_missing_prior_file_is_named() -> None:
    with pytest.raises(FileNotFoundError, match="class prior not found: nowhere.yaml"):
        load_class_prior("nowhere.yaml", CS)


def test_which_prior_the_map_takes(tmp_path: Path) -> None:
    prior, line = resolve_class_prior(AUTO, default_model_path(), CS)
    assert prior is not None and str(default_class_prior_path()) in line
    np.testing.assert_array_equal(prior.probabilities, load_class_prior(default_class_prior_path(), CS).probabilities)
    prior, line = resolve_class_prior(AUTO, tmp_path / "other.safetensors", CS)
    assert prior is None and "not the shipped default" in line and "occdepth-class-prior" in line
    prior, line = resolve_class_prior(NONE, default_model_path(), CS)
    assert prior is None and "as set" in line
    own = save_class_prior(tmp_path / "own.yaml", ClassPrior(np.full(CS.n_classes, 1 / CS.n_classes), CS.name,
                                                             "own.safetensors", 3, "x"))
    prior, line = resolve_class_prior(str(own), None, CS)
    assert prior is not None and prior.model == "own.safetensors" and "on 3 frames" in line


def test_every_moving_raw_label_maps_to_a_movable_class() -> None:
    mask = CS.movable_mask()
    assert all(mask[CS.learning_map[raw]] for raw in MOVING_RAW_IDS)
    assert not mask[CS.empty_index]
    for name in ("road", "sidewalk", "building", "vegetation", "terrain"):
        assert not mask[CS.names.index(name)]


def test_the_node_parameter_names_a_file_none_or_nothing(tmp_path: Path) -> None:
    for value in (AUTO, NONE):
        NodeParams(map_class_prior=value).validate()
    with pytest.raises(ValueError, match="map_class_prior.*no such file"):
        NodeParams(map_class_prior=str(tmp_path / "missing.yaml")).validate()
    resolved = NodeParams(map_class_prior=NONE).resolved(tmp_path)
    assert resolved.map_class_prior == NONE
    shipped = dataclasses.replace(NodeParams(), map_class_prior="models/default.class_prior.yaml")
    assert Path(shipped.resolved(default_class_prior_path().parent.parent).map_class_prior).is_file()
