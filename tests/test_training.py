"""Training data and loop on a tiny generated sequence: sample contents, the flip
augmentation, a short run lowering the loss, resume restoring the optimiser."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from occdepth_ros.classes import load_class_set
from occdepth_ros.model import OccDepth, load_preset
from occdepth_ros.train.dataset import Augment, SSCDataset, collate
from occdepth_ros.train.trainer import TrainConfig, Trainer


@pytest.fixture(scope="module")
def data_root(two_frame_synth):
    return two_frame_synth


def tiny_config():
    cfg = load_preset("compact")
    return dataclasses.replace(cfg, image=dataclasses.replace(cfg.image, height=64, width=192))


def test_sample_contents(data_root) -> None:
    cfg = tiny_config()
    ds = SSCDataset(data_root, ["00"], cfg, load_class_set())
    assert len(ds) == 2
    s = ds[0]
    assert s["images"].shape == (2, 3, 64, 192)
    X, Y, Z = cfg.grid.dims
    assert s["target"].shape == (X, Y, Z) and s["target"].dtype == torch.int64
    values = set(torch.unique(s["target"]).tolist())
    assert values <= set(range(20)) | {255} and len(values - {0, 255}) >= 3
    n3 = int(np.prod(cfg.grid.feature_dims)) // 64
    assert s["relation"].shape == (4, n3 // 8, n3) and s["relation"].dtype == torch.uint8
    assert s["frustum_masks"].shape == (64, X, Y, Z) and s["frustum_dists"].shape == (64, 20)
    assert s["depth_fg"].float().mean() > 0.3  # the renderer's depth covers most pixels
    batch = collate([ds[0], ds[1]])
    assert batch["images"].shape[0] == 2 and batch["lift"].pixel_index.shape[0] == 2


def test_flip_mirrors_images_and_pixel_lookup(data_root) -> None:
    cfg = tiny_config()
    plain = SSCDataset(data_root, ["00"], cfg, load_class_set(), augment=None)[0]
    flipped = SSCDataset(data_root, ["00"], cfg, load_class_set(), augment=Augment(flip_prob=1.0, jitter=0.0))[0]
    torch.testing.assert_close(flipped["images"], plain["images"].flip(-1))
    torch.testing.assert_close(flipped["target"], plain["target"])  # the 3D target does not flip
    W = cfg.image.width
    idx0, idx1 = plain["lift"].pixel_index[:, 0], flipped["lift"].pixel_index[:, 0]  # stride 1
    seen = idx0 >= 0
    assert torch.equal(seen, idx1 >= 0)
    u, v = idx0[seen] % W, idx0[seen] // W
    assert torch.equal(idx1[seen], v * W + (W - 1 - u))


def test_short_training_lowers_the_loss(data_root, tmp_path) -> None:
    """Eight steps on two frames: the logged training loss falls (train-mode BN; the
    running statistics barely move in 8 steps, so eval-mode outputs would not show it)."""
    torch.manual_seed(0)
    train_cfg = TrainConfig(data_root=str(data_root), train_sequences=["00"], out_dir=str(tmp_path / "run"),
                            epochs=4, lr=1e-3, augment=False, seed=0)
    history = Trainer(OccDepth(tiny_config()), train_cfg).train()
    first, last = history[0]["loss/total"], history[-1]["loss/total"]
    assert last < 0.85 * first, (first, last)
    assert history[-1]["loss/loss_ssc"] < history[0]["loss/loss_ssc"]
    assert len(history) == 4 and (tmp_path / "run" / "last.safetensors").is_file()


def test_resume_restores_progress_and_optimizer(data_root, tmp_path) -> None:
    torch.manual_seed(0)
    cfg = tiny_config()
    out = tmp_path / "run"
    first = Trainer(OccDepth(cfg), TrainConfig(data_root=str(data_root), train_sequences=["00"],
                                               out_dir=str(out), epochs=1, augment=False))
    first.train()
    second = Trainer(OccDepth(cfg), TrainConfig(data_root=str(data_root), train_sequences=["00"],
                                                out_dir=str(out), epochs=2, augment=False))
    assert second.resume()
    assert (second.epoch, second.step) == (1, 2)
    a = first.optimizer.state_dict()["state"]
    b = second.optimizer.state_dict()["state"]
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k]["exp_avg"], b[k]["exp_avg"])


def _train_cli(data_root, out, *extra: str, seed: int = 3) -> dict[str, torch.Tensor]:
    """occdepth-train on the tiny config, one thread; the final weights."""
    from occdepth_ros.checkpoint import load_checkpoint
    from occdepth_ros.cli.train import main as train_main

    config = out.parent / f"{out.name}.yaml"
    config.write_text(tiny_config().to_yaml())
    assert train_main(["--data", str(data_root), "--train", "00", "--config", str(config), "--threads", "1",
                       "--seed", str(seed), "--out", str(out), *extra]) == 0
    state, _, _ = load_checkpoint(out / "last.safetensors")
    return state


def test_resumed_run_matches_the_uninterrupted_one(data_root, tmp_path) -> None:
    """A four-epoch run stopped after epoch 1 (two frames: --max-steps 2) and resumed gives
    the weights of the uninterrupted run: shuffle order, augmentation draws, optimiser and
    schedule all carry over. (The shuffle generator used to be re-seeded from the epoch.)"""
    straight = _train_cli(data_root, tmp_path / "straight", "--epochs", "4")
    _train_cli(data_root, tmp_path / "split", "--epochs", "4", "--max-steps", "2")
    resumed = _train_cli(data_root, tmp_path / "split", "--epochs", "4", "--resume")
    assert straight.keys() == resumed.keys()
    for k in straight:
        torch.testing.assert_close(resumed[k], straight[k], rtol=0, atol=0, msg=k)
    # The logged epoch means agree too (a stop used to divide by one step too few).
    logs = [json.loads((tmp_path / run / "history.json").read_text()) for run in ("straight", "split")]
    assert [r["loss/total"] for r in logs[1]] == pytest.approx([r["loss/total"] for r in logs[0]], rel=1e-6)


def test_resumed_run_adds_to_the_logged_training_time(data_root, tmp_path) -> None:
    from occdepth_ros.checkpoint.restricted_unpickler import load_torch_zip

    out = tmp_path / "timed"
    _train_cli(data_root, out, "--epochs", "2", "--max-steps", "2")
    state = load_torch_zip(out / "last_state.pt")
    state["history"][-1]["minutes"] = 100.0  # as if epoch 1 had taken 100 minutes
    torch.save(state, out / "last_state.pt")
    _train_cli(data_root, out, "--epochs", "2", "--resume")
    history = json.loads((out / "history.json").read_text())
    assert [r["epoch"] for r in history] == [1, 2]
    assert 100.0 < history[1]["minutes"] < 110.0


def test_resume_with_other_epochs_warns_about_the_kept_schedule(data_root, tmp_path, capsys) -> None:
    out = tmp_path / "extend"
    _train_cli(data_root, out, "--epochs", "4", "--max-steps", "2")  # milestones [2, 3]
    capsys.readouterr()
    trainer = Trainer(OccDepth(tiny_config()), TrainConfig(data_root=str(data_root), train_sequences=["00"],
                                                           out_dir=str(out), epochs=10))
    assert trainer.resume()
    assert "keeps the saved learning-rate milestones [2, 3]" in capsys.readouterr().err
    assert sorted(trainer.scheduler.milestones) == [2, 3]
    same = Trainer(OccDepth(tiny_config()), TrainConfig(data_root=str(data_root), train_sequences=["00"],
                                                        out_dir=str(out), epochs=4))
    assert same.resume()
    assert "milestones" not in capsys.readouterr().err


def test_resume_refuses_a_state_without_the_shuffle_order(data_root, tmp_path) -> None:
    from occdepth_ros.checkpoint.restricted_unpickler import load_torch_zip

    out = tmp_path / "old"
    _train_cli(data_root, out, "--epochs", "1", "--max-steps", "1")
    state = load_torch_zip(out / "last_state.pt")
    del state["loader_rng"]
    torch.save(state, out / "last_state.pt")
    trainer = Trainer(OccDepth(tiny_config()), TrainConfig(data_root=str(data_root), train_sequences=["00"],
                                                           out_dir=str(out), epochs=2))
    with pytest.raises(ValueError, match="shuffle order"):
        trainer.resume()


def _cli_run(data_root, out, seed: int) -> dict[str, torch.Tensor]:
    return _train_cli(data_root, out, "--epochs", "1", "--max-steps", "1", "--no-augment", seed=seed)


def test_cli_run_is_seeded_from_the_model_init(data_root, tmp_path) -> None:
    """Same command and seed, same weights after a step (the random init included); another
    seed, other weights. The init used to come from an unseeded generator."""
    torch.manual_seed(12345)  # what the test process did before must not matter
    a = _cli_run(data_root, tmp_path / "a", seed=7)
    torch.manual_seed(999)
    b = _cli_run(data_root, tmp_path / "b", seed=7)
    c = _cli_run(data_root, tmp_path / "c", seed=8)
    assert a.keys() == b.keys() == c.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6, msg=k)
    assert any(not torch.allclose(a[k].float(), c[k].float()) for k in a if a[k].is_floating_point())


def test_mean_fusion_ablation_starts_from_the_defaults_weights() -> None:
    """The fusion has no parameters, so with one seed the ablation's initial weights are
    the default's: the pair differs in the fusion alone (the model card relies on it)."""
    from occdepth_ros.checkpoint import load_model

    cfg = tiny_config()
    torch.manual_seed(42)
    sfa = load_model(None, config=cfg).state_dict()
    torch.manual_seed(42)
    mean = load_model(None, config=dataclasses.replace(cfg, sfa_fusion="mean")).state_dict()
    assert sfa.keys() == mean.keys()
    assert all(torch.equal(sfa[k], mean[k]) for k in sfa)
