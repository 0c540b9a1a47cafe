"""The training loop: AdamW, MultiStepLR, gradient clipping, resume, validation."""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from ..checkpoint import save_checkpoint
from ..checkpoint.restricted_unpickler import load_torch_zip
from ..classes import load_class_set
from ..eval.evaluate import evaluate, model_predictor
from ..eval.metrics import SSCResult
from ..inference import StereoInference
from ..model.occdepth import OccDepth
from .dataset import Augment, SSCDataset, collate
from .losses import LossConfig, compute_losses

OFFICIAL_EPOCHS = 30
OFFICIAL_MILESTONES = (18, 24)  # epochs of 30; scaled to the run's length


@dataclass
class TrainConfig:
    data_root: str
    train_sequences: list[str]
    val_sequences: list[str] = field(default_factory=list)
    out_dir: str = "runs/train"
    epochs: int = 30
    batch_size: int = 1
    lr: float = 2e-4
    weight_decay: float = 1e-4
    gamma: float = 0.4
    grad_clip: float = 35.0
    frustum_size: int = 8
    augment: bool = True
    val_frame_stride: int = 1
    seed: int = 42
    threads: int | None = None
    max_steps: int | None = None  # stop early (smoke tests)
    time_budget_min: float | None = None  # stop after this many minutes, saving first

    def milestones(self) -> list[int]:
        return [max(1, round(m * self.epochs / OFFICIAL_EPOCHS)) for m in OFFICIAL_MILESTONES]


class Trainer:
    def __init__(self, model: OccDepth, cfg: TrainConfig, loss_cfg: LossConfig | None = None) -> None:
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        torch.manual_seed(cfg.seed)
        self.model, self.cfg = model, cfg
        self.loss_cfg = loss_cfg or LossConfig()
        self.class_set = load_class_set(model.cfg.class_set)
        self.out = Path(cfg.out_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        self.dataset = SSCDataset(cfg.data_root, cfg.train_sequences, model.cfg, self.class_set,
                                  Augment() if cfg.augment else None, cfg.frustum_size, seed=cfg.seed)
        # The shuffle order of every epoch comes from this one generator, so a resumed run must
        # restore its state to visit the frames in the order the uninterrupted run would have.
        self.loader_rng = torch.Generator().manual_seed(cfg.seed)
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.MultiStepLR(self.optimizer, cfg.milestones(), cfg.gamma)
        self.epoch, self.step = 0, 0
        self.history: list[dict] = []
        self.best_miou = -1.0

    # -- checkpoints ----------------------------------------------------------
    def save(self, name: str = "last") -> None:
        save_checkpoint(self.out / f"{name}.safetensors", self.model,
                        meta={"epoch": self.epoch, "step": self.step, "train": dataclasses.asdict(self.cfg)})
        if name == "last":
            torch.save({"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                        "epoch": self.epoch, "step": self.step, "best_miou": self.best_miou,
                        "history": self.history, "torch_rng": torch.get_rng_state(),
                        "numpy_rng": self.dataset.rng.bit_generator.state,
                        "loader_rng": self.loader_rng.get_state()}, self.out / "last_state.pt")

    def resume(self) -> bool:
        """Continue from out_dir/last.* if present; the weights are loaded by the caller."""
        state_path = self.out / "last_state.pt"
        if not state_path.is_file():
            return False
        state = load_torch_zip(state_path)
        if "loader_rng" not in state:
            raise ValueError(f"{state_path} predates the saved shuffle order; it cannot be resumed exactly")
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        saved = sorted(self.scheduler.milestones)
        if saved != self.cfg.milestones():
            print(f"warning: resuming with epochs={self.cfg.epochs} keeps the saved learning-rate milestones "
                  f"{saved} (epochs {self.cfg.epochs} alone would give {self.cfg.milestones()})", file=sys.stderr)
        self.epoch, self.step = int(state["epoch"]), int(state["step"])
        self.best_miou, self.history = float(state["best_miou"]), list(state["history"])
        torch.set_rng_state(state["torch_rng"])
        self.dataset.rng.bit_generator.state = state["numpy_rng"]
        self.loader_rng.set_state(state["loader_rng"])
        return True

    # -- loop -----------------------------------------------------------------
    def validate(self) -> SSCResult | None:
        if not self.cfg.val_sequences:
            return None
        self.model.eval()
        engine = StereoInference(self.model)
        result, _ = evaluate(model_predictor(engine), self.cfg.data_root, self.cfg.val_sequences, self.class_set,
                          frame_stride=self.cfg.val_frame_stride, progress=False)
        self.model.train()
        return result

    def train(self) -> list[dict]:
        cfg = self.cfg
        start = time.monotonic()
        minutes_before = float(self.history[-1]["minutes"]) if self.history else 0.0  # a resumed run's past
        loader = torch.utils.data.DataLoader(self.dataset, batch_size=cfg.batch_size, shuffle=True,
                                             collate_fn=collate, num_workers=0,
                                             generator=self.loader_rng)
        stop = False
        while self.epoch < cfg.epochs and not stop:
            self.model.train()
            sums: dict[str, float] = {}
            bar = tqdm(loader, desc=f"epoch {self.epoch + 1}/{cfg.epochs}", unit="step")
            n_steps = 0
            for n_steps, batch in enumerate(bar, start=1):
                out = self.model(batch["images"], batch["lift"])
                losses = compute_losses(out, batch, self.model.cfg, self.class_set, self.loss_cfg)
                self.optimizer.zero_grad(set_to_none=True)
                losses["total"].backward()
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
                self.optimizer.step()
                self.step += 1
                for k, v in losses.items():
                    sums[k] = sums.get(k, 0.0) + float(v.detach())
                bar.set_postfix(loss=f"{float(losses['total'].detach()):.3f}", lr=f"{self.scheduler.get_last_lr()[0]:.1e}")
                over_time = cfg.time_budget_min is not None and time.monotonic() - start > cfg.time_budget_min * 60
                if (cfg.max_steps is not None and self.step >= cfg.max_steps) or over_time:
                    stop = True
                    # At an epoch's last batch, let the loader run out as it does in an uninterrupted
                    # run: running out draws from the shuffle generator, and resume relies on its state.
                    if n_steps < len(loader):
                        break
            self.epoch += 1
            self.scheduler.step()
            minutes = minutes_before + (time.monotonic() - start) / 60
            record = {"epoch": self.epoch, "step": self.step, "minutes": minutes}
            record.update({f"loss/{k}": v / max(1, n_steps) for k, v in sums.items()})
            result = self.validate()
            if result is not None:
                record.update({"val/sc_iou": result.sc_iou, "val/miou": result.miou})
                if result.miou > self.best_miou:
                    self.best_miou = result.miou
                    self.save("best")
            self.history.append(record)
            print(json.dumps(record))
            self.save("last")
        (self.out / "history.json").write_text(json.dumps(self.history, indent=1))
        return self.history
