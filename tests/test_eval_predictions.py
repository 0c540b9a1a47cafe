"""occdepth-eval --predictions: existing .label folders scored with the same loop, table and
JSON as the model path, checked against the benchmark's own formula computed here from its
definition (semantic-kitti-api evaluate_completion.py: the learning-map remap with 0 kept
empty, the .invalid mask, a confusion matrix); refusals name the file."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers.tiny_model import save_tiny_model

from occdepth_ros.classes import load_class_set
from occdepth_ros.cli.evaluate import main as eval_main
from occdepth_ros.cli.predict import main as predict_main

N_CLASSES = 20


@pytest.fixture(scope="module")
def root(two_frame_synth) -> Path:
    return two_frame_synth


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("tiny") / "tiny.safetensors", seed=2)


def _frames(root: Path) -> list[Path]:
    return sorted((root / "sequences" / "00" / "voxels").glob("*.label"))


@pytest.fixture(scope="module")
def noisy_gt(root, tmp_path_factory) -> Path:
    """Ground truth with a fifth of the voxels replaced by random ids: every id
    learning_map_inv writes and the moving-class aliases the benchmark folds in."""
    out = tmp_path_factory.mktemp("noisy")
    cs = load_class_set()
    ids = np.array(sorted(set(cs.learning_map_inv.values()) | {252, 253, 254, 255, 256, 257, 258, 259}), np.uint16)
    rng = np.random.default_rng(11)
    for gt in _frames(root):
        raw = np.fromfile(gt, dtype="<u2")
        flip = rng.random(raw.size) < 0.2
        raw[flip] = rng.choice(ids, size=int(flip.sum()))
        dst = out / "sequences" / "00" / "predictions" / gt.name
        dst.parent.mkdir(parents=True, exist_ok=True)
        raw.tofile(dst)
    return out


def _eval(argv: list[str], capsys) -> tuple[int, str, str]:
    code = eval_main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _benchmark_reference(root: Path, pred_root: Path) -> dict[str, float]:
    """evaluate_completion.py's arithmetic on the raw files, float64, one confusion matrix."""
    cs = load_class_set()
    lut = np.zeros(max(cs.learning_map) + 100, dtype=np.int64)
    lut[list(cs.learning_map)] = list(cs.learning_map.values())
    lut[lut == 0] = 255  # ids mapped to empty are invalid ...
    lut[0] = 0  # ... except 0 itself, the empty voxel
    conf = np.zeros((N_CLASSES, N_CLASSES), dtype=np.int64)  # rows: prediction, columns: target
    for gt in _frames(root):
        target = lut[np.fromfile(gt, dtype=np.uint16)]
        invalid = np.unpackbits(np.fromfile(gt.with_suffix(".invalid"), dtype=np.uint8))
        pred = lut[np.fromfile(pred_root / "sequences" / "00" / "predictions" / gt.name, dtype=np.uint16)]
        keep = (target != 255) & (invalid != 1)
        np.add.at(conf, (pred[keep], target[keep]), 1)
    tp = np.diag(conf).astype(np.float64)
    iou = tp / (tp + (conf.sum(1) - tp) + (conf.sum(0) - tp) + 1e-15)
    occupied = conf[1:, 1:].sum()
    return {"sc_iou": occupied / (conf.sum() - conf[0, 0]), "sc_precision": occupied / conf[1:, :].sum(),
            "sc_recall": occupied / conf[:, 1:].sum(), "miou": iou[1:].mean(), "class_iou": iou}


def test_predictions_score_as_the_benchmark_defines_it(root, noisy_gt, tmp_path, capsys) -> None:
    code, out, err = _eval(["--data", str(root), "--sequences", "00", "--predictions", str(noisy_gt),
                            "--json", str(tmp_path / "m.json")], capsys)
    assert code == 0, err
    got, ref = json.loads((tmp_path / "m.json").read_text()), _benchmark_reference(root, noisy_gt)
    # noisy, so neither trivial nor perfect
    assert got["frames"] == 2 and 0.1 < got["sc_iou"] < 0.9 and 0.05 < got["miou"] < 0.9
    for key in ("sc_iou", "sc_precision", "sc_recall", "miou"):
        assert got[key] == pytest.approx(ref[key], abs=1e-6), key
    np.testing.assert_allclose(list(got["class_iou"].values()), ref["class_iou"], atol=1e-6)
    assert "| SC IoU |" in out and f"predictions {noisy_gt}" in out


def test_predictions_give_the_numbers_of_the_model_path(root, tiny, tmp_path, capsys) -> None:
    assert predict_main(["--data", str(root), "--sequences", "00", "--checkpoint", str(tiny),
                         "--out", str(tmp_path / "pred")]) == 0
    capsys.readouterr()
    code, files_out, err = _eval(["--data", str(root), "--sequences", "00", "--predictions", str(tmp_path / "pred"),
                                  "--json", str(tmp_path / "files.json")], capsys)
    assert code == 0, err
    code, model_out, err = _eval(["--data", str(root), "--sequences", "0", "--checkpoint", str(tiny),
                                  "--json", str(tmp_path / "model.json")], capsys)
    assert code == 0, err
    files, model = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("files", "model"))
    assert files.pop("model") != model.pop("model")
    assert files == model and files["frames"] == 2 and files["sequences"] == ["00"]
    table = files_out.split("frames\n", 1)[1]
    assert table == model_out.split("frames\n", 1)[1] and table.count("\n") > 20


def _break(kind: str, path: Path) -> str:
    """Spoil one prediction file; return what the refusal must say besides its path."""
    raw = np.fromfile(path, dtype="<u2")
    if kind == "missing":
        path.unlink()
        return "1 of 2 prediction files missing"
    if kind == "short":
        raw[:-8].tofile(path)
        return "bytes; a .label of grid (256, 256, 32) holds 2097152 uint16 labels"
    if kind == "uint32":
        raw.astype("<u4").tofile(path)
        return "8388608 bytes"
    if kind == "unknown id":
        raw[123] = 7
        raw.tofile(path)
        return "not semantic_kitti raw label ids: [7]"
    raw[123] = 99  # other-object: a raw id the learning map sends to ignore
    raw.tofile(path)
    return "sends to ignore ([99])"


@pytest.mark.parametrize("kind", ["missing", "short", "uint32", "unknown id", "ignored id"])
def test_bad_prediction_files_are_refused_by_name(root, noisy_gt, tmp_path, capsys, kind) -> None:
    pred = shutil.copytree(noisy_gt, tmp_path / "pred")
    victim = pred / "sequences" / "00" / "predictions" / "000001.label"
    needle = _break(kind, victim)
    code, out, err = _eval(["--data", str(root), "--sequences", "00", "--predictions", str(pred)], capsys)
    assert code == 2 and str(victim) in err and needle in err, err
    assert "| SC IoU |" not in out


def test_predictions_exclude_a_model(root, noisy_gt) -> None:
    with pytest.raises(SystemExit):
        eval_main(["--data", str(root), "--sequences", "00", "--predictions", str(noisy_gt), "--checkpoint", "x"])
    assert eval_main(["--data", str(root), "--sequences", "00", "--predictions", str(noisy_gt),
                      "--preset", "compact"]) == 2
